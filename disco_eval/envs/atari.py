"""Atari 2600 games (the Arcade Learning Environment) through EnvPool, stepped on the host.

``AtariPool`` wraps one EnvPool batch of ``num_envs`` environments of one game
(gymnasium API, EnvPool's ``*-v5`` tasks, ROMs from the ``envpool-assets``
package: no download) in the step convention of the trainers, as
:mod:`disco_eval.envs.procgen` does: every EnvPool step is one *agent step*
(``frame_skip`` emulator frames), returned as ``(obs, reward, last,
truncated)``; the step after an episode's last is a reset step (action
ignored, reward 0, first observation of the next episode).

The environment settings come from the protocol (``suites/atari.toml``, each
with its source): ``frame_skip``, ``sticky_action_prob`` (ALE's
``repeat_action_probability``), ``full_action_space``, ``noop_max``,
``max_episode_frames`` (the episode cap in emulator frames; EnvPool counts it
in agent steps, ``max_episode_frames // frame_skip``), ``life_loss_ends_episode``
(EnvPool's ``episodic_life``), ``reward_clip``, ``grayscale`` and
``image_size``. Frames are not stacked here (``stack_num = 1``): the
protocol's ``frame_stack`` is applied by the trainer (``train.frame_stack``,
:mod:`disco_eval.train.frames`), along the channel axis of these CHW
frames (``frame_axis = 0``), so that the replay buffer keeps each frame once.

Truncation (the episode cap) ends an episode like termination (``last``), and
is also returned as ``truncated``.
"""

from typing import Any

import numpy as np

from disco_eval.envs.base import HostPool, HostTask

# The 57 games of Atari-57 (the games of Extended Data Table 1 of Oh et al. 2025, as in
# google-deepmind/dqn_zoo's atari_data.py), by our task name -> EnvPool's game name.
GAMES = {
  "alien": "Alien",
  "amidar": "Amidar",
  "assault": "Assault",
  "asterix": "Asterix",
  "asteroids": "Asteroids",
  "atlantis": "Atlantis",
  "bank_heist": "BankHeist",
  "battle_zone": "BattleZone",
  "beam_rider": "BeamRider",
  "berzerk": "Berzerk",
  "bowling": "Bowling",
  "boxing": "Boxing",
  "breakout": "Breakout",
  "centipede": "Centipede",
  "chopper_command": "ChopperCommand",
  "crazy_climber": "CrazyClimber",
  "defender": "Defender",
  "demon_attack": "DemonAttack",
  "double_dunk": "DoubleDunk",
  "enduro": "Enduro",
  "fishing_derby": "FishingDerby",
  "freeway": "Freeway",
  "frostbite": "Frostbite",
  "gopher": "Gopher",
  "gravitar": "Gravitar",
  "hero": "Hero",
  "ice_hockey": "IceHockey",
  "jamesbond": "Jamesbond",
  "kangaroo": "Kangaroo",
  "krull": "Krull",
  "kung_fu_master": "KungFuMaster",
  "montezuma_revenge": "MontezumaRevenge",
  "ms_pacman": "MsPacman",
  "name_this_game": "NameThisGame",
  "phoenix": "Phoenix",
  "pitfall": "Pitfall",
  "pong": "Pong",
  "private_eye": "PrivateEye",
  "qbert": "Qbert",
  "riverraid": "Riverraid",
  "road_runner": "RoadRunner",
  "robotank": "Robotank",
  "seaquest": "Seaquest",
  "skiing": "Skiing",
  "solaris": "Solaris",
  "space_invaders": "SpaceInvaders",
  "star_gunner": "StarGunner",
  "surround": "Surround",
  "tennis": "Tennis",
  "time_pilot": "TimePilot",
  "tutankham": "Tutankham",
  "up_n_down": "UpNDown",
  "venture": "Venture",
  "video_pinball": "VideoPinball",
  "wizard_of_wor": "WizardOfWor",
  "yars_revenge": "YarsRevenge",
  "zaxxon": "Zaxxon",
}
FULL_ACTIONS = 18

# Settings a pool reads from the protocol, with the value used when a protocol
# does not set one (the `disco` protocol sets every one, with its source).
DEFAULTS = {
  "frame_skip": 4,
  "sticky_action_prob": 0.0,
  "full_action_space": False,
  "noop_max": 30,
  "max_episode_frames": 108_000,
  "life_loss_ends_episode": False,
  "reward_clip": False,
  "grayscale": True,
  "image_size": 84,
}


