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

``HostTrainer`` has the interface of ``Trainer`` that ``disco_eval.runs``
uses (``task``, ``agent``, ``init``, ``run_chunk_group``, ``evaluate``,
``vmaps_seeds``, ``stacks_seeds``, ``close``: ``train.trainers.RunTrainer``),
so sweeps record, checkpoint and summarise host-stepped runs as pure-JAX ones.

An overlapped actor (two groups of environments, one stepping while the other's
actions are computed, behind a ``DISCO_EVAL_OVERLAP`` environment variable)
was removed: it measured no gain (docs/benchmarks.md), and it was an
environment switch that run records did not record. Actor/learner
concurrency is to be designed with the GPU work.

The loop does not wait for a learner step's outputs until they are needed
(its loss is read at the end of a chunk), but the next iteration's first
policy call needs the new parameters, and a device runs one computation
after another (XLA's CPU client does: measured; a GPU with one compute stream
too), so the learner step overlaps no actor work.

Checkpoints hold the device state only (:class:`HostState`: params, optimiser
and rule state, replay buffer, rng, seed). The environments are not saved: a
resumed run starts fresh episodes (new pools, zero running returns, a new
actor key derived from the state), so host-stepped runs are NOT resumed
bit-for-bit, unlike pure-JAX ones.
"""

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from disco_eval.agents.networks import Agent
from disco_eval.envs.base import HostPool, HostTask
from disco_eval.rules.base import Rollout, UpdateRule, acting_logits
from disco_eval.train import devices, replay
from disco_eval.train.learner import Learner, is_learning
from disco_eval.train.loop import IterationMetrics, TrainConfig

Array = jax.Array


class HostState(NamedTuple):
  """The device part of a host-stepped run (what checkpoints hold)."""

  params: Any
  opt_state: Any
  rule_state: Any
  buffer: replay.ReplayState
  rng: Array
  seed: Array  # [] int32: which run this is (keys its host pool)


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
    self.learner = Learner(agent, rule, optimizer, cfg)
    self.mesh = self.learner.mesh  # None on one device
    self._actors: dict[int, _Actor] = {}
    self._policy = jax.jit(self._policy_step, static_argnames=("evaluation",))
    self._warm = jax.jit(self._add_only, donate_argnums=(0,))
    self._learn = jax.jit(self._add_and_learn, donate_argnums=(0,))

  vmaps_seeds = False
  # Seeds' states are passed as a list, not stacked (see run_chunk_group).
  stacks_seeds = False

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

  def _empty_entry(self) -> Rollout:
    t, e, a = self.cfg.rollout_len, self.cfg.num_envs, self.task.num_actions
    dtype = self.task.observation_dtype
    return Rollout(
      observations=jnp.zeros((t, e) + tuple(self.task.observation_shape), dtype),
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
      rep(s.params), rep(s.opt_state), rep(s.rule_state), buffer, rep(s.rng), rep(s.seed)
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
      self._actors[seed] = _Actor(pool, jax.random.fold_in(state.rng, 1))
    return self._actors[seed]

  # -- jitted pieces ---------------------------------------------------------

  def _policy_step(self, params, obs, key, env_steps=0.0, evaluation=False):
    key, sub = jax.random.split(key)
    logits = acting_logits(self.rule, self.agent.apply(params, obs), env_steps, evaluation)
    action = jax.random.categorical(sub, logits).astype(jnp.int32)
    return action, logits, key

  def _entry(self, obs, actions, rewards, discounts, logits) -> Rollout:
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
    new = HostState(params, opt_state, rule_state, buffer, rng, s.seed)
    return self.lay_out(new, devices.constrain), loss

  # -- iterations ------------------------------------------------------------

  def iteration(
    self, s: HostState, rule_params, it: int, seed: int | None = None
  ) -> tuple[HostState, tuple]:
    """One iteration; returns the new state and (return_sum, episodes,
    learned, loss, extra) where extra sums the task's episode columns and
    loss is a device scalar (not waited for). `seed`: ``int(s.seed)``, when
    the caller knows it (reading it would wait for the previous learner step).
    """
    cfg, actor = self.cfg, self._actor(s, seed)
    clock = self.timer or _NoTimer()
    clock.lap("host")
    s = self.lay_out(s)
    env_steps = float(it * cfg.num_envs * cfg.rollout_len)
    obs, actions, logits, rewards, lasts, extra = self._rollout(s.params, actor, clock, env_steps)
    discounts = (1.0 - lasts).astype(np.float32)
    ret_sum, n_eps, actor.episode_return = episode_returns(rewards, lasts, actor.episode_return)
    obs = self._to_device(obs, 1)
    rewards, discounts = self._to_device(rewards, 1), self._to_device(discounts, 1)
    clock.lap("host")
    if is_learning(it, cfg.min_buffer):
      s, loss = self._learn(s, obs, actions, rewards, discounts, logits, rule_params)
      learned = cfg.updates_per_iteration
    else:
      s, loss = self._warm(s, obs, actions, rewards, discounts, logits)
      learned = 0
    if self.timer is not None:
      jax.block_until_ready(s)
      clock.lap("learner")
    return s, (ret_sum, n_eps, learned, loss, extra)

  def _rollout(self, params, actor: _Actor, clock, env_steps: float = 0.0) -> tuple:
    """`rollout_len` synchronous steps of the whole pool: one policy call,
    then one pool step. Returns obs [T, E, ...], actions (T device arrays
    [E]), logits (T device arrays [E, A]), rewards [T, E], lasts [T, E] and
    the episode columns' sums."""
    cfg = self.cfg
    extra = dict.fromkeys(self.episode_columns, 0.0)
    obs, actions, logits = [], [], []
    rewards = np.zeros((cfg.rollout_len, cfg.num_envs), np.float32)
    lasts = np.zeros((cfg.rollout_len, cfg.num_envs), bool)
    for t in range(cfg.rollout_len):
      obs_t = self._to_device(actor.obs, 0)
      action, lg, actor.key = self._policy(params, obs_t, actor.key, env_steps)
      host_action = np.asarray(action)
      clock.lap("policy")
      obs.append(actor.obs)
      actions.append(action)
      logits.append(lg)
      rewards[t] = actor.reward
      lasts[t] = actor.last
      clock.lap("host")
      actor.obs, actor.reward, actor.last, _ = actor.pool.step(host_action)
      clock.lap("env")
      _add_episode_infos(extra, actor.pool)
    obs = np.stack(obs)
    clock.lap("host")
    return obs, actions, logits, rewards, lasts, extra

  def run_chunk_group(self, states: list[HostState], rule_params, start: int, count: int):
    """Iterations [start, start + count) of a list of seeds' states.

    Returns the list of new states (the old ones are donated) and numpy
    metrics [S, chunk] (rows past `count` inactive), as
    ``Trainer.run_chunk_group`` does for stacked states.
    """
    n = len(states)
    k = self.cfg.chunk
    m = IterationMetrics(
      np.zeros((n, k), bool),
      np.zeros((n, k), np.float32),
      np.zeros((n, k), np.int32),
      np.zeros((n, k), np.int32),
      np.zeros((n, k), np.float32),
      {c: np.zeros((n, k), np.float64) for c in self.episode_columns},
    )
    outs, losses = [], {}
    for i in range(n):
      s, seed = states[i], int(states[i].seed)
      for j in range(count):
        s, (ret, eps, learned, loss, extra) = self.iteration(s, rule_params, start + j, seed)
        m.active[i, j], m.return_sum[i, j], m.episodes[i, j] = True, ret, eps
        m.learned[i, j], losses[i, j] = learned, loss
        for c, v in extra.items():
          m.extra[c][i, j] = v
      outs.append(s)
    for (i, j), loss in losses.items():  # read once the chunk is dispatched
      m.loss[i, j] = float(loss)
    return outs, m

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

    def act(obs):
      nonlocal key
      action, _, key = self._policy(params, obs, key, evaluation=True)
      return np.asarray(action)

    try:
      return play_episodes(pool, act, int(episodes), cap, max_steps)
    finally:
      pool.close()

  def close(self) -> None:
    for actor in self._actors.values():
      actor.pool.close()
    self._actors.clear()


