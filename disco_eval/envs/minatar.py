"""MinAtar (Young & Tian 2019) in pure JAX: gymnax's re-implementation.

The five games of gymnax 1.0.1 (``Asterix-MinAtar``, ``Breakout-MinAtar``,
``Freeway-MinAtar``, ``Seaquest-MinAtar``, ``SpaceInvaders-MinAtar``) with
gymnax's defaults: the minimal action sets (3 to 6 actions, as the original
package's ``minimal_action_set()``), difficulty ramping on (the original's
default too), no sticky actions (the original package repeats the last
action with probability 0.1 by default; gymnax has no such option) and a time
limit of 1,000 steps (Freeway: 2,500, the game's own length in the original;
gymnax ends Freeway only by that limit and reports it as a truncation, so the
learner bootstraps at Freeway's end where the original calls it terminal).

Observations: gymnax's boolean grids [10, 10, C] (one channel per object
kind, C = 4 Asterix and Breakout, 7 Freeway, 10 Seaquest, 6 SpaceInvaders)
as float32 0/1.

Checked against the original ``minatar`` package (tests/test_minatar.py):
identical observations and rewards for the same actions on Breakout (whose
dynamics are deterministic after the first random draw), and matching
random-policy statistics on the other games.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from disco_eval.envs.gymnax_env import GymnaxTask
from disco_eval.errors import UserError

# Task name -> gymnax environment id.
GAMES = {
  "minatar-asterix": "Asterix-MinAtar",
  "minatar-breakout": "Breakout-MinAtar",
  "minatar-freeway": "Freeway-MinAtar",
  "minatar-seaquest": "Seaquest-MinAtar",
  "minatar-space_invaders": "SpaceInvaders-MinAtar",
}


def _observe(obs):
  return jnp.asarray(obs, jnp.float32)


def make_game(task: str, max_steps: int | None = None) -> GymnaxTask:
  """The gymnax MinAtar game of suite task `task` (``GAMES``), optionally
  with another time limit `max_steps`."""
  if task not in GAMES:
    raise UserError(f"unknown MinAtar task '{task}'; known: {', '.join(sorted(GAMES))}")
  try:
    import gymnax
  except ImportError as e:
    raise UserError(f"cannot import gymnax ({e}); pip install gymnax==1.0.1") from None
  env, params = gymnax.make(GAMES[task])
  if max_steps is not None:
    params = params.replace(max_steps_in_episode=int(max_steps))

  def truncated(state: Any, p: Any):
    return env.is_truncated(state, p) & ~env.is_terminated(state, p)

  return GymnaxTask(
    task,
    env,
    params,
    env.num_actions,
    tuple(env.obs_shape),
    _observe,
    truncated,
  )


def make_task(suite: Any, task: str) -> GymnaxTask:
  """The registry's factory; a suite's ``[limits]`` table may set a task's
  ``max_steps`` (default: gymnax's)."""
  limit = suite.raw.get("limits", {}).get(task, {}).get("max_steps")
  return make_game(task, None if limit is None else int(limit))
