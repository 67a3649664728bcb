"""The training loop for host-stepped environment pools (EnvPool's ProcGen,
Crafter and NetHack in worker processes: ``disco_eval.envs.workers``).

The same algorithm as :mod:`disco_eval.train.loop` (act, store, sample,
learn; the same replay buffer and the same learner,
:class:`~disco_eval.train.learner.Learner`), but the environments live on
the host, so an iteration is a Python loop:

1. the actor steps the pool `rollout_len` times; each step is one jitted call
   (policy logits -> categorical sample) and one synchronous pool step;
2. the rows make one replay entry [T+1, E, ...] (observations kept in the
   task's ``observation_dtype``, uint8 or int16, to save memory);
3. one jitted call adds the entry and, once the buffer holds `min_buffer`
   entries, makes `updates_per_iteration` learner steps (two compiled
   variants: warm-up without learning, and with).

With ``devices = N > 1`` (:mod:`disco_eval.train.devices`) the observations
the actor and the learner receive, the replay buffer and the learner batch are
split along the environment axis over N local devices; parameters are
replicated. Each pool still steps all `num_envs` environments on the host.

Tasks (:class:`disco_eval.envs.base.HostTask`) may name ``episode_columns``:
per-episode figures their pools report on the step that ends an episode
(``pool.episode_infos``); each iteration's metrics carry their sums over the
episodes that ended in it (e.g. Crafter's achievements), so that protocols
scored on training episodes read them from metrics.csv.

``HostTrainer`` has the trainers' interface that ``disco_eval.runs`` uses
(``train.trainers.RunTrainer``), so sweeps record, checkpoint and summarise host-stepped runs as pure-JAX ones.

Policy lag (``train.policy_lag``, recorded, in the label when 1;
docs/host_suites.md). With 0 (the default) an iteration acts with the newest
parameters, then learns: acting and learning alternate. With 1 the actor
collects iteration k with the parameters of iteration k-2 (those it has while
the learner updates on iteration k-1's entry): the learning of iteration
k-1 is dispatched right after the first policy call of iteration k, and the
actor never waits for the learner's parameters. A device runs its
computations in order, so on one device the policy calls that follow still
queue behind the learner: what overlaps it is the host's work until then
(one pool step). The entry records the logits of the policy that acted
(``behaviour_logits``), so rules with off-policy corrections apply them.
Chunks end fully learned (nothing pending), so checkpoints hold both
parameter sets (``HostState.behaviour_params``) and a lag-1 run resumes from
the state it stopped at (with fresh episodes, as below).

The seeds of a group take turns here, chunk by chunk;
:class:`disco_eval.train.host_batched.BatchedHostTrainer` trains them in one
pool with one vmapped program (when :mod:`disco_eval.train.seed_group` says so).

Checkpoints hold the device state only (:class:`HostState`: params, optimiser
and rule state, replay buffer, rng, seed). The environments are not saved: a
resumed run starts fresh episodes (new pools, zero running returns, a new
actor key derived from the state), so host-stepped runs are NOT resumed
bit-for-bit, unlike pure-JAX ones.
"""

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from disco_eval.agents.networks import Agent
from disco_eval.envs.base import HostPool, HostTask
from disco_eval.rules.base import Rollout, UpdateRule, acting_logits
from disco_eval.train import devices, frames, replay
from disco_eval.train.host_episodes import (
  add_episode_infos,
  episode_returns,
  new_metrics,
  play_episodes,
  read_losses,
)
from disco_eval.train.learner import Learner, is_learning
from disco_eval.train.loop import TrainConfig

Array = jax.Array


class HostState(NamedTuple):
  """The device part of a host-stepped run (what checkpoints hold)."""

  params: Any
  opt_state: Any
  rule_state: Any
  buffer: replay.ReplayState
  rng: Array
  seed: Array  # [] int32: which run this is (keys its host pool)
  # With policy_lag = 1: the parameters the next iteration acts with (one
  # iteration older than params); None with policy_lag = 0.
  behaviour_params: Any = None


# Seed axes of a rollout's arrays when seeds are vmapped (obs [T, S, E, ...],
# actions [S, E] x T, rewards [T, S, E], discounts [T, S, E], logits
# [S, E, A] x T): the arguments of the jitted add-and-learn pieces.
_ENTRY_AXES = (1, 0, 1, 1, 0)


