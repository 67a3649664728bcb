"""A pure-JAX environment written to the gymnax interface, as a :class:`JaxEnv`.

gymnax environments (and the ``craftax`` package's, which follow the same
interface) expose ``reset_env(key, params) -> (obs, state)`` and
``step_env(key, state, action, params) -> (obs, state, reward, done, info)``
without auto-reset. :class:`GymnaxTask` wraps one such environment: its state
carries the wrapped state and a PRNG key; ``step`` splits the key, steps, and
on the step that ends an episode returns that step's reward with ``last`` set
and the first observation of a freshly reset episode (the contract of
:mod:`disco_eval.envs.base`). Under ``vmap`` both the step and the reset are
computed every step (a select picks one), as gymnax's own auto-reset does.

With a bank of first states (``initial_states``, stacked [K, ...]), a
reset draws one of them uniformly instead of calling ``reset_env``: for
environments whose reset is far dearer than a step (Craftax's world
generation), the bank is made once and no reset is computed while training.

``truncated`` marks the episodes a time limit ended (the wrapped family says
which, through its ``truncated(state, params)``), so that learners bootstrap
from them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from disco_eval.envs.base import JaxEnv, TimeStep

Array = jax.Array


class GymnaxState(NamedTuple):
  env: Any  # the wrapped environment's state
  rng: Array  # PRNG key of this environment


class Transition(NamedTuple):
  """One step without reset (for evaluations that look at the final state)."""

  env: Any  # wrapped state after the step (not reset)
  reward: Array  # [] float32
  terminated: Array  # [] bool: the episode ended by itself
  truncated: Array  # [] bool: a time limit ended it


class GymnaxTask(JaxEnv):
  """A gymnax-interface environment under the :class:`JaxEnv` contract.

  Args:
    name: the task's name (as in the suite manifest).
    env: the environment object (``reset_env`` and ``step_env``).
    params: its parameters (``env.default_params`` or a replacement).
    num_actions: size of its discrete action space.
    observation_shape: shape of :meth:`observe`'s output.
    observe: raw observation -> float32 observation of `observation_shape`.
    truncated: ``truncated(state, params) -> [] bool`` on the stepped state:
      the episode ended by a time limit.
    initial_states: optional bank of first states, stacked [K, ...].
  """

  def __init__(
    self,
    name: str,
    env: Any,
    params: Any,
    num_actions: int,
    observation_shape: tuple[int, ...],
    observe: Callable[[Array], Array],
    truncated: Callable[[Any, Any], Array],
    initial_states: Any = None,
  ):
    self.name = name
    self.env = env
    self.params = params
    self.num_actions = int(num_actions)
    self.observation_shape = tuple(observation_shape)
    self._observe = observe
    self._truncated = truncated
    self.initial_states = initial_states
    self.bank_size = (
      0 if initial_states is None else int(jax.tree.leaves(initial_states)[0].shape[0])
    )

  def _fresh(self, rng: Array) -> tuple[GymnaxState, Array]:
    rng, sub = jax.random.split(rng)
    if self.initial_states is None:
      obs, state = self.env.reset_env(sub, self.params)
    else:
      index = jax.random.randint(sub, (), 0, self.bank_size, jnp.int32)
      state = jax.tree.map(lambda b: b[index], self.initial_states)
      obs = self.env.get_obs(state)
    return GymnaxState(state, rng), self._observe(obs)

  def reset(self, rng: Array) -> tuple[GymnaxState, TimeStep]:
    s, obs = self._fresh(rng)
    false = jnp.zeros((), bool)
    return s, TimeStep(obs, jnp.zeros((), jnp.float32), false, false)

  def transition(self, s: GymnaxState, action: Array) -> tuple[GymnaxState, Array, Transition]:
    """One step without reset: (next state, its observation, the step)."""
    rng, sub = jax.random.split(s.rng)
    obs, state, reward, done, _ = self.env.step_env(sub, s.env, action, self.params)
    truncated = jnp.asarray(self._truncated(state, self.params), bool)
    terminated = jnp.asarray(done, bool) & ~truncated
    step = Transition(state, jnp.asarray(reward, jnp.float32), terminated, truncated)
    return GymnaxState(state, rng), self._observe(obs), step

  def step(self, s: GymnaxState, action: Array) -> tuple[GymnaxState, TimeStep]:
    moved, obs, t = self.transition(s, action.astype(jnp.int32))
    last = t.terminated | t.truncated
    fresh, fresh_obs = self._fresh(moved.rng)
    nxt = jax.tree.map(lambda a, b: jnp.where(last, a, b), fresh, moved)
    obs = jnp.where(last, fresh_obs, obs)
    return nxt, TimeStep(obs, t.reward, last, t.truncated)
