"""The training core for pure-JAX environments: act, store, sample, learn.

One *iteration* unrolls the actor for `rollout_len` steps in `num_envs`
environments (one replay entry of trajectories of T+1 = rollout_len steps),
adds it to a FIFO replay buffer, and, once the buffer holds `min_buffer`
entries, makes `updates_per_iteration` learner steps on `sample_entries`
entries each (batch B = sample_entries * num_envs trajectories). This is the
loop of DiscoRL's reference Catch example.

Iterations run in fixed-size chunks compiled once (``lax.scan``); a chunk is a
pure function of a :class:`TrainState`, so seeds can be vmapped and the state
checkpointed and resumed bit-for-bit.

With ``devices = N > 1`` the same program runs over N local devices, the
environments, replay buffer and learner batch split between them
(:mod:`disco_eval.train.devices`); it learns what the one-device run learns.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from disco_eval.agents.networks import Agent
from disco_eval.config.train import TrainConfig
from disco_eval.envs.base import JaxEnv
from disco_eval.rules.base import Rollout, UpdateRule, acting_logits
from disco_eval.train import devices, frames, replay
from disco_eval.train.learner import Learner, is_learning
from disco_eval.train.seed_group import how_seeds_run, stack

Array = jax.Array


class TrainState(NamedTuple):
  params: Any
  opt_state: Any
  rule_state: Any
  env_state: Any  # batched [E]
  timestep: Any  # batched [E]
  episode_return: Array  # [E] return so far of the running episode
  buffer: replay.ReplayState
  rng: Array
  # With frame stacking (:mod:`disco_eval.train.frames`): the actor's last K
  # frames [E, K, *o] and steps since its episode started [E]; None without.
  window: Any = None
  since: Any = None


class IterationMetrics(NamedTuple):
  """Per iteration (arrays [K] per chunk; [S, K] for a group of seeds), of
  both trainers."""

  active: Array
  return_sum: Array  # summed returns of the episodes that ended
  episodes: Array  # number of episodes that ended
  learned: Array  # learner steps made
  loss: Array  # mean loss of those steps (0 if none)
  # {column: sums} of the task's episode columns ([K] each): {} here, as
  # pure-JAX envs declare none; the host trainer fills them.
  extra: dict


class Trainer:
  """Builds the jitted pieces for one (env, agent, rule, optimiser) setup.

  Has the trainers' interface that sweeps use
  (:class:`disco_eval.train.trainers.RunTrainer`).
  """

  def __init__(
    self,
    env: JaxEnv,
    agent: Agent,
    rule: UpdateRule,
    optimizer: optax.GradientTransformation,
    cfg: TrainConfig,
  ):
    self.env, self.agent, self.rule, self.opt, self.cfg = env, agent, rule, optimizer, cfg
    self.learner = Learner(agent, rule, optimizer, cfg, frame_axis=env.frame_axis)
    self.mesh = self.learner.mesh  # None on one device
    self.seed_mode = how_seeds_run(cfg, host_stepped=False)
    # The env's device data (e.g. a level table) is argument 0, not a constant.
    self._chunk = jax.jit(self._reading_env(self._run_chunk), donate_argnums=(1,))
    self._chunk_seeds = jax.jit(
      self._reading_env(jax.vmap(self._run_chunk, in_axes=(0, None, None, None))),
      donate_argnums=(1,),
    )
    self._evaluate = jax.jit(self._reading_env(self._evaluate_episodes), static_argnums=(3,))

  def _reading_env(self, fn):
    """`fn` with the env's device data as a first argument, read by the env
    while `fn` is traced (``JaxEnv.reading``)."""

    def with_data(data, *args):
      with self.env.reading(data):
        return fn(*args)

    return with_data

  # -- state -----------------------------------------------------------------

  def init(self, seed: int | Array) -> TrainState:
    """Fresh state for one seed (vmappable over `seed`)."""
    rng = jax.random.PRNGKey(seed)
    rng, k_net, k_rule, k_env = jax.random.split(rng, 4)
    params = self.agent.init(k_net)
    env_keys = jax.random.split(k_env, self.cfg.num_envs)
    env_state, ts = jax.vmap(self.env.reset)(env_keys)
    entry = self._empty_entry(ts)
    k = self.cfg.frame_stack
    stacking = {}
    if k > 1:
      stacking = dict(
        window=frames.reset_window(ts.observation, k),
        since=jnp.zeros((self.cfg.num_envs,), jnp.int32),
      )
    state = TrainState(
      params=params,
      opt_state=self.opt.init(params),
      rule_state=self.rule.init_state(k_rule, jax.tree.map(jnp.copy, params)),
      env_state=env_state,
      timestep=ts,
      episode_return=jnp.zeros((self.cfg.num_envs,), jnp.float32),
      buffer=replay.init(entry, self.cfg.buffer_capacity),
      rng=rng,
      **stacking,
    )
    # Distinct buffers for every leaf, so that the state can be donated.
    return jax.tree.map(jnp.copy, state)

  def lay_out(self, s: TrainState, how=devices.put, lead: int = 0) -> TrainState:
    """`s` laid out over the mesh by ``how`` (``devices.put`` or, inside a
    jitted function, ``devices.constrain``): the environment axis of the
    environment state, running returns and replay entries ([capacity, T+1,
    E, ...]) split, the rest replicated; `lead` leading axes (stacked seeds)
    come first. Unchanged on one device."""
    m = self.mesh
    if m is None:
      return s
    rep = lambda x: how(x, m, None)
    env = lambda x, axis: how(x, m, lead + axis)
    return TrainState(
      params=rep(s.params),
      opt_state=rep(s.opt_state),
      rule_state=rep(s.rule_state),
      env_state=env(s.env_state, 0),
      timestep=env(s.timestep, 0),
      episode_return=env(s.episode_return, 0),
      buffer=replay.ReplayState(
        env(s.buffer.data, 2), rep(s.buffer.next_index), rep(s.buffer.size)
      ),
      rng=rep(s.rng),
      window=None if s.window is None else env(s.window, 0),
      since=None if s.since is None else env(s.since, 0),
    )

  def _empty_entry(self, ts):
    t, e, k = self.cfg.rollout_len, self.cfg.num_envs, self.cfg.frame_stack
    rollout = Rollout(
      observations=jnp.zeros((t,) + ts.observation.shape, jnp.float32),
      actions=jnp.zeros((t, e), jnp.int32),
      rewards=jnp.zeros((t, e), jnp.float32),
      discounts=jnp.zeros((t, e), jnp.float32),
      behaviour_logits=jnp.zeros((t, e, self.env.num_actions), jnp.float32),
    )
    if k == 1:
      return rollout
    history = jnp.zeros((k - 1,) + ts.observation.shape, jnp.float32)
    return frames.StackedEntry(rollout, history, jnp.zeros((t, e), jnp.int32))

  # -- actor -----------------------------------------------------------------

  def _actor(self, params, env_state, ts, episode_return, rng, env_steps=0.0, stacking=None):
    """Unrolls `rollout_len` steps; returns the entry and episode stats.
    `env_steps`: [] steps the run took before (the rule's acting schedule);
    `stacking`: (window, since) with frame stacking, else None."""
    k = self.cfg.frame_stack

    def step(carry, key):
      env_state, ts, ep_ret, stk = carry
      obs = ts.observation if stk is None else frames.as_input(stk[0], self.env.frame_axis)
      out = self.agent.apply(params, obs)
      logits = acting_logits(self.rule, out, env_steps)  # [E, A]
      action = jax.random.categorical(key, logits).astype(jnp.int32)
      record = Rollout(
        ts.observation.astype(jnp.float32),
        action,
        ts.reward,
        1.0 - ts.last.astype(jnp.float32),
        logits,
      )
      ended = ts.last
      stats = (jnp.sum(jnp.where(ended, ep_ret + ts.reward, 0.0)), jnp.sum(ended.astype(jnp.int32)))
      ep_ret = jnp.where(ended, 0.0, ep_ret + ts.reward)
      env_state, ts = jax.vmap(self.env.step)(env_state, action)
      if stk is not None:
        # A pure-JAX env's step that ends an episode returns the next one's
        # first observation (envs/base.py).
        record = (record, stk[1])
        stk = (frames.push(stk[0], ts.observation, ts.last), frames.next_since(stk[1], ts.last, k))
      return (env_state, ts, ep_ret, stk), (record, stats)

    keys = jax.random.split(rng, self.cfg.rollout_len)
    (env_state, ts, episode_return, after), (entry, (ret, n)) = jax.lax.scan(
      step, (env_state, ts, episode_return, stacking), keys
    )
    if stacking is not None:
      history = jnp.moveaxis(stacking[0][:, :-1], 1, 0).astype(jnp.float32)  # [K-1, E, *o]
      entry = frames.StackedEntry(entry[0], history, entry[1])
    return entry, env_state, ts, episode_return, jnp.sum(ret), jnp.sum(n), after

  # -- learner ---------------------------------------------------------------

  @property
  def task(self) -> JaxEnv:
    """The environment trained on (the trainers' common name for it)."""
    return self.env

  def learner_step(self, params, opt_state, rule_state, rule_params, batch: Rollout, rng: Array):
    """One update (:meth:`disco_eval.train.learner.Learner.step`)."""
    return self.learner.step(params, opt_state, rule_state, rule_params, batch, rng)

  def close(self) -> None:
    """Nothing to release (the environments live in the state)."""

  # -- iterations ------------------------------------------------------------

  def _iteration(self, s: TrainState, rule_params, it: Array):
    cfg = self.cfg
    rng, k_act, k_learn = jax.random.split(s.rng, 3)
    env_steps = it.astype(jnp.float32) * (cfg.num_envs * cfg.rollout_len)
    stacking = None if s.window is None else (s.window, s.since)
    entry, env_state, ts, ep_ret, ret_sum, n_eps, stacking = self._actor(
      s.params, s.env_state, s.timestep, s.episode_return, k_act, env_steps, stacking
    )
    buffer = replay.add(s.buffer, entry)

    def learn(args):
      carry, loss = self.learner.updates(args, rule_params, buffer, k_learn)
      return carry, loss, jnp.asarray(cfg.updates_per_iteration, jnp.int32)

    def skip(args):
      return args, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)

    ready = is_learning(it, cfg.min_buffer)
    (params, opt_state, rule_state), loss, learned = jax.lax.cond(
      ready, learn, skip, (s.params, s.opt_state, s.rule_state)
    )
    new = self.lay_out(
      TrainState(
        params, opt_state, rule_state, env_state, ts, ep_ret, buffer, rng, *(stacking or ())
      ),
      devices.constrain,
    )
    return new, IterationMetrics(jnp.ones((), bool), ret_sum, n_eps, learned, loss, {})

  def _run_chunk(self, s: TrainState, rule_params, its: Array, active: Array):
    def body(s, xs):
      it, on = xs

      def run(s):
        return self._iteration(s, rule_params, it)

      def idle(s):
        z = jnp.zeros((), jnp.float32)
        return s, IterationMetrics(
          jnp.zeros((), bool), z, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), z, {}
        )

      return jax.lax.cond(on, run, idle, s)

    return jax.lax.scan(body, s, (its, active))

  def run_chunk(
    self, state: TrainState, rule_params, start: int, count: int, seeds_axis: bool = False
  ):
    """Runs iterations [start, start + count) (count <= cfg.chunk).

    Returns the new state and per-iteration metrics (numpy-convertible,
    [chunk] or [S, chunk]; rows past `count` are inactive).
    """
    fn = self._chunk_seeds if seeds_axis else self._chunk
    return fn(*self._chunk_args(state, rule_params, start, count, seeds_axis))

  def _chunk_args(self, state, rule_params, start: int, count: int, seeds_axis: bool):
    """The arguments of the compiled chunk (env data, state, rule params,
    iteration numbers [chunk], active flags [chunk])."""
    k = self.cfg.chunk
    its = jnp.arange(start, start + k, dtype=jnp.int32)
    active = jnp.arange(k) < count
    state = self.lay_out(state, lead=int(seeds_axis))
    return self.env.device_data(), state, rule_params, its, active

  def lowered_chunk(self, state: TrainState, rule_params, seeds_axis: bool = False):
    """The chunk program lowered for `state` (``jax.stages.Lowered``: its text,
    ``compile().memory_analysis()``); `state` may hold ShapeDtypeStructs."""
    fn = self._chunk_seeds if seeds_axis else self._chunk
    return fn.lower(*self._chunk_args(state, rule_params, 0, self.cfg.chunk, seeds_axis))

  def chunk_device_bytes(self, one: TrainState, rule_params, seeds: int) -> int | None:
    """Device memory of the compiled chunk program for `seeds` seeds (`one`: a
    seed's state as ShapeDtypeStructs): XLA's memory analysis (arguments +
    outputs + temporaries - aliased buffers); seeds taking turns keep every
    state on the device. None over several devices (not known)."""
    if self.mesh is not None:
      return None
    vmapped = seeds > 1 and self.vmaps_seeds
    state = (
      jax.tree.map(lambda x: jax.ShapeDtypeStruct((seeds,) + x.shape, x.dtype), one)
      if vmapped
      else one
    )
    a = self.lowered_chunk(state, rule_params, seeds_axis=vmapped).compile().memory_analysis()
    if a is None:
      return None
    total = (
      a.argument_size_in_bytes
      + a.output_size_in_bytes
      + a.temp_size_in_bytes
      - a.alias_size_in_bytes
    )
    one_bytes = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(one))
    return int(total + (0 if vmapped else (seeds - 1) * one_bytes))

  @property
  def dispatches_ahead(self) -> bool:
    """Whether a sweep dispatches the next chunk before it writes the previous
    chunk's records (:func:`disco_eval.train.seed_group.how_seeds_run`)."""
    return self.seed_mode.ahead

  @property
  def vmaps_seeds(self) -> bool:
    """Whether seeds share one vmapped program
    (:func:`disco_eval.train.seed_group.how_seeds_run`)."""
    return self.seed_mode.vmapped

  def run_vmapped(self, states: TrainState, rule_params, start: int, count: int):
    """`run_chunk` of seeds stacked on a leading axis [S, ...], in one vmapped
    program. Returns the stacked new states and metrics [S, chunk]."""
    return self.run_chunk(states, rule_params, start, count, seeds_axis=True)

  def run_turns(self, states: list[TrainState], rule_params, start: int, count: int):
    """`run_chunk` of each seed's state in turn, through one program compiled
    once, so that a seed's results do not depend on which seeds ran beside
    it. Returns the new states and metrics [S, chunk]."""
    outs = [self.run_chunk(s, rule_params, start, count) for s in states]
    return [o[0] for o in outs], stack([o[1] for o in outs])

  # -- evaluation ------------------------------------------------------------

  def evaluate(self, params, rng: Array, episodes: int) -> tuple[Array, dict]:
    """Returns of the first `episodes` episodes of the sampling policy (the
    rule's evaluation policy, :func:`~disco_eval.rules.base.acting_logits`).

    Runs `episodes` environments in parallel until each has ended one
    episode (auto-reset environments; pure JAX, compiled once per number of
    episodes). Returns [episodes] and no extra figures ({}), as
    ``HostTrainer.evaluate``.
    """
    return self._evaluate(self.env.device_data(), params, rng, int(episodes))

  def _evaluate_episodes(self, params, rng: Array, episodes: int) -> tuple[Array, dict]:
    keys = jax.random.split(rng, episodes + 1)
    env_state, ts = jax.vmap(self.env.reset)(keys[1:])

    k = self.cfg.frame_stack

    def cond(c):
      return ~jnp.all(c[3])

    def body(c):
      env_state, ts, ret, done, key, window = c
      key, sub = jax.random.split(key)
      obs = ts.observation if k == 1 else frames.as_input(window, self.env.frame_axis)
      out = self.agent.apply(params, obs)
      logits = acting_logits(self.rule, out, 0.0, evaluation=True)
      action = jax.random.categorical(sub, logits).astype(jnp.int32)
      env_state, ts = jax.vmap(self.env.step)(env_state, action)
      ret = jnp.where(done, ret, ret + ts.reward)
      if k > 1:
        window = frames.push(window, ts.observation, ts.last)
      return env_state, ts, ret, done | ts.last, key, window

    init = (
      env_state,
      ts,
      jnp.zeros((episodes,), jnp.float32),
      jnp.zeros((episodes,), bool),
      keys[0],
      None if k == 1 else frames.reset_window(ts.observation, k),
    )
    return jax.lax.while_loop(cond, body, init)[2], {}