class _Pending(NamedTuple):
  """An iteration's entry whose learning is not dispatched yet (policy lag 1)."""

  it: int
  entry: tuple  # (obs, actions, rewards, discounts, logits) as the jitted calls take them


class _Actor:
  """Host side of one seed: its pool, current step and running returns.

  ``obs``, ``reward`` and ``last`` [E] hold each environment's latest step.
  """

  def __init__(self, pool: HostPool, key: Array):
    self.pool = pool
    self.obs = pool.reset()
    self.reward = np.zeros((pool.num_envs,), np.float32)
    self.last = np.zeros((pool.num_envs,), bool)
    self.episode_return = np.zeros((pool.num_envs,), np.float32)
    self.key = key
    # With frame stacking: the last K frames (``obs`` is then their stack).
    self.frames: frames.HostWindow | None = None

  def new_extra(self, columns) -> dict:
    """Zero sums of the episode columns, for one rollout."""
    return dict.fromkeys(columns, 0.0)

  def add_infos(self, extra: dict) -> None:
    """Adds the pool's latest episode summaries to the sums `extra` {column: sum}."""
    add_episode_infos(extra, self.pool)

  def returns(self, rewards: np.ndarray, lasts: np.ndarray) -> tuple[float, int]:
    """(sum, number) of the returns of the episodes that end in the rows
    rewards, lasts [T, E]; updates the running returns."""
    total, count, self.episode_return = episode_returns(rewards, lasts, self.episode_return)
    return total, count


class PhaseTimer:
  """Wall seconds of the host loop by phase (``HostTrainer.timer``, for the
  bench): env (stepping), policy (inference, or waiting for it), host (bookkeeping, copies) and learner (add + learn,
  waited for)."""

  PHASES = ("env", "policy", "host", "learner")

  def __init__(self):
    self.totals = dict.fromkeys(self.PHASES, 0.0)
    self._last = time.perf_counter()

  def lap(self, phase: str) -> None:
    """Charges the time since the previous lap to `phase`."""
    now = time.perf_counter()
    self.totals[phase] += now - self._last
    self._last = now


class _NoTimer:
  def lap(self, phase: str) -> None:
    pass


