"""Host-side bookkeeping of the host-stepped loop: episode returns and
summaries of a rollout, a chunk's metrics, and evaluation episodes
(:func:`play_episodes`) on an auto-resetting pool."""

from typing import Any

import numpy as np

from disco_eval.envs.base import HostPool
from disco_eval.train.loop import IterationMetrics


def new_metrics(seeds: int, chunk: int, columns) -> IterationMetrics:
  """Zeroed numpy metrics [seeds, chunk] of a chunk (every row inactive)."""
  n, k = seeds, chunk
  return IterationMetrics(
    np.zeros((n, k), bool),
    np.zeros((n, k), np.float32),
    np.zeros((n, k), np.int32),
    np.zeros((n, k), np.int32),
    np.zeros((n, k), np.float32),
    {c: np.zeros((n, k), np.float64) for c in columns},
  )


def read_losses(m: IterationMetrics, losses: list[dict], rows_per_part: int = 1) -> None:
  """Waits for the chunk's losses (part i: {column: device loss of its
  `rows_per_part` seeds}) and writes them into `m`."""
  for i, part in enumerate(losses):
    rows = slice(i * rows_per_part, (i + 1) * rows_per_part)
    for j, loss in part.items():
      m.loss[rows, j] = np.asarray(loss)


def episode_returns(
  rewards: np.ndarray, lasts: np.ndarray, running: np.ndarray
) -> tuple[float, int, np.ndarray]:
  """Returns of the episodes that end in a rollout.

  rewards [T, E] float32 (each arrived with its row), lasts [T, E] bool (the
  row ended an episode), running [E] float32: the returns so far of the
  episodes under way before row 0. Returns (sum of the ended episodes'
  returns, their number, the running returns after row T-1).
  """
  total, count = 0.0, 0
  for reward, last in zip(rewards, lasts):
    total += float(np.sum(np.where(last, running + reward, 0.0)))
    count += int(np.sum(last))
    running = np.where(last, 0.0, running + reward).astype(np.float32)
  return total, count, running


def add_episode_infos(extra: dict, pool: HostPool) -> None:
  """Adds the pool's latest episode summaries to the sums `extra` {column: sum}."""
  for _, info in pool.episode_infos:
    for key in extra:
      extra[key] += float(info[key])


def play_episodes(
  pool: HostPool,
  act: Any,
  episodes: int,
  cap: int | None = None,
  max_steps: int = 10_000_000,
  starts: bool = False,
) -> tuple[np.ndarray, dict]:
  """Plays `episodes` episodes on an auto-resetting `pool` of E environments.

  ``act(obs [E, ...]) -> actions [E]``; with `starts`, ``act(obs, first)``
  where first [E] marks observations that start an episode. Environment i plays episodes i,
  i + E, i + 2E, ... (quotas fixed in advance, so short episodes are not
  favoured); an episode is cut after `cap` steps when given (the pool must
  support ``force_reset``; its return so far is kept and counted in
  ``eval_truncated``). Returns the returns [episodes] (round by round:
  first episodes of every environment, then second ones, ...) and
  ``{"eval_truncated": n}``.
  """
  n_envs = pool.num_envs
  quota = np.array([len(range(i, episodes, n_envs)) for i in range(n_envs)])
  obs = pool.reset()
  results: list[list[float]] = [[] for _ in range(n_envs)]
  running = np.zeros((n_envs,), np.float64)
  length = np.zeros((n_envs,), np.int64)
  fresh = np.zeros((n_envs,), bool)  # the next step is a reset step
  first = np.ones((n_envs,), bool)  # the latest observation starts an episode
  truncated = 0
  for _ in range(max_steps):
    if all(len(r) >= q for r, q in zip(results, quota)):
      break
    obs, reward, last, _ = pool.step(act(obs, first) if starts else act(obs))
    counted = ~fresh
    first = fresh.copy()
    running += np.where(counted, reward, 0.0)
    length += counted
    cut = np.zeros((n_envs,), bool) if cap is None else (~last & (length >= cap))
    ended = (last | cut) & counted
    for i in np.flatnonzero(ended):
      if len(results[i]) < quota[i]:
        results[i].append(float(running[i]))
        truncated += int(cut[i])
    if cut.any():
      pool.force_reset(cut)
    running[ended] = 0.0
    length[ended] = 0
    fresh = ended
  else:
    raise RuntimeError(f"evaluation did not finish {episodes} episodes in {max_steps} steps")
  returns = np.array(
    [rs[i] for i in range(int(quota.max())) for rs in results if i < len(rs)], np.float32
  )
  return returns, {"eval_truncated": truncated}
