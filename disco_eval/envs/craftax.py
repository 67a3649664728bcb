"""Craftax-Classic (Matthews et al. 2024, the ``craftax`` package) in pure JAX.

Craftax-Classic re-implements Crafter's game (Hafner 2022) in JAX: the same
22 achievements, 17 actions, a 64x64 world, episodes of at most 10,000 steps,
reward +1 for each achievement the first time it is unlocked in an episode
and 0.1 per point of health gained (minus 0.1 per point lost). It is a
different benchmark from Crafter (its own world generation, mob and
day-night code, no image-level equivalence), and reports say so.

Two observations (tasks):

* ``craftax-classic-symbolic`` (``Craftax-Classic-Symbolic-v1``): float32
  [1345], the one-hot local 7x9 map (blocks and mobs), inventory, intrinsics,
  light level, sleep flag and facing direction;
* ``craftax-classic-pixels`` (``Craftax-Classic-Pixels-v1``): the 63x63 RGB
  image, given channel-first [3, 63, 63] with values 0..255 (as float32) so
  that the IMPALA-CNN torso (which divides by 255) serves it as ProcGen.

The environments are the package's no-auto-reset ones, wrapped by
:class:`~disco_eval.envs.gymnax_env.GymnaxTask`. An episode ends when the
player dies or stands in lava (terminal) or after ``max_timesteps`` steps
(a truncation).

Final evaluation (``evaluate_protocol``): ``eval_episodes`` fresh episodes of
the final policy (sampling), each played to its end; the score is their mean
return, and the Crafter-style score S = exp(mean_i ln(1 + s_i)) - 1 over the
22 achievements (s_i the percentage of those episodes that unlocked
achievement i; :func:`disco_eval.envs.crafter.crafter_score`) is reported
beside it as ``crafter_score``, with ``ach_<name>`` success rates.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval.envs.crafter import crafter_score
from disco_eval.envs.gymnax_env import GymnaxTask
from disco_eval.errors import UserError

Array = jax.Array

TASKS = {
  "craftax-classic-symbolic": "symbolic",
  "craftax-classic-pixels": "pixels",
}
NUM_ACTIONS = 17
SYMBOLIC_SHAPE = (1345,)
PIXELS_SHAPE = (3, 63, 63)


def achievement_names() -> tuple[str, ...]:
  """Craftax-Classic's achievement names, lower case, in its index order."""
  from craftax.craftax_classic.constants import Achievement

  return tuple(a.name.lower() for a in sorted(Achievement, key=lambda a: a.value))


def _symbolic(obs: Array) -> Array:
  return jnp.asarray(obs, jnp.float32)


def _pixels(obs: Array) -> Array:
  return jnp.transpose(jnp.asarray(obs, jnp.float32) * 255.0, (2, 0, 1))


def _truncated(state: Any, params: Any) -> Array:
  """The time limit ended the episode (and not death or lava on that step)."""
  from craftax.craftax_classic.constants import BlockType

  timed = state.timestep >= params.max_timesteps
  pos = state.player_position
  lava = state.map[pos[0], pos[1]] == BlockType.LAVA.value
  return timed & (state.player_health > 0) & ~lava


def world_bank(env: Any, params: Any, size: int, seed: int = 0, block: int = 64) -> Any:
  """`size` first states (worlds) of `env`, stacked [size, ...], generated
  from PRNG key `seed` in vmapped blocks of `block`."""
  keys = jax.random.split(jax.random.PRNGKey(seed), size)
  make = jax.jit(jax.vmap(lambda k: env.reset_env(k, params)[1]))
  pad = -size % block
  keys = jnp.concatenate([keys, keys[:pad]]) if pad else keys
  parts = [make(keys[i : i + block]) for i in range(0, len(keys), block)]
  return jax.tree.map(lambda *xs: jnp.concatenate(xs)[:size], *parts)