def episode_returns(
  rewards: np.ndarray, lasts: np.ndarray, running: np.ndarray
) -> tuple[float, int, np.ndarray]:
  """Returns of the episodes that end in a rollout.

  rewards [T, E] float32 (each arrived with its row), lasts [T, E] bool (the
  row ended an episode), running [E] float32: the returns so far of the
  episodes under way before row 0. Returns (sum of the ended episodes'
  returns, their number, the running returns after row T-1).
  """
  total, count = 0.0, 0
  for reward, last in zip(rewards, lasts):
    total += float(np.sum(np.where(last, running + reward, 0.0)))
    count += int(np.sum(last))
    running = np.where(last, 0.0, running + reward).astype(np.float32)
  return total, count, running


def _add_episode_infos(extra: dict, pool: HostPool) -> None:
  """Adds the pool's latest episode summaries to the sums `extra` {column: sum}."""
  for _, info in pool.episode_infos:
    for key in extra:
      extra[key] += float(info[key])


def play_episodes(
  pool: HostPool, act: Any, episodes: int, cap: int | None = None, max_steps: int = 10_000_000
) -> tuple[np.ndarray, dict]:
  """Plays `episodes` episodes on an auto-resetting `pool` of E environments.

  ``act(obs [E, ...]) -> actions [E]``. Environment i plays episodes i,
  i + E, i + 2E, ... (quotas fixed in advance, so short episodes are not
  favoured); an episode is cut after `cap` steps when given (the pool must
  support ``force_reset``; its return so far is kept and counted in
  ``eval_truncated``). Returns the returns [episodes] (round by round:
  first episodes of every environment, then second ones, ...) and
  ``{"eval_truncated": n}``.
  """
  n_envs = pool.num_envs
  quota = np.array([len(range(i, episodes, n_envs)) for i in range(n_envs)])
  obs = pool.reset()
  results: list[list[float]] = [[] for _ in range(n_envs)]
  running = np.zeros((n_envs,), np.float64)
  length = np.zeros((n_envs,), np.int64)
  fresh = np.zeros((n_envs,), bool)  # the next step is a reset step
  truncated = 0
  for _ in range(max_steps):
    if all(len(r) >= q for r, q in zip(results, quota)):
      break
    obs, reward, last, _ = pool.step(act(obs))
    counted = ~fresh
    running += np.where(counted, reward, 0.0)
    length += counted
    cut = np.zeros((n_envs,), bool) if cap is None else (~last & (length >= cap))
    ended = (last | cut) & counted
    for i in np.flatnonzero(ended):
      if len(results[i]) < quota[i]:
        results[i].append(float(running[i]))
        truncated += int(cut[i])
    if cut.any():
      pool.force_reset(cut)
    running[ended] = 0.0
    length[ended] = 0
    fresh = ended
  else:
    raise RuntimeError(f"evaluation did not finish {episodes} episodes in {max_steps} steps")
  returns = np.array(
    [rs[i] for i in range(int(quota.max())) for rs in results if i < len(rs)], np.float32
  )
  return returns, {"eval_truncated": truncated}
