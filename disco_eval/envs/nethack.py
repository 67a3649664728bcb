"""NetHack (NLE ``NetHackChallenge-v0``) in worker processes.

The NeurIPS 2021 NetHack Challenge environment: the full game with the full
121-action keyboard, a random character (role, race, alignment, gender),
no reward shaping (the reward is the change of the in-game score, so an
episode's return IS its in-game score; blstats' score field is zeroed at death
and is not used), episodes aborted after 1,000,000 steps or 10,000 steps
without the in-game clock moving.

Not reproducible: ``NetHackChallenge-v0`` refuses seeding (its seed functions
raise), so the `seed` of a pool is ignored and two runs see different
dungeons; run records say so (``episodes_reproducible = false``).

Nothing is recorded: no ttyrecs (``save_ttyrec_every=0``); NLE plays in a
private temporary folder that it deletes when the environment closes.

Observation: one flat int16 vector [1686] per step, ``glyphs`` (21 x 79,
row-major, 0 .. 5976 = MAX_GLYPH for "nothing") then ``blstats`` (27,
clipped to int16); the ``glyph_net`` torso splits it again.
"""

from typing import Any

import numpy as np

from disco_eval.envs.base import HostTask

ENV_ID = "NetHackChallenge-v0"
NUM_ACTIONS = 121
GLYPH_ROWS, GLYPH_COLS, NUM_BLSTATS = 21, 79, 27
OBS_LEN = GLYPH_ROWS * GLYPH_COLS + NUM_BLSTATS
OBSERVATION_SHAPE = (OBS_LEN,)
DEPTH_INDEX = 12  # blstats: dungeon depth
EPISODE_COLUMNS = ("episode_steps", "max_depth")


def encode(glyphs: np.ndarray, blstats: np.ndarray) -> np.ndarray:
  """NLE's glyphs [21, 79] and blstats [27] -> one int16 observation [1686].

  Blstats are clipped to the int16 range; glyphs (0..5976) fit as they are.
  """
  glyphs, blstats = np.asarray(glyphs), np.asarray(blstats)
  if glyphs.shape != (GLYPH_ROWS, GLYPH_COLS):
    raise ValueError(f"glyphs must be [{GLYPH_ROWS}, {GLYPH_COLS}], got {glyphs.shape}")
  if blstats.shape != (NUM_BLSTATS,):
    raise ValueError(f"blstats must be [{NUM_BLSTATS}], got {blstats.shape}")
  out = np.empty((OBS_LEN,), np.int16)
  out[: GLYPH_ROWS * GLYPH_COLS] = glyphs.reshape(-1)
  info = np.iinfo(np.int16)
  out[GLYPH_ROWS * GLYPH_COLS :] = np.clip(blstats.astype(np.int64), info.min, info.max)
  return out


class NetHackEnv:
  """One NetHackChallenge-v0 environment (adapter protocol of ``envs.workers``).

  `seed` is accepted for the protocol and ignored (the environment refuses it).
  """

  def __init__(self, seed: int = 0):
    import gymnasium as gym
    import nle  # noqa: F401 - registers the NetHack environments with gymnasium

    self._env = gym.make(ENV_ID, observation_keys=("glyphs", "blstats"), save_ttyrec_every=0)
    self._steps = 0
    self._depth = 0

  def _obs(self, obs: dict) -> np.ndarray:
    self._depth = max(self._depth, int(obs["blstats"][DEPTH_INDEX]))
    return encode(obs["glyphs"], obs["blstats"])

  def reset(self) -> np.ndarray:
    obs, _ = self._env.reset()
    self._steps, self._depth = 0, 0
    return self._obs(obs)

  def step(self, action: int):
    obs, reward, terminated, truncated, _ = self._env.step(int(action))
    self._steps += 1
    encoded = self._obs(obs)
    episode = None
    if terminated or truncated:
      episode = {"episode_steps": float(self._steps), "max_depth": float(self._depth)}
    return encoded, float(reward), bool(terminated), bool(truncated), episode

  def close(self) -> None:
    self._env.close()


def make_env(seed: int = 0) -> NetHackEnv:
  return NetHackEnv(seed)


class NetHackTask(HostTask):
  """What the registry returns for NetHack: spaces and a pool factory; not
  reproducible (the environment refuses seeding)."""

  episode_columns = EPISODE_COLUMNS
  observation_dtype = np.int16
  reproducible = False

  def __init__(self, name: str = ENV_ID):
    if name != ENV_ID:
      raise ValueError(f"unknown NetHack task '{name}'; known: {ENV_ID}")
    self.name = name
    self.num_actions = NUM_ACTIONS
    self.observation_shape = OBSERVATION_SHAPE

  def pool(self, num_envs: int, seed: int, protocol: Any = None, evaluation: bool = False):
    from disco_eval.envs.workers import WorkerPool

    return WorkerPool(make_env, {}, num_envs, seed, OBSERVATION_SHAPE, np.int16)


def make_task(suite: Any, task: str) -> NetHackTask:
  """The registry's factory: the NetHack task `task`."""
  return NetHackTask(task)
