"""Environments stepped in worker processes of our own, with shared memory.

Crafter and NLE are single-environment Python packages. ``WorkerPool`` runs
``num_envs`` of them in ``num_workers`` processes; each worker owns a
contiguous slice of the environments and writes their observations, rewards
and end flags straight into shared-memory arrays, so that only a one-word
command and the (rare) episode summaries travel through the pipes. The main
process reads the whole batch as numpy arrays.

Step convention (the same as EnvPool's, so that the host trainer handles all
host-stepped suites alike):

* the step that ends an episode returns its final observation and reward with
  ``last`` set (``truncated`` too when it was a time limit);
* the next step of that environment is a *reset step*: its action is ignored,
  its reward is 0 and its observation is the first one of a new episode;
* ``force_reset(mask)`` makes the next step of the masked environments a
  reset step (evaluation caps on episode length use it).

An environment adapter (made in the worker by ``factory(seed=..., **kwargs)``,
which must be importable by name, since workers are spawned) has::

  reset() -> obs                                    # np.ndarray, obs_shape
  step(action: int) -> (obs, reward, terminated, truncated, episode_info)

where ``episode_info`` is a dict of numbers on the step that ends an episode
(None otherwise). The pool collects them per step in ``episode_infos``: a list
of ``(env_index, info)``.

Workers are spawned (never forked: the parent runs JAX's threads) and exit
when their pipe closes, so a killed parent leaves no orphans behind.
"""

import multiprocessing as mp
import os
import traceback
from multiprocessing import shared_memory
from typing import Any, Callable

import numpy as np

from disco_eval.envs.base import HostPool


def _attach(names: dict[str, str], shapes: dict[str, tuple], dtypes: dict[str, str]):
  shms = {k: shared_memory.SharedMemory(name=names[k]) for k in names}
  arrays = {k: np.ndarray(shapes[k], np.dtype(dtypes[k]), buffer=shms[k].buf) for k in names}
  return shms, arrays


def _worker_main(conn, factory, kwargs, seeds, lo, names, shapes, dtypes):
  """One worker: environments lo .. lo+len(seeds)-1, commands from `conn`."""
  shms, arr = _attach(names, shapes, dtypes)
  try:
    envs = [factory(seed=int(s), **kwargs) for s in seeds]
    fresh = [True] * len(envs)  # next step is a reset step
    conn.send(("ok", None))
  except BaseException:  # noqa: BLE001 - reported to the parent
    conn.send(("error", traceback.format_exc()))
    return
  try:
    while True:
      try:
        cmd = conn.recv()
      except (EOFError, OSError):  # the parent is gone
        return
      if cmd == "close":
        return
      infos = []
      for i, env in enumerate(envs):
        j = lo + i
        if cmd == "reset" or fresh[i] or arr["reset_req"][j]:
          obs, reward, term, trunc, info = env.reset(), 0.0, False, False, None
          arr["reset_req"][j] = False
          fresh[i] = False
        else:
          obs, reward, term, trunc, info = env.step(int(arr["actions"][j]))
          if term or trunc:
            fresh[i] = True
            if info is not None:
              infos.append((j, info))
        arr["obs"][j] = obs
        arr["reward"][j] = reward
        arr["last"][j] = bool(term or trunc)
        arr["truncated"][j] = bool(trunc)
      conn.send(("ok", infos))
  except BaseException:  # noqa: BLE001 - reported to the parent
    try:
      conn.send(("error", traceback.format_exc()))
    except (BrokenPipeError, OSError):
      pass
  finally:
    for s in shms.values():
      s.close()


class WorkerError(RuntimeError):
  """An environment raised inside a worker process."""


