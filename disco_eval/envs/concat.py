"""One host pool made of several: the pools of a group of seeds, stepped together.

A batched host trainer (:mod:`disco_eval.train.host_batched`) trains the S
seeds of a (rule, task) on one pool of S x E environments. ``ConcatPool``
puts the seeds' own pools (each made by ``task.pool(E, seed, ...)``, exactly
the pool a seed trained alone would get) side by side: environment
``j * E + i`` is environment i of the j-th pool. A step starts every pool's
step (``send``: EnvPool threads, worker processes) before it waits for any
(``recv``), so the pools step at the same time.
"""

from typing import Any, Sequence

import numpy as np

from disco_eval.envs.base import HostPool


class ConcatPool(HostPool):
  """The pools `pools` (each of E environments) as one pool of S x E."""

  def __init__(self, pools: Sequence[HostPool]):
    self.pools = list(pools)
    sizes = {p.num_envs for p in self.pools}
    if len(sizes) != 1:
      raise ValueError(f"the pools must hold as many environments each, not {sorted(sizes)}")
    self.per_pool = sizes.pop()
    self.num_envs = self.per_pool * len(self.pools)
    self.observation_shape = tuple(self.pools[0].observation_shape)
    self.supports_force_reset = all(p.supports_force_reset for p in self.pools)
    self.episode_infos: list[tuple[int, dict]] = []

  def _parts(self, x: Any) -> list[np.ndarray]:
    return np.split(np.asarray(x), len(self.pools))

  def reset(self) -> np.ndarray:
    return np.concatenate([p.reset() for p in self.pools])

  def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    self.send(actions)
    return self.recv()

  def send(self, actions: Any) -> None:
    for pool, part in zip(self.pools, self._parts(actions)):
      pool.send(part)

  def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    outs = [p.recv() for p in self.pools]
    self.episode_infos = [
      (j * self.per_pool + i, info) for j, p in enumerate(self.pools) for i, info in p.episode_infos
    ]
    obs, reward, last, truncated = (np.concatenate(xs) for xs in zip(*outs))
    return obs, reward, last, truncated

  def force_reset(self, mask: Any) -> None:
    for pool, part in zip(self.pools, self._parts(mask)):
      pool.force_reset(part)

  def close(self) -> None:
    for pool in self.pools:
      pool.close()