def env_id(game: str) -> str:
  """EnvPool's task id, e.g. 'ms_pacman' -> 'MsPacman-v5'."""
  if game not in GAMES:
    raise ValueError(f"unknown Atari game '{game}'; known: {', '.join(GAMES)}")
  return f"{GAMES[game]}-v5"


def env_settings(protocol: Any = None) -> dict[str, Any]:
  """The protocol's environment settings (``DEFAULTS`` where it sets none)."""
  out = {}
  for key, default in DEFAULTS.items():
    value = protocol.get(key) if protocol is not None else None
    out[key] = default if value is None else value
  return out


def envpool_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
  """EnvPool's keyword arguments for `settings` (see :func:`env_settings`)."""
  skip = int(settings["frame_skip"])
  size = int(settings["image_size"])
  return {
    "frame_skip": skip,
    "repeat_action_probability": float(settings["sticky_action_prob"]),
    "full_action_space": bool(settings["full_action_space"]),
    "noop_max": int(settings["noop_max"]),
    "max_episode_steps": int(settings["max_episode_frames"]) // skip,
    "episodic_life": bool(settings["life_loss_ends_episode"]),
    "reward_clip": bool(settings["reward_clip"]),
    "gray_scale": bool(settings["grayscale"]),
    "img_height": size,
    "img_width": size,
    "stack_num": 1,
  }


def observation_shape(settings: dict[str, Any]) -> tuple[int, int, int]:
  """[C, H, W] of one observation: 1 channel (grayscale) or 3 (RGB)."""
  size = int(settings["image_size"])
  return (1 if settings["grayscale"] else 3, size, size)


class AtariPool(HostPool):
  """`num_envs` environments of one Atari game (host-stepped, auto-reset)."""

  def __init__(self, game: str, num_envs: int, seed: int, settings: dict, num_threads: int = 0):
    import envpool  # imported here: only the host-stepped suites need it

    self.game, self.num_envs = game, int(num_envs)
    self._env = envpool.make(
      env_id(game),
      env_type="gymnasium",
      num_envs=self.num_envs,
      batch_size=self.num_envs,
      seed=int(seed),
      num_threads=int(num_threads),
      **envpool_kwargs(settings),
    )
    self.num_actions = int(self._env.action_space.n)
    self.observation_shape = tuple(self._env.observation_space.shape)

  def reset(self) -> np.ndarray:
    """Starts new episodes in all environments; returns obs [E, C, H, W] uint8."""
    obs, _ = self._env.reset()
    return obs

  def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One agent step of every environment: obs [E, C, H, W] uint8, reward [E]
    float32 (arrived with obs), last [E] bool (terminated or truncated) and
    truncated [E] bool."""
    obs, reward, terminated, truncated, _ = self._env.step(np.asarray(actions, dtype=np.int32))
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


class AtariTask(HostTask):
  """What the registry returns for an Atari game: its action count and
  observation shape under the suite's default protocol, and a factory of
  pools. Observations uint8 [C, H, W]; no episode columns."""

  observation_dtype = np.uint8
  frame_axis = 0  # frame stacking concatenates along C

  def __init__(self, game: str, protocol: Any = None):
    env_id(game)  # validates the game
    self.name = game
    self.settings = env_settings(protocol)
    self.observation_shape = observation_shape(self.settings)
    self.num_actions = FULL_ACTIONS if self.settings["full_action_space"] else _minimal(game)

  def pool(
    self, num_envs: int, seed: int, protocol: Any = None, evaluation: bool = False
  ) -> AtariPool:
    """A pool with the protocol's environment settings; with `evaluation`,
    full games with unclipped rewards (game scores), whatever
    ``life_loss_ends_episode`` and ``reward_clip`` say for training."""
    settings = env_settings(protocol) if protocol is not None else dict(self.settings)
    if evaluation:
      settings["life_loss_ends_episode"] = False
      settings["reward_clip"] = False
    pool = AtariPool(self.name, num_envs, seed, settings)
    if pool.num_actions != self.num_actions or pool.observation_shape != self.observation_shape:
      pool.close()
      raise ValueError(
        f"Atari game '{self.name}': the protocol's environment settings give "
        f"{pool.num_actions} actions and observations {pool.observation_shape}, the task was "
        f"made for {self.num_actions} and {self.observation_shape}"
      )
    return pool


def _minimal(game: str) -> int:
  """The size of `game`'s minimal action set (from EnvPool's spec, no emulator started)."""
  import envpool

  spec = envpool.make_spec(env_id(game))
  return int(spec.action_space.n)


def make_task(suite: Any, task: str) -> AtariTask:
  """The registry's factory: the Atari game `task` under the suite's default protocol."""
  protocol = suite.protocol() if suite is not None else None
  return AtariTask(task, protocol)
