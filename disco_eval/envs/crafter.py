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
episodes within the budget, S = exp(mean_i ln(1 + s_i)) - 1.
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


def score_from_rows(rows: Sequence[dict]) -> dict[str, Any]:
  """The protocol's figures from a run's metrics rows (one per iteration).

  Every episode that ended within the rows counts. Returns ``score`` (the
  Crafter score, percent), ``reward`` (mean episode reward), the number of
  episodes and ``success_rates`` (percent, by achievement). NaN figures when
  no episode ended.
  """
  episodes = sum(int(r["episodes"]) for r in rows)
  if episodes == 0:
    nan = float("nan")
    return {
      "score": nan,
      "reward": nan,
      "train_episodes": 0,
      "success_rates": {k: nan for k in ACHIEVEMENTS},
    }
  rates = {k: 100.0 * sum(float(r[f"ach_{k}"]) for r in rows) / episodes for k in ACHIEVEMENTS}
  reward = (
    sum(float(r["avg_return"]) * int(r["episodes"]) for r in rows if int(r["episodes"])) / episodes
  )
  return {
    "score": crafter_score(list(rates.values())),
    "reward": reward,
    "train_episodes": episodes,
    "success_rates": rates,
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
    """The Crafter score and its figures (:func:`score_from_rows`)."""
    return score_from_rows(rows)


def make_task(suite: Any, task: str) -> CrafterTask:
  """The registry's factory: Crafter with the suite's ``max_episode_steps``."""
  return CrafterTask(task, int(suite.raw.get("max_episode_steps", 10_000)))
