"""Host-stepped seeds trained together: one pool, one policy call, one vmapped learner.

:class:`BatchedHostTrainer` trains the S seeds of a (rule, task) as the
pure-JAX trainer does on accelerators (:mod:`disco_eval.train.loop`): their
states are stacked on a leading seed axis [S, ...] and every jitted piece of
:class:`~disco_eval.train.host_loop.HostTrainer` is vmapped over it. An
iteration steps one pool of S x E environments
(:class:`~disco_eval.envs.concat.ConcatPool` of the seeds' own pools, each
exactly the pool that seed would get alone), makes one policy call per step
on observations [S, E, ...] with parameters [S, ...], and one vmapped call
adds the S entries and makes every seed's learner steps.

Each seed computes what it computes alone (its own pool, actor key, replay
buffer and learner keys); only float rounding differs, since the vmapped
program is compiled differently (tests/test_host_batched.py states the
tolerance). Each seed keeps its own record: a seed's checkpoint
(``SeedGroup.state_of``) is the one an unbatched run writes. Policy lag
(``train.policy_lag``) works as in the unbatched loop.

Chosen by :func:`disco_eval.train.seed_group.how_seeds_run` (the one rule
for how seeds run); one device only.
"""

from typing import Any

import jax
import numpy as np

from disco_eval.envs.base import HostPool
from disco_eval.envs.concat import ConcatPool
from disco_eval.train.host_episodes import episode_returns, new_metrics, read_losses
from disco_eval.train.host_loop import HostState, HostTrainer


class _SeedsActor:
  """Host side of S seeds: one pool of S x E environments ([S * E] arrays,
  seed j's environments at j * E .. (j + 1) * E - 1) and the actor keys [S]."""

  def __init__(self, pool: HostPool, keys: jax.Array, seeds: int):
    self.pool, self.key, self.seeds = pool, keys, seeds
    self.per_seed = pool.num_envs // seeds
    self.obs = pool.reset()
    self.reward = np.zeros((pool.num_envs,), np.float32)
    self.last = np.zeros((pool.num_envs,), bool)
    self.episode_return = np.zeros((pool.num_envs,), np.float32)
    self.frames = None  # as HostTrainer's actor (``HostTrainer._start_frames``)

  def new_extra(self, columns) -> dict:
    """Zero sums [S] of the episode columns, for one rollout."""
    return {c: np.zeros((self.seeds,), np.float64) for c in columns}

  def add_infos(self, extra: dict) -> None:
    """Adds the pool's latest episode summaries to their seeds' sums."""
    for i, info in self.pool.episode_infos:
      for key in extra:
        extra[key][i // self.per_seed] += float(info[key])

  def returns(self, rewards: np.ndarray, lasts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: (sums [S], numbers [S]) of the returns of the episodes that
    end in the rows rewards, lasts [T, S * E]; updates the running returns."""
    e, sums, counts = self.per_seed, [], []
    for j in range(self.seeds):
      cols = slice(j * e, (j + 1) * e)
      total, count, self.episode_return[cols] = episode_returns(
        rewards[:, cols], lasts[:, cols], self.episode_return[cols]
      )
      sums.append(total)
      counts.append(count)
    return np.array(sums, np.float32), np.array(counts, np.int32)


class BatchedHostTrainer(HostTrainer):
  """:class:`HostTrainer` for the seeds of a group at once (states stacked
  [S, ...]); evaluation, one seed's params at a time, is HostTrainer's."""

  vmaps_seeds = True  # train.seed_group.how_seeds_run chose this trainer

  def __init__(self, *args: Any, **kwargs: Any):
    super().__init__(*args, **kwargs)
    if self.mesh is not None:
      raise ValueError("batched host seeds run on one device (train.devices = 1)")
    self._seeds_actor: tuple[tuple[int, ...], _SeedsActor] | None = None
    self._policy_seeds = jax.jit(jax.vmap(self._policy_step, in_axes=(0, 0, 0, None)))
    # The add-and-learn pieces are HostTrainer's, vmapped (HostTrainer._compile).

  def iteration(self, s, rule_params, it: int, seed: int | None = None):
    raise NotImplementedError("vmapped seeds run chunks: use run_vmapped")

  def run_turns(self, states, rule_params, start: int, count: int):
    raise NotImplementedError("vmapped seeds run chunks: use run_vmapped")

  def _seeds(self, states: HostState) -> _SeedsActor:
    """The actor of the stacked `states`' seeds (made on first use: one
    pool per seed, each seed's key derived as an unbatched run derives it)."""
    seeds = tuple(int(x) for x in np.asarray(states.seed))
    if self._seeds_actor is None or self._seeds_actor[0] != seeds:
      self.close()
      e = self.cfg.num_envs
      pools = []
      try:
        for seed in seeds:
          pools.append(self.task.pool(e, seed, self.protocol))
      except BaseException:
        for pool in pools:
          pool.close()
        raise
      keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(states.rng)
      actor = self._start_frames(_SeedsActor(ConcatPool(pools), keys, len(seeds)))
      self._seeds_actor = (seeds, actor)
    return self._seeds_actor[1]

  def _act(self, params, actor: _SeedsActor, env_steps: float = 0.0) -> tuple:
    """One policy call for every seed: (actions [S, E], logits [S, E, A]);
    `env_steps` (each seed's env steps before the rollout) as in the base."""
    obs = actor.obs.reshape((actor.seeds, actor.per_seed) + actor.obs.shape[1:])
    action, logits, actor.key = self._policy_seeds(params, obs, actor.key, env_steps)
    return action, logits

  def _entry_args(self, obs, actions, rewards, discounts, logits) -> tuple:
    """obs [T, S * E, ...] and rewards, discounts [T, S * E] as [T, S, E, ...]
    (views); actions and logits as the policy made them ([S, E, ...] each)."""
    s = len(self._seeds_actor[0])
    split = lambda x: x.reshape((x.shape[0], s, -1) + x.shape[2:])
    return jax.tree.map(split, obs), actions, split(rewards), split(discounts), logits

  def run_vmapped(self, states: HostState, rule_params, start: int, count: int):
    """Iterations [start, start + count) of the stacked seeds' `states`
    [S, ...], trained together. Returns the new stacked states (the old ones
    are donated) and numpy metrics [S, chunk] (rows past `count` inactive)."""
    actor = self._seeds(states)
    m = new_metrics(actor.seeds, self.cfg.chunk, self.episode_columns)
    states, losses = self.run_rows(states, actor, rule_params, start, count, m, slice(None))
    read_losses(m, [losses], actor.seeds)
    return states, m

  def close(self) -> None:
    super().close()
    if self._seeds_actor is not None:
      self._seeds_actor[1].pool.close()
      self._seeds_actor = None
