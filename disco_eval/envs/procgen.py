"""ProcGen games through EnvPool, stepped on the host.

``ProcgenPool`` wraps one EnvPool batch of ``num_envs`` environments of one
game (gymnasium API) in the step convention of the trainers: every EnvPool
step is one actor step, returned as ``(obs, reward, last, truncated)`` where
``reward`` arrived with ``obs`` and ``last`` marks the step that ended an
episode.

EnvPool's episode boundaries (checked in tests/test_procgen.py):

* the step that ends an episode returns the episode's final observation and
  reward with ``terminated`` or ``truncated`` set;
* the next step is a *reset step*: its action is ignored, its reward is 0 and
  its observation is the first one of a new episode (new level);
* the info carries no episode return (the trainers sum the rewards).

In a :class:`~disco_eval.rules.base.Rollout` each EnvPool step is one row with
discount 0 on the row that ended an episode. The transition out of that row
(into the reset step) is removed by the loss mask (``discounts[t] > 0``) and
``is_terminal`` cuts bootstrapping at the episode end, so no transition
crosses episodes.

Truncation (ProcGen's time limit, 1000 steps in most games) is treated as an
episode end exactly like termination: ``last = terminated | truncated`` and
there is no bootstrap through a timeout. ``truncated`` is also returned, for
callers that want to tell the two apart.
"""

from typing import Any

import numpy as np

from disco_eval.envs.base import HostPool, HostTask

GAMES = (
  "bigfish",
  "bossfight",
  "caveflyer",
  "chaser",
  "climber",
  "coinrun",
  "dodgeball",
  "fruitbot",
  "heist",
  "jumper",
  "leaper",
  "maze",
  "miner",
  "ninja",
  "plunder",
  "starpilot",
)
MODES = ("easy", "hard")
NUM_ACTIONS = 15
OBSERVATION_SHAPE = (3, 64, 64)


def env_id(game: str, mode: str) -> str:
  """EnvPool's task id, e.g. ('coinrun', 'hard') -> 'CoinrunHard-v0'."""
  if game not in GAMES:
    raise ValueError(f"unknown ProcGen game '{game}'; known: {', '.join(GAMES)}")
  if mode not in MODES:
    raise ValueError(f"unknown ProcGen distribution mode '{mode}'; known: {', '.join(MODES)}")
  return f"{game.capitalize()}{mode.capitalize()}-v0"


class ProcgenPool(HostPool):
  """`num_envs` environments of one ProcGen game (host-stepped, auto-reset).

  Levels: ``start_level`` and ``num_levels`` as in ProcGen (``num_levels=0``:
  the unbounded level distribution). ``seed`` seeds EnvPool's level draws.
  """

  def __init__(
    self,
    game: str,
    mode: str,
    num_envs: int,
    seed: int,
    start_level: int = 0,
    num_levels: int = 0,
    num_threads: int = 0,
  ):
    import envpool  # imported here: only the host-stepped suites need it

    self.game, self.mode, self.num_envs = game, mode, int(num_envs)
    self.num_actions = NUM_ACTIONS
    self.observation_shape = OBSERVATION_SHAPE
    self._env = envpool.make(
      env_id(game, mode),
      env_type="gymnasium",
      num_envs=self.num_envs,
      batch_size=self.num_envs,
      seed=int(seed),
      start_level=int(start_level),
      num_levels=int(num_levels),
      num_threads=int(num_threads),
    )

  def reset(self) -> np.ndarray:
    """Starts new episodes in all environments; returns obs [E, 3, 64, 64] uint8."""
    obs, _ = self._env.reset()
    return obs

  def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One step of every environment.

    Returns obs [E, 3, 64, 64] uint8, reward [E] float32 (arrived with obs),
    last [E] bool (this step ended an episode: terminated or truncated) and
    truncated [E] bool.
    """
    actions = np.asarray(actions, dtype=np.int32)
    obs, reward, terminated, truncated, _ = self._env.step(actions)
    return _convert(obs, reward, terminated, truncated)

  def send(self, actions: Any) -> None:
    """Starts a step in EnvPool's threads (``recv`` waits for it)."""
    self._env.send(np.asarray(actions, dtype=np.int32))

  def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The results of the step ``send`` started, as ``step`` returns them."""
    obs, reward, terminated, truncated, _ = self._env.recv(reset=False, return_info=True)
    return _convert(obs, reward, terminated, truncated)

  def close(self) -> None:
    self._env.close()


def _convert(obs, reward, terminated, truncated):
  truncated = np.asarray(truncated, bool)
  last = np.asarray(terminated, bool) | truncated
  return obs, np.asarray(reward, np.float32), last, truncated


class ProcgenTask(HostTask):
  """What the registry returns for a ProcGen task: its game, action count and
  observation shape, and a factory of pools (the host trainer makes them).
  Observations uint8; no episode columns."""

  observation_dtype = np.uint8

  def __init__(self, game: str):
    env_id(game, "easy")  # validates the game
    self.name = game
    self.num_actions = NUM_ACTIONS
    self.observation_shape = OBSERVATION_SHAPE

  def pool(
    self, num_envs: int, seed: int, protocol: Any = None, evaluation: bool = False
  ) -> ProcgenPool:
    """A pool on the protocol's training levels (``distribution_mode``,
    ``start_level``, ``num_levels``) or, with `evaluation`, on its test levels
    (the same keys prefixed ``eval_``)."""

    def get(key, default):
      value = protocol.get(key) if protocol is not None else None
      return default if value is None else value

    mode = str(get("distribution_mode", "hard"))
    start, levels = int(get("start_level", 0)), int(get("num_levels", 0))
    if evaluation:
      mode = str(get("eval_distribution_mode", mode))
      start, levels = int(get("eval_start_level", 0)), int(get("eval_num_levels", 0))
    return ProcgenPool(self.name, mode, num_envs, seed, start, levels)


def make_task(suite: Any, task: str) -> ProcgenTask:
  """The registry's factory: the ProcGen game `task`."""
  return ProcgenTask(task)
