"""Worker-process pools: the step convention, episode infos, errors, cleanup."""

import numpy as np
import pytest

from disco_eval.envs.workers import WorkerError, WorkerPool


class CountingEnv:
  """obs = [seed, t]; episodes of `length` steps; reward = action; the step
  at t == length ends the episode (truncated when `truncate`)."""

  def __init__(self, seed, length=3, truncate=False, fail_at=None):
    self.seed, self.length, self.truncate, self.fail_at = seed, length, truncate, fail_at
    self.t = 0

  def reset(self):
    self.t = 0
    return np.array([self.seed, 0], np.int32)

  def step(self, action):
    self.t += 1
    if self.fail_at is not None and self.t == self.fail_at:
      raise ValueError("boom in the environment")
    end = self.t == self.length
    info = {"steps": float(self.t)} if end else None
    return (
      np.array([self.seed, self.t], np.int32),
      float(action),
      end and not self.truncate,
      end and self.truncate,
      info,
    )


def make_counting(seed, **kwargs):
  return CountingEnv(seed, **kwargs)


def test_reset_step_convention_and_episode_infos():
  pool = WorkerPool(
    make_counting,
    {"length": 3},
    num_envs=3,
    seed=1,
    obs_shape=(2,),
    obs_dtype=np.int32,
    num_workers=2,
  )
  try:
    obs = pool.reset()
    seeds = [1 * 100_003 + i for i in range(3)]
    np.testing.assert_array_equal(obs[:, 0], seeds)
    steps = [pool.step(np.full(3, k + 1)) for k in range(5)]
    obs_t = [s[0][0, 1] for s in steps]
    rewards = [s[1][0] for s in steps]
    last = [bool(s[2][0]) for s in steps]
    # t = 1, 2, 3 (last), then a reset step (reward 0, t = 0), then t = 1.
    assert obs_t == [1, 2, 3, 0, 1]
    assert rewards == [1.0, 2.0, 3.0, 0.0, 5.0]
    assert last == [False, False, True, False, False]
    assert not any(s[3].any() for s in steps)  # terminations, not truncations
    # The infos arrive with the step that ended the episodes, for every env.
    pool.step(np.zeros(3))
    pool.reset()
    for _ in range(3):
      pool.step(np.zeros(3))
    assert [i for i, _ in pool.episode_infos] == [0, 1, 2]
    assert all(info == {"steps": 3.0} for _, info in pool.episode_infos)
  finally:
    pool.close()


def test_truncation_and_force_reset():
  pool = WorkerPool(
    make_counting,
    {"length": 2, "truncate": True},
    num_envs=2,
    seed=0,
    obs_shape=(2,),
    obs_dtype=np.int32,
    num_workers=1,
  )
  try:
    pool.reset()
    pool.step([0, 0])
    _, _, last, truncated = pool.step([0, 0])
    assert last.all() and truncated.all()
    pool.step([0, 0])  # reset steps
    pool.force_reset([True, False])
    obs, reward, last, _ = pool.step([7, 7])
    np.testing.assert_array_equal(obs[:, 1], [0, 1])  # env 0 was reset, env 1 stepped
    np.testing.assert_array_equal(reward, [0.0, 7.0])
  finally:
    pool.close()


def test_returned_arrays_are_copies():
  pool = WorkerPool(
    make_counting,
    {"length": 5},
    num_envs=2,
    seed=0,
    obs_shape=(2,),
    obs_dtype=np.int32,
    num_workers=1,
  )
  try:
    first = pool.reset()
    pool.step([0, 0])
    assert (first[:, 1] == 0).all()
  finally:
    pool.close()


def test_an_error_in_a_worker_is_raised_with_its_traceback():
  pool = WorkerPool(
    make_counting,
    {"length": 9, "fail_at": 2},
    num_envs=2,
    seed=0,
    obs_shape=(2,),
    obs_dtype=np.int32,
    num_workers=2,
  )
  try:
    pool.reset()
    pool.step([0, 0])
    with pytest.raises(WorkerError, match="boom in the environment"):
      pool.step([0, 0])
  finally:
    pool.close()


def test_close_ends_the_workers_and_frees_shared_memory():
  pool = WorkerPool(
    make_counting, {}, num_envs=2, seed=0, obs_shape=(2,), obs_dtype=np.int32, num_workers=2
  )
  procs = list(pool._procs)
  names = [s.name for s in pool._shms.values()]
  pool.close()
  assert all(not p.is_alive() for p in procs)
  from multiprocessing import shared_memory

  for name in names:
    with pytest.raises(FileNotFoundError):
      shared_memory.SharedMemory(name=name)
  pool.close()  # idempotent


class VaryingEnv:
  """Env i's episodes last i + 2 steps, with reward 1 per step (so a return
  is the episode's length); used to check evaluation quotas."""

  def __init__(self, seed):
    self.length = seed % 100_003 + 2
    self.t = 0

  def reset(self):
    self.t = 0
    return np.zeros((1,), np.int32)

  def step(self, action):
    self.t += 1
    end = self.t == self.length
    return np.zeros((1,), np.int32), 1.0, end, False, {"steps": 1.0} if end else None


def make_varying(seed):
  return VaryingEnv(seed)


def test_play_episodes_fixed_quotas_and_cap():
  from disco_eval.train.host_loop import play_episodes

  pool = WorkerPool(
    make_varying, {}, num_envs=3, seed=0, obs_shape=(1,), obs_dtype=np.int32, num_workers=1
  )
  try:
    act = lambda obs: np.zeros(len(obs), np.int32)  # noqa: E731
    # 7 episodes over 3 envs: quotas 3, 2, 2, whatever the episode lengths
    # (a "first 7 to finish" evaluation would favour env 0's short episodes).
    returns, info = play_episodes(pool, act, 7)
    assert returns.tolist() == [2, 3, 4, 2, 3, 4, 2] and info == {"eval_truncated": 0}
    # Cut after 3 steps: env 2 (4-step episodes) is cut and reset each time.
    returns, info = play_episodes(pool, act, 6, cap=3)
    assert returns.tolist() == [2, 3, 3, 2, 3, 3] and info == {"eval_truncated": 2}
  finally:
    pool.close()
