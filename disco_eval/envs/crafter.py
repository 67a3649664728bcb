"""Crafter (the ``crafter`` package) in worker processes.

Each environment is ``crafter.Env(area=(64, 64), view=(9, 9), size=(64, 64),
reward=True, length=10000, seed=...)``, the benchmark's settings; its world
for episode k is drawn from ``(seed, k)``. Episodes are NOT bit-reproducible:
crafter keeps each chunk's creatures in a Python set (ordered by memory
address) and draws spawns and despawns from it, so two games of the same
world diverge after a few hundred steps. Worlds
are generated with opensimplex, which is fast only with ``numba`` installed
(about 0.1 s per reset instead of 2-3 s); both are dependencies.

Observations are channel-first [3, 64, 64] uint8 (as EnvPool's ProcGen, so
the IMPALA-CNN torso serves both). An episode ends when the player dies
(termination) or after 10,000 steps (truncation: crafter reports it with
discount 1). The step that ends an episode carries its achievements: one
column per achievement, 1 if it was unlocked at least once in the episode.

The Crafter score (Hafner 2022; danijar/crafter analysis/common.py): the
success rate s_i (percent) of each of the 22 achievements over all training
episodes within the budget, S = exp(mean_i ln(1 + s_i)) - 1. The scoreboard's
reward: the return of the first episode ending in the last 100k steps
(analysis/print_reward.py). Protocol ``disco`` (DiscoRL's Fig. 2 plots episode
return) scores the mean return of the episodes ending in the last
``score_window_steps`` steps (our choice, docs/protocols.md).
"""

from typing import Any, Sequence

import numpy as np

from disco_eval.envs.base import HostTask

ACHIEVEMENTS = (
  "collect_coal",
  "collect_diamond",
  "collect_drink",
  "collect_iron",
  "collect_sapling",
  "collect_stone",
  "collect_wood",
  "defeat_skeleton",
  "defeat_zombie",
  "eat_cow",
  "eat_plant",
  "make_iron_pickaxe",
  "make_iron_sword",
  "make_stone_pickaxe",
  "make_stone_sword",
  "make_wood_pickaxe",
  "make_wood_sword",
  "place_furnace",
  "place_plant",
  "place_stone",
  "place_table",
  "wake_up",
)
NUM_ACTIONS = 17
OBSERVATION_SHAPE = (3, 64, 64)
EPISODE_COLUMNS = tuple(f"ach_{name}" for name in ACHIEVEMENTS) + ("episode_steps",)


class CrafterEnv:
  """One Crafter environment in the adapter protocol of ``envs.workers``."""

  def __init__(self, seed: int, length: int = 10_000):
    import crafter  # imported in the worker

    self._env = crafter.Env(
      area=(64, 64), view=(9, 9), size=(64, 64), reward=True, length=int(length), seed=int(seed)
    )
    self._steps = 0

  def reset(self) -> np.ndarray:
    self._steps = 0
    return np.ascontiguousarray(self._env.reset().transpose(2, 0, 1))

  def step(self, action: int):
    obs, reward, done, info = self._env.step(int(action))
    self._steps += 1
    episode = None
    truncated = bool(done and info.get("discount", 0.0) == 1.0)
    if done:
      unlocked = info["achievements"]
      missing = set(ACHIEVEMENTS) - set(unlocked)
      if missing:
        raise RuntimeError(
          f"crafter reported no count for {sorted(missing)}; install crafter==1.8.3"
        )
      episode = {f"ach_{k}": float(unlocked[k] > 0) for k in ACHIEVEMENTS}
      episode["episode_steps"] = float(self._steps)
    return (
      np.ascontiguousarray(obs.transpose(2, 0, 1)),
      float(reward),
      bool(done and not truncated),
      truncated,
      episode,
    )


def make_env(seed: int, length: int = 10_000) -> CrafterEnv:
  return CrafterEnv(seed, length)


def crafter_score(success_rates_percent: Sequence[float]) -> float:
  """S = exp(mean_i ln(1 + s_i)) - 1 for success rates s_i in percent."""
  s = np.asarray(success_rates_percent, np.float64)
  return float(np.exp(np.mean(np.log1p(s))) - 1.0)


# The scoreboard's reward: the return of the first episode that ends in the
# last SCOREBOARD_LAST env steps (danijar/crafter analysis/print_reward.py).
SCOREBOARD_LAST = 100_000


def _ended(rows: Sequence[dict]) -> list[dict]:
  """The rows in which at least one episode ended."""
  return [r for r in rows if int(r["episodes"]) > 0]