def make_classic(
  observation: str = "symbolic",
  max_timesteps: int | None = None,
  name: str | None = None,
  bank: int = 0,
) -> GymnaxTask:
  """Craftax-Classic with `observation` "symbolic" or "pixels", optionally
  with another episode limit `max_timesteps` (default the package's 10,000)
  and a bank of `bank` worlds that resets draw from (0: a fresh world at
  every reset, the package's behaviour)."""
  try:
    if observation == "symbolic":
      from craftax.craftax_classic.envs.craftax_symbolic_env import (
        CraftaxClassicSymbolicEnvNoAutoReset as Env,
      )
    elif observation == "pixels":
      from craftax.craftax_classic.envs.craftax_pixels_env import (
        CraftaxClassicPixelsEnvNoAutoReset as Env,
      )
    else:
      raise UserError(f"unknown Craftax-Classic observation '{observation}'; symbolic or pixels")
  except ImportError as e:
    raise UserError(f"cannot import craftax ({e}); pip install craftax==1.6.1") from None
  env = Env()
  params = env.default_params
  if max_timesteps is not None:
    params = params.replace(max_timesteps=int(max_timesteps))
  shape, observe = (
    (SYMBOLIC_SHAPE, _symbolic) if observation == "symbolic" else (PIXELS_SHAPE, _pixels)
  )
  initial = world_bank(env, params, int(bank)) if bank else None
  return GymnaxTask(
    name or f"craftax-classic-{observation}",
    env,
    params,
    NUM_ACTIONS,
    shape,
    observe,
    _truncated,
    initial_states=initial,
  )


def make_task(suite: Any, task: str) -> GymnaxTask:
  """The registry's factory. The suite's ``[worlds]`` table sets ``bank``,
  the number of worlds training resets draw from (0: fresh worlds), and may
  set ``max_timesteps``."""
  if task not in TASKS:
    raise UserError(f"unknown Craftax-Classic task '{task}'; known: {', '.join(sorted(TASKS))}")
  table = suite.raw.get("worlds", {})
  limit = table.get("max_timesteps")
  bank = int(table.get("bank", 0))
  return make_classic(TASKS[task], None if limit is None else int(limit), name=task, bank=bank)


# --- final evaluation -----------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("env", "apply_fn", "episodes"))
def _play(env: GymnaxTask, apply_fn: Callable, params: Any, rng: Array, episodes: int):
  """`episodes` episodes in parallel, each to its end: (returns [N],
  achievements bool [N, 22] at each episode's last step, lengths [N])."""
  keys = jax.random.split(rng, episodes + 1)
  states, ts = jax.vmap(env.reset)(keys[1:])
  achievements = jnp.zeros((episodes, states.env.achievements.shape[-1]), bool)

  def cond(c):
    return ~jnp.all(c[3])

  def body(c):
    s, obs, ret, done, ach, length, key = c
    key, sub = jax.random.split(key)
    action = jax.random.categorical(sub, apply_fn(params, obs)["logits"]).astype(jnp.int32)
    s, obs, t = jax.vmap(env.transition)(s, action)
    live = ~done
    ret = jnp.where(live, ret + t.reward, ret)
    ach = jnp.where(live[:, None], t.env.achievements, ach)
    length = length + live.astype(jnp.int32)
    return s, obs, ret, done | t.terminated | t.truncated, ach, length, key

  zeros = jnp.zeros((episodes,), jnp.float32)
  init = (states, ts.observation, zeros, jnp.zeros((episodes,), bool), achievements)
  init = init + (jnp.zeros((episodes,), jnp.int32), keys[0])
  _, _, ret, _, ach, length, _ = jax.lax.while_loop(cond, body, init)
  return ret, ach, length


def evaluate_env(
  env: GymnaxTask, apply_fn: Callable, params: Any, rng: Array, episodes: int
) -> tuple[np.ndarray, dict[str, Any]]:
  """Returns [episodes] of the sampling policy and the figures beside them:
  ``crafter_score`` (percent), ``ach_<name>`` success rates (percent) and
  ``mean_length``. `apply_fn` must be hashable (e.g. ``agent.apply``)."""
  ret, ach, length = jax.device_get(_play(env, apply_fn, params, rng, int(episodes)))
  rates = 100.0 * np.asarray(ach, np.float64).mean(axis=0)
  extra: dict[str, Any] = {"crafter_score": crafter_score(rates)}
  extra.update({f"ach_{n}": float(r) for n, r in zip(achievement_names(), rates)})
  extra["mean_length"] = float(np.mean(length))
  return np.asarray(ret, np.float64), extra


def evaluate_protocol(
  protocol: Any, apply_fn: Callable, params: Any, rng: Array, observation: str = "symbolic"
):
  """The registry's final evaluation of a Craftax-Classic protocol (see the
  module docstring); ``eval_max_timesteps`` may shorten the episodes."""
  limit = protocol.get("eval_max_timesteps")
  env = _cached(observation, None if limit is None else int(limit))
  return evaluate_env(env, apply_fn, params, rng, protocol.typed.eval_episodes)


@functools.lru_cache(maxsize=4)
def _cached(observation: str, max_timesteps: int | None) -> GymnaxTask:
  return make_classic(observation, max_timesteps)