class HostTrainer:
  """Trains on a host-stepped task (:class:`disco_eval.envs.base.HostTask`,
  e.g. ``envs.procgen.ProcgenTask``).

  `task` makes pools: ``task.pool(num_envs, seed, protocol, evaluation)``
  (the task reads its training and evaluation levels from the protocol);
  observations are kept in the replay buffer in its ``observation_dtype``.
  """

  def __init__(
    self,
    task: HostTask,
    agent: Agent,
    rule: UpdateRule,
    optimizer: optax.GradientTransformation,
    cfg: TrainConfig,
    protocol: Any,
  ):
    self.task, self.agent, self.rule, self.opt, self.cfg = task, agent, rule, optimizer, cfg
    self.protocol = protocol
    self.timer: PhaseTimer | None = None  # set by the bench to time the phases
    self.learner = Learner(agent, rule, optimizer, cfg, frame_axis=task.frame_axis)
    self.mesh = self.learner.mesh  # None on one device
    self._actors: dict[int, _Actor] = {}
    self._policy = jax.jit(self._policy_step, static_argnames=("evaluation",))
    e = _ENTRY_AXES
    self._warm = self._compile(self._add_only, (0, *e), donate=0)
    self._learn = self._compile(self._add_and_learn, (0, *e, None), donate=0)
    # policy_lag = 1: the parameters are not donated (the actor still acts with them).
    self._warm_keep = self._compile(self._add_only_keep, (0, 0, *e), donate=1)
    self._learn_keep = self._compile(self._add_and_learn_keep, (0, 0, *e, None), donate=1)

  # Seeds take turns here (train.seed_group); BatchedHostTrainer vmaps them.
  vmaps_seeds = False
  dispatches_ahead = False  # the loop runs on the host

  def _compile(self, fn, seed_axes: tuple, donate: int):
    """`fn` jitted with argument `donate` donated; when the trainer vmaps
    seeds, mapped over the seeds' axes `seed_axes` (0: the leading axis,
    None: shared by every seed) first."""
    if self.vmaps_seeds:
      fn = jax.vmap(fn, in_axes=seed_axes)
    return jax.jit(fn, donate_argnums=(donate,))

  # -- state -----------------------------------------------------------------

  def init(self, seed: int) -> HostState:
    rng = jax.random.PRNGKey(seed)
    rng, k_net, k_rule = jax.random.split(rng, 3)
    params = self.agent.init(k_net)
    state = HostState(
      params=params,
      opt_state=self.opt.init(params),
      rule_state=self.rule.init_state(k_rule, jax.tree.map(jnp.copy, params)),
      buffer=replay.init(self._empty_entry(), self.cfg.buffer_capacity),
      rng=rng,
      seed=jnp.asarray(seed, jnp.int32),
      behaviour_params=params if self.cfg.policy_lag else None,
    )
    # Distinct buffers for donation; the (large, fresh) replay buffer as is.
    buffer = state.buffer
    return jax.tree.map(jnp.copy, state._replace(buffer=None))._replace(buffer=buffer)

  @property
  def episode_columns(self) -> tuple[str, ...]:
    return tuple(self.task.episode_columns)

  def learner_step(self, params, opt_state, rule_state, rule_params, batch: Rollout, rng: Array):
    """One update (:meth:`disco_eval.train.learner.Learner.step`)."""
    return self.learner.step(params, opt_state, rule_state, rule_params, batch, rng)

  def _empty_entry(self):
    t, e, a = self.cfg.rollout_len, self.cfg.num_envs, self.task.num_actions
    dtype, k = self.task.observation_dtype, self.cfg.frame_stack
    shape = tuple(self.task.observation_shape)
    if k > 1:
      history = jnp.zeros((k - 1, e) + shape, dtype)
      since = jnp.zeros((t, e), jnp.int32)
      return frames.StackedEntry(self._empty_rollout(t, e, a, shape, dtype), history, since)
    return self._empty_rollout(t, e, a, shape, dtype)

  def _empty_rollout(self, t, e, a, shape, dtype) -> Rollout:
    return Rollout(
      observations=jnp.zeros((t, e) + shape, dtype),
      actions=jnp.zeros((t, e), jnp.int32),
      rewards=jnp.zeros((t, e), jnp.float32),
      discounts=jnp.zeros((t, e), jnp.float32),
      behaviour_logits=jnp.zeros((t, e, a), jnp.float32),
    )

  def lay_out(self, s: HostState, how=devices.put) -> HostState:
    """`s` laid out over the mesh by ``how`` (``devices.put`` or, inside a
    jitted function, ``devices.constrain``): replay entries [capacity, T+1,
    E, ...] split along E, the rest replicated. Unchanged on one device."""
    m = self.mesh
    if m is None:
      return s
    rep = lambda x: how(x, m, None)
    buffer = replay.ReplayState(
      how(s.buffer.data, m, 2), rep(s.buffer.next_index), rep(s.buffer.size)
    )
    return HostState(
      rep(s.params),
      rep(s.opt_state),
      rep(s.rule_state),
      buffer,
      rep(s.rng),
      rep(s.seed),
      rep(s.behaviour_params),
    )

  def _to_device(self, x: np.ndarray, axis: int) -> Any:
    """A host array [..., E, ...] for a jitted call: split along its
    environment `axis` over the mesh, or as is on one device."""
    return x if self.mesh is None else devices.put(x, self.mesh, axis)

  def _setting(self, key: str, default: Any) -> Any:
    value = self.protocol.get(key) if self.protocol is not None else None
    return default if value is None else value

  def _actor(self, state: HostState, seed: int | None = None) -> _Actor:
    seed = int(state.seed) if seed is None else seed
    if seed not in self._actors:
      n = self.cfg.num_envs
      pool = self.task.pool(n, seed, self.protocol)
      self._actors[seed] = self._start_frames(_Actor(pool, jax.random.fold_in(state.rng, 1)))
    return self._actors[seed]

  def _start_frames(self, actor):
    """`actor` with frame stacking started on its first observations (its
    ``obs`` becomes the agent's input); as is without stacking."""
    if self.cfg.frame_stack > 1:
      actor.frames = frames.HostWindow(actor.obs, self.cfg.frame_stack, self.task.frame_axis)
      actor.obs = actor.frames.input()
    return actor

  # -- jitted pieces ---------------------------------------------------------

  def _policy_step(self, params, obs, key, env_steps=0.0, evaluation=False):
    key, sub = jax.random.split(key)
    logits = acting_logits(self.rule, self.agent.apply(params, obs), env_steps, evaluation)
    action = jax.random.categorical(sub, logits).astype(jnp.int32)
    return action, logits, key

  def _entry(self, obs, actions, rewards, discounts, logits):
    """A replay entry; `obs` is (frames, history, since_start) with frame
    stacking (:func:`_rollout`)."""
    if isinstance(obs, tuple):
      rollout = Rollout(obs[0], jnp.stack(actions), rewards, discounts, jnp.stack(logits))
      return frames.StackedEntry(rollout, obs[1], obs[2])
    return Rollout(obs, jnp.stack(actions), rewards, discounts, jnp.stack(logits))

  def _add_only(self, s: HostState, obs, actions, rewards, discounts, logits):
    buffer = replay.add(s.buffer, self._entry(obs, actions, rewards, discounts, logits))
    return self.lay_out(s._replace(buffer=buffer), devices.constrain), jnp.zeros((), jnp.float32)

  def _add_and_learn(self, s: HostState, obs, actions, rewards, discounts, logits, rule_params):
    buffer = replay.add(s.buffer, self._entry(obs, actions, rewards, discounts, logits))
    rng, k_learn = jax.random.split(s.rng)
    carry = (s.params, s.opt_state, s.rule_state)
    # Unrolled (Learner.updates): XLA's CPU backend runs convolutions inside a
    # loop body far slower.
    (params, opt_state, rule_state), loss = self.learner.updates(
      carry, rule_params, buffer, k_learn, unrolled=True
    )
    new = HostState(params, opt_state, rule_state, buffer, rng, s.seed, s.behaviour_params)
    return self.lay_out(new, devices.constrain), loss

  def _add_only_keep(self, params, rest: HostState, obs, actions, rewards, discounts, logits):
    """``_add_only`` of ``rest`` with `params` (not donated, not returned:
    they do not change). Returns the state without params, the loss."""
    s, loss = self._add_only(rest._replace(params=params), obs, actions, rewards, discounts, logits)
    return s._replace(params=None), loss

  def _add_and_learn_keep(
    self, params, rest: HostState, obs, actions, rewards, discounts, logits, rule_params
  ):
    """``_add_and_learn`` of ``rest`` with `params`, which are not donated."""
    s = rest._replace(params=params)
    return self._add_and_learn(s, obs, actions, rewards, discounts, logits, rule_params)

  # -- iterations ------------------------------------------------------------

  def iteration(
    self, s: HostState, rule_params, it: int, seed: int | None = None
  ) -> tuple[HostState, tuple]:
    """One iteration, learning included (with policy lag too); returns the
    new state and (return_sum, episodes, learned, loss, extra) where extra
    sums the task's episode columns and loss is a device scalar (not waited
    for). `seed`: ``int(s.seed)``, when the caller knows it (reading it would
    wait for the previous learner step).
    """
    actor, clock = self._actor(s, seed), self.timer or _NoTimer()
    clock.lap("host")
    s, pending, (ret_sum, n_eps, extra), done = self._advance(
      self.lay_out(s), None, rule_params, it, actor, clock
    )
    if pending is not None:
      s, done = self._flush(s, pending, rule_params, clock)
    _, learned, loss = done
    return s, (ret_sum, n_eps, learned, loss, extra)

  def _advance(self, s, pending: _Pending | None, rule_params, it: int, actor, clock) -> tuple:
    """Iteration `it`'s acting and the learning then due.

    Policy lag 0: acts with ``s.params``, then learns from the new entry.
    Lag 1: acts with the parameters before the `pending` entry's learning
    (``s.behaviour_params`` when none is pending), dispatches that learning
    after the first policy call, and leaves the new entry pending. Returns
    (state, pending entry or None, (return_sum, episodes, extra), the
    learning done as (iteration, learner steps, loss) or None).
    """
    lagged = self.cfg.policy_lag > 0
    acting = s.behaviour_params if lagged and pending is None else s.params
    # The pending learning, dispatched after the rollout's first policy call.
    flush = (
      None if pending is None else functools.partial(self._flush, s, pending, rule_params, clock)
    )
    env_steps = float(it * self.cfg.num_envs * self.cfg.rollout_len)
    (obs, actions, logits, rewards, lasts, extra), flushed = self._rollout(
      acting, actor, clock, flush, env_steps
    )
    s, done = flushed if flushed is not None else (s, None)
    discounts = (1.0 - lasts).astype(np.float32)
    ret_sum, n_eps = actor.returns(rewards, lasts)
    entry = self._entry_args(obs, actions, rewards, discounts, logits)
    clock.lap("host")
    new = _Pending(it, entry)
    if not lagged:
      s, done = self._flush(s, new, rule_params, clock)
      return s, None, (ret_sum, n_eps, extra), done
    return s, new, (ret_sum, n_eps, extra), done

  def _entry_args(self, obs, actions, rewards, discounts, logits) -> tuple:
    """A rollout's arrays as the jitted calls take them (split over the mesh)."""
    obs = jax.tree.map(lambda x: self._to_device(x, 1), obs)
    rewards, discounts = self._to_device(rewards, 1), self._to_device(discounts, 1)
    return obs, actions, rewards, discounts, logits

  def _flush(self, s, pending: _Pending, rule_params, clock) -> tuple:
    """Adds the `pending` entry and makes its iteration's learner steps.

    Returns the new state and (iteration, learner steps, loss). With policy
    lag the old parameters are not donated: they become the behaviour
    parameters of the next iteration (the actor may still be using them).
    """
    learning = is_learning(pending.it, self.cfg.min_buffer)
    if not self.cfg.policy_lag:
      if learning:
        s, loss = self._learn(s, *pending.entry, rule_params)
      else:
        s, loss = self._warm(s, *pending.entry)
    else:
      rest = s._replace(params=None, behaviour_params=None)
      if learning:
        new, loss = self._learn_keep(s.params, rest, *pending.entry, rule_params)
      else:
        new, loss = self._warm_keep(s.params, rest, *pending.entry)
        new = new._replace(params=s.params)
      s = new._replace(behaviour_params=s.params)
    if self.timer is not None:
      jax.block_until_ready(s)
      clock.lap("learner")
    return s, (pending.it, self.cfg.updates_per_iteration if learning else 0, loss)

  def _act(self, params, actor: _Actor, env_steps: float = 0.0) -> tuple:
    """The policy on the actor's latest observations: (actions [E], logits
    [E, A]), device arrays; updates the actor's key. `env_steps`: the run's
    env steps before this rollout (the rule's acting schedule reads it)."""
    obs = self._to_device(actor.obs, 0)
    action, logits, actor.key = self._policy(params, obs, actor.key, env_steps)
    return action, logits

  def _rollout(self, params, actor: _Actor, clock, after_first=None, env_steps=0.0) -> tuple:
    """`rollout_len` synchronous steps of the whole pool: one policy call,
    then one pool step; `after_first()` is called once the first policy
    call is dispatched (before it is waited for). Returns ((obs [T, E, ...],
    actions (T device arrays [E]), logits (T device arrays [E, A]), rewards
    [T, E], lasts [T, E], the episode columns' sums), what `after_first`
    returned or None). With frame stacking obs is (frames [T, E, ...],
    history [K-1, E, ...], since_start [T, E]) (:mod:`disco_eval.train.frames`)."""
    cfg, after, stacking = self.cfg, None, actor.frames
    history = None if stacking is None else stacking.history()
    since = []
    extra = actor.new_extra(self.episode_columns)
    obs, actions, logits = [], [], []
    rewards = np.zeros((cfg.rollout_len, actor.pool.num_envs), np.float32)
    lasts = np.zeros((cfg.rollout_len, actor.pool.num_envs), bool)
    for t in range(cfg.rollout_len):
      action, lg = self._act(params, actor, env_steps)
      if t == 0 and after_first is not None:
        after = after_first()
      host_action = np.asarray(action).reshape(-1)
      clock.lap("policy")
      obs.append(actor.obs if stacking is None else stacking.latest())
      if stacking is not None:
        since.append(stacking.since.copy())
      actions.append(action)
      logits.append(lg)
      rewards[t] = actor.reward
      lasts[t] = actor.last
      clock.lap("host")
      actor.obs, actor.reward, actor.last, _ = actor.pool.step(host_action)
      if stacking is not None:
        # The step after an episode's last is a reset step (envs/base.py).
        stacking.push(actor.obs, lasts[t])
        actor.obs = stacking.input()
      clock.lap("env")
      actor.add_infos(extra)
    obs = np.stack(obs) if stacking is None else (np.stack(obs), history, np.stack(since))
    clock.lap("host")
    return (obs, actions, logits, rewards, lasts, extra), after

  def run_turns(self, states: list[HostState], rule_params, start: int, count: int):
    """Iterations [start, start + count) of each seed's state, one seed after
    another (each with its own pool).

    Returns the list of new states (the old ones are donated) and numpy
    metrics [S, chunk] (rows past `count` inactive).
    """
    m, outs, losses = new_metrics(len(states), self.cfg.chunk, self.episode_columns), [], []
    for i, s in enumerate(states):
      actor = self._actor(s, int(s.seed))
      s, seed_losses = self.run_rows(s, actor, rule_params, start, count, m, slice(i, i + 1))
      outs.append(s)
      losses.append(seed_losses)
    read_losses(m, losses)
    return outs, m

  def run_vmapped(self, states, rule_params, start: int, count: int):
    raise NotImplementedError("seeds take turns here: run_turns (BatchedHostTrainer vmaps them)")

  def chunk_device_bytes(self, one, rule_params, seeds: int) -> None:
    """Not known for host-stepped loops (several programs per iteration)."""
    return None

  def run_rows(self, s, actor, rule_params, start: int, count: int, m, rows: slice) -> tuple:
    """Iterations [start, start + count) of the seeds of `s` (one, or stacked
    on a leading axis) into the `rows` of the metrics `m`; nothing is left
    pending. Returns the state and {column: device loss} (not waited for)."""
    clock = self.timer or _NoTimer()
    clock.lap("host")
    s, pending, losses = self.lay_out(s), None, {}

    def record(done) -> None:
      if done is not None:
        it, learned, loss = done
        m.learned[rows, it - start], losses[it - start] = learned, loss

    for j in range(count):
      s, pending, (ret, eps, extra), done = self._advance(
        s, pending, rule_params, start + j, actor, clock
      )
      m.active[rows, j], m.return_sum[rows, j], m.episodes[rows, j] = True, ret, eps
      for c, v in extra.items():
        m.extra[c][rows, j] = v
      record(done)
    if pending is not None:
      s, done = self._flush(s, pending, rule_params, clock)
      record(done)
    return s, losses

  # -- evaluation ------------------------------------------------------------

  def evaluate(
    self, params, rng: Array, episodes: int, max_steps: int = 10_000_000
  ) -> tuple[np.ndarray, dict]:
    """Plays `episodes` fresh episodes on the protocol's evaluation levels
    with the final (sampling) policy (the rule's evaluation policy:
    :func:`~disco_eval.rules.base.acting_logits`).

    Runs ``min(episodes, eval_envs)`` environments (protocol ``eval_envs``,
    default the training ``num_envs``); environment i plays episodes i,
    i + E, i + 2E, ... (quotas fixed in advance, so short episodes are not
    favoured). With the protocol's ``eval_max_steps`` an episode is cut after
    that many steps (its return so far is kept, and counted in
    ``eval_truncated``). Returns [episodes] returns and {"eval_truncated": n}.
    """
    n_envs = max(1, min(int(episodes), int(self._setting("eval_envs", self.cfg.num_envs))))
    cap = self._setting("eval_max_steps", None)
    cap = None if cap is None else int(cap)
    seed = int(jax.random.randint(rng, (), 0, 2**31 - 1))
    pool = self.task.pool(n_envs, seed, self.protocol, evaluation=True)
    if cap is not None and not pool.supports_force_reset:
      pool.close()
      raise ValueError(f"eval_max_steps is not supported by the {type(pool).__name__} backend")
    key = jax.random.fold_in(rng, 1)

    window = None

    def act(obs, first):
      nonlocal key, window
      if self.cfg.frame_stack > 1:
        if window is None:
          window = frames.HostWindow(obs, self.cfg.frame_stack, self.task.frame_axis)
        window.push(obs, first)
        obs = window.input()
      action, _, key = self._policy(params, obs, key, evaluation=True)
      return np.asarray(action)

    try:
      return play_episodes(pool, act, int(episodes), cap, max_steps, starts=True)
    finally:
      pool.close()

  def close(self) -> None:
    for actor in self._actors.values():
      actor.pool.close()
    self._actors.clear()