def scoreboard_reward(rows: Sequence[dict], last: int = SCOREBOARD_LAST) -> float:
  """The Crafter scoreboard's reward of a run: the return of the first
  episode ending at or after (the last episode's end - `last`) env steps.

  danijar/crafter@e04542a analysis/print_reward.py takes
  ``ys[-(xs >= xs.max() - last).sum()]`` over the episodes' end steps ``xs``
  and returns ``ys``. Our metrics rows are per iteration (``env_steps`` at
  its end, ``episodes``, ``avg_return``), so an episode's end step is known to
  the iteration: the first row with an ended episode at or after the last
  such row's ``env_steps - last`` stands for it, and when several episodes
  ended in that iteration their mean return is taken. NaN if none ended.
  """
  ended = _ended(rows)
  if not ended:
    return float("nan")
  start = int(ended[-1]["env_steps"]) - int(last)
  first = next(r for r in ended if int(r["env_steps"]) >= start)
  return float(first["avg_return"])


def final_return(rows: Sequence[dict], window: int) -> tuple[float, int]:
  """The mean return of the episodes that ended in the last `window` env
  steps of the rows (episode-weighted), and their number (NaN, 0 if none)."""
  if not rows:
    return float("nan"), 0
  start = int(rows[-1]["env_steps"]) - int(window)
  chosen = [r for r in _ended(rows) if int(r["env_steps"]) > start]
  n = sum(int(r["episodes"]) for r in chosen)
  if n == 0:
    return float("nan"), 0
  return sum(float(r["avg_return"]) * int(r["episodes"]) for r in chosen) / n, n


def score_from_rows(rows: Sequence[dict]) -> dict[str, Any]:
  """The Crafter score and the scoreboard's reward from a run's metrics rows
  (one per iteration, ``env_steps`` at its end).

  Every episode that ended within the rows counts for the score. Returns
  ``score`` (the Crafter score, percent), ``reward`` (the scoreboard's
  reward, :func:`scoreboard_reward`), ``mean_return`` (mean return of every
  episode), the number of episodes and ``success_rates`` (percent, by
  achievement). NaN figures when no episode ended.
  """
  episodes = sum(int(r["episodes"]) for r in rows)
  if episodes == 0:
    nan = float("nan")
    return {
      "score": nan,
      "reward": nan,
      "mean_return": nan,
      "train_episodes": 0,
      "success_rates": {k: nan for k in ACHIEVEMENTS},
    }
  rates = {k: 100.0 * sum(float(r[f"ach_{k}"]) for r in rows) / episodes for k in ACHIEVEMENTS}
  mean_return = sum(float(r["avg_return"]) * int(r["episodes"]) for r in _ended(rows)) / episodes
  return {
    "score": crafter_score(list(rates.values())),
    "reward": scoreboard_reward(rows),
    "mean_return": mean_return,
    "train_episodes": episodes,
    "success_rates": rates,
  }


def figures_for(rows: Sequence[dict], protocol: Any) -> dict[str, Any]:
  """A protocol's figures: for ``metric = "return"`` (protocol ``disco``)
  the score is the mean return of the episodes ending in the last
  ``score_window_steps`` env steps, with the Crafter score beside it as
  ``crafter_score``; otherwise (``scoreboard-1m``) :func:`score_from_rows`."""
  figures = score_from_rows(rows)
  if protocol is None or protocol.get("metric") != "return":
    return figures
  window = int(protocol.get("score_window_steps", SCOREBOARD_LAST))
  value, n = final_return(rows, window)
  return {
    **figures,
    "crafter_score": figures["score"],
    "score": value,
    "score_episodes": n,
    "score_window_steps": window,
  }


class CrafterTask(HostTask):
  """What the registry returns for Crafter: spaces and a pool factory; its
  pools report the achievements of each ended episode, and its protocols
  score training episodes (``score_from_training``)."""

  episode_columns = EPISODE_COLUMNS
  observation_dtype = np.uint8
  scores_training_episodes = True

  def __init__(self, name: str, length: int = 10_000):
    self.name = name
    self.num_actions = NUM_ACTIONS
    self.observation_shape = OBSERVATION_SHAPE
    self.length = int(length)

  def pool(self, num_envs: int, seed: int, protocol: Any = None, evaluation: bool = False):
    from disco_eval.envs.workers import WorkerPool

    return WorkerPool(
      make_env,
      {"length": self.length},
      num_envs,
      seed + (1_000_003 if evaluation else 0),
      OBSERVATION_SHAPE,
      np.uint8,
    )

  def score_from_training(self, rows: Sequence[dict], protocol: Any) -> dict[str, Any]:
    """The protocol's figures (:func:`figures_for`)."""
    return figures_for(rows, protocol)


def make_task(suite: Any, task: str) -> CrafterTask:
  """The registry's factory: Crafter with the suite's ``max_episode_steps``."""
  return CrafterTask(task, int(suite.raw.get("max_episode_steps", 10_000)))