class WorkerPool(HostPool):
  """`num_envs` environments in `num_workers` spawned processes.

  ``reset()`` -> obs [E, *obs_shape]; ``step(actions [E])`` -> (obs [E, ...],
  reward [E] float32, last [E] bool, truncated [E] bool); returned arrays are
  copies (the shared buffers are reused by the next step). Environment i is
  made with seed ``seed * 100_003 + i``. Reports episode infos and
  supports ``force_reset``.
  """

  supports_force_reset = True

  def __init__(
    self,
    factory: Callable[..., Any],
    kwargs: dict[str, Any],
    num_envs: int,
    seed: int,
    obs_shape: tuple[int, ...],
    obs_dtype: Any,
    num_workers: int | None = None,
  ):
    self.num_envs = int(num_envs)
    self.observation_shape = tuple(obs_shape)
    self.episode_infos: list[tuple[int, dict]] = []
    workers = num_workers or min(self.num_envs, os.cpu_count() or 1)
    workers = max(1, min(int(workers), self.num_envs))
    e = self.num_envs
    spec = {
      "obs": ((e,) + self.observation_shape, np.dtype(obs_dtype).str),
      "reward": ((e,), "<f4"),
      "last": ((e,), "|b1"),
      "truncated": ((e,), "|b1"),
      "actions": ((e,), "<i4"),
      "reset_req": ((e,), "|b1"),
    }
    self._shms, self._arr = {}, {}
    self._procs, self._conns = [], []
    self._closed = False
    try:
      for key, (shape, dtype) in spec.items():
        size = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        shm = shared_memory.SharedMemory(create=True, size=size)
        self._shms[key] = shm
        self._arr[key] = np.ndarray(shape, np.dtype(dtype), buffer=shm.buf)
        self._arr[key].fill(0)
      names = {k: s.name for k, s in self._shms.items()}
      shapes = {k: v[0] for k, v in spec.items()}
      dtypes = {k: v[1] for k, v in spec.items()}
      ctx = mp.get_context("spawn")
      bounds = np.linspace(0, e, workers + 1).astype(int)
      for w in range(workers):
        lo, hi = int(bounds[w]), int(bounds[w + 1])
        seeds = [int(seed) * 100_003 + i for i in range(lo, hi)]
        parent, child = ctx.Pipe()
        proc = ctx.Process(
          target=_worker_main,
          daemon=True,
          args=(child, factory, kwargs, seeds, lo, names, shapes, dtypes),
        )
        proc.start()
        child.close()
        self._procs.append(proc)
        self._conns.append(parent)
      self._gather()
    except BaseException:
      self.close()
      raise

  def _gather(self) -> list[tuple[int, dict]]:
    infos, error = [], None
    for conn, proc in zip(self._conns, self._procs):
      try:
        status, payload = conn.recv()
      except (EOFError, OSError):
        status, payload = "error", f"worker process {proc.pid} died (exit code {proc.exitcode})"
      if status == "error":
        error = error or payload
      elif payload:
        infos.extend(payload)
    if error is not None:
      raise WorkerError(f"an environment failed in a worker process:\n{error}")
    return infos

  def _command(self, cmd: str) -> None:
    for conn in self._conns:
      conn.send(cmd)
    self.episode_infos = sorted(self._gather(), key=lambda x: x[0])

  def reset(self) -> np.ndarray:
    self._command("reset")
    return self._arr["obs"].copy()

  def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    self.send(actions)
    return self.recv()

  def send(self, actions: Any) -> None:
    """Starts a step in the workers (``recv`` waits for it)."""
    self._arr["actions"][:] = np.asarray(actions, np.int32)
    for conn in self._conns:
      conn.send("step")

  def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The results of the step ``send`` started, as ``step`` returns them."""
    self.episode_infos = sorted(self._gather(), key=lambda x: x[0])
    return (
      self._arr["obs"].copy(),
      self._arr["reward"].copy(),
      self._arr["last"].copy(),
      self._arr["truncated"].copy(),
    )

  def force_reset(self, mask: Any) -> None:
    """The next step of the environments in `mask` [E] is a reset step."""
    self._arr["reset_req"] |= np.asarray(mask, bool)

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    for conn in self._conns:
      try:
        conn.send("close")
      except (BrokenPipeError, OSError):
        pass
    for proc in self._procs:
      proc.join(timeout=10)
      if proc.is_alive():
        proc.kill()
        proc.join()
    for conn in self._conns:
      conn.close()
    self._arr.clear()
    for shm in self._shms.values():
      shm.close()
      try:
        shm.unlink()
      except FileNotFoundError:
        pass
    self._shms.clear()

  def __del__(self):
    try:
      self.close()
    except Exception:  # noqa: BLE001 - interpreter shutdown
      pass
