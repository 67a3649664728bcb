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

Grouped stepping (``groups=G > 1``): one EnvPool in asynchronous mode
(``batch_size = E / G``) whose environments are split into G fixed groups, so
that a caller can step one group on EnvPool's threads (``send``) while it
computes the next group's actions, then collect it (``recv``). At most one
group is in flight at a time: EnvPool hands out states in the order the
environments finish, so two groups in flight could come back mixed. Each
environment is the same EnvPool environment as in a synchronous pool of the
same size and seed, so for the same actions it yields the same observations,
rewards and episode ends (checked in tests/test_bench_host.py).
"""

from typing import Any

import numpy as np

GAMES = ("bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun",
         "dodgeball", "fruitbot", "heist", "jumper", "leaper", "maze", "miner",
         "ninja", "plunder", "starpilot")
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


class ProcgenPool:
  """`num_envs` environments of one ProcGen game (host-stepped, auto-reset).

  Levels: ``start_level`` and ``num_levels`` as in ProcGen (``num_levels=0``:
  the unbounded level distribution). ``seed`` seeds EnvPool's level draws.
  """

  def __init__(self, game: str, mode: str, num_envs: int, seed: int,
               start_level: int = 0, num_levels: int = 0, num_threads: int = 0,
               groups: int = 1):
    import envpool   # imported here: only the host-stepped suites need it
    self.game, self.mode, self.num_envs = game, mode, int(num_envs)
    self.num_actions = NUM_ACTIONS
    self.observation_shape = OBSERVATION_SHAPE
    self.groups = int(groups)
    if self.groups < 1 or self.num_envs % self.groups:
      raise ValueError(f"{self.num_envs} environments do not split into {groups} groups")
    # Env i of group g after reset(): group_rows[g][i] (set by reset in grouped mode).
    self.group_rows: tuple[np.ndarray, ...] = (np.arange(self.num_envs),)
    self._in_flight: int | None = None
    self._env = envpool.make(env_id(game, mode), env_type="gymnasium",
                             num_envs=self.num_envs, batch_size=self.num_envs // self.groups,
                             seed=int(seed), start_level=int(start_level),
                             num_levels=int(num_levels), num_threads=int(num_threads))

  def reset(self) -> np.ndarray:
    """Starts new episodes in all environments; returns obs [E, 3, 64, 64] uint8.

    In grouped mode it also fixes ``group_rows`` (which environments make each
    group: those EnvPool returned together) and leaves no group in flight.
    """
    if self.groups == 1:
      obs, _ = self._env.reset()
      return obs
    self._env.async_reset()
    obs = np.zeros((self.num_envs,) + OBSERVATION_SHAPE, np.uint8)
    rows = []
    for _ in range(self.groups):
      o, _, _, _, info = self._env.recv()
      ids = np.asarray(info["env_id"])
      obs[ids] = o
      rows.append(np.sort(ids))
    self.group_rows = tuple(rows)
    self._in_flight = None
    return obs

  def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One step of every environment.

    Returns obs [E, 3, 64, 64] uint8, reward [E] float32 (arrived with obs),
    last [E] bool (this step ended an episode: terminated or truncated) and
    truncated [E] bool. In grouped mode the groups step one after another.
    """
    actions = np.asarray(actions, dtype=np.int32)
    if self.groups == 1:
      obs, reward, terminated, truncated, _ = self._env.step(actions)
      return _convert(obs, reward, terminated, truncated)
    out = (np.zeros((self.num_envs,) + OBSERVATION_SHAPE, np.uint8),
           np.zeros((self.num_envs,), np.float32), np.zeros((self.num_envs,), bool),
           np.zeros((self.num_envs,), bool))
    for g, rows in enumerate(self.group_rows):
      self.send(g, actions[rows])
      for full, part in zip(out, self.recv()):
        full[rows] = part
    return out

  def send(self, group: int, actions: Any) -> None:
    """Starts one step of group `group` (actions [E / G], in group_rows order);
    returns at once. Another group must not be in flight (``recv`` it first)."""
    if self._in_flight is not None:
      raise RuntimeError(f"group {self._in_flight} is still in flight: recv() it first")
    self._env.send(np.asarray(actions, dtype=np.int32), self.group_rows[group])
    self._in_flight = group

  def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Waits for the group in flight; returns its (obs, reward, last,
    truncated) as ``step`` does, [E / G] rows in group_rows order."""
    if self._in_flight is None:
      raise RuntimeError("no group in flight: send() one first")
    obs, reward, terminated, truncated, info = self._env.recv()
    rows = self.group_rows[self._in_flight]
    self._in_flight = None
    ids = np.asarray(info["env_id"])
    order = np.argsort(ids)
    if not np.array_equal(ids[order], rows):
      raise RuntimeError("EnvPool returned environments of another group")
    return _convert(obs[order], np.asarray(reward)[order], np.asarray(terminated)[order],
                    np.asarray(truncated)[order])

  def close(self) -> None:
    close = getattr(self._env, "close", None)
    if close is not None:
      close()


def _convert(obs, reward, terminated, truncated):
  truncated = np.asarray(truncated, bool)
  last = np.asarray(terminated, bool) | truncated
  return obs, np.asarray(reward, np.float32), last, truncated


class ProcgenTask:
  """What the registry returns for a ProcGen task: its game, action count and
  observation shape, and a factory of pools (the host trainer makes them)."""

  host_stepped = True
  episode_columns: tuple[str, ...] = ()
  observation_dtype = np.uint8

  def __init__(self, game: str):
    env_id(game, "easy")   # validates the game
    self.name = game
    self.num_actions = NUM_ACTIONS
    self.observation_shape = OBSERVATION_SHAPE

  # Pools can step their environments in groups (``pool(..., groups=2)``).
  groups_supported = True

  def pool(self, num_envs: int, seed: int, protocol: Any = None,
           evaluation: bool = False, groups: int = 1) -> ProcgenPool:
    """A pool on the protocol's training levels (``distribution_mode``,
    ``start_level``, ``num_levels``) or, with `evaluation`, on its test levels
    (the same keys prefixed ``eval_``); `groups` > 1: grouped stepping."""
    def get(key, default):
      value = protocol.get(key) if protocol is not None else None
      return default if value is None else value
    mode = str(get("distribution_mode", "hard"))
    start, levels = int(get("start_level", 0)), int(get("num_levels", 0))
    if evaluation:
      mode = str(get("eval_distribution_mode", mode))
      start, levels = int(get("eval_start_level", 0)), int(get("eval_num_levels", 0))
    return ProcgenPool(self.name, mode, num_envs, seed, start, levels, groups=groups)
