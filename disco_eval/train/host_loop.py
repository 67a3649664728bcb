"""The training loop for host-stepped environment pools (EnvPool's ProcGen).

The same algorithm as :mod:`disco_eval.train.loop` (act, store, sample,
learn; the same replay buffer and the same ``Trainer.learner_step``), but the
environments live on the host, so an iteration is a Python loop:

1. the actor steps the pool `rollout_len` times; each step is one jitted call
   (policy logits -> categorical sample) and one EnvPool step;
2. the rows make one replay entry [T+1, E, ...] (observations kept uint8 in the
   buffer, to save memory);
3. one jitted call adds the entry and, once the buffer holds `min_buffer`
   entries, makes `updates_per_iteration` learner steps (two compiled
   variants: warm-up without learning, and with).

``HostTrainer`` has the interface of ``Trainer`` that ``disco_eval.experiment``
uses (``init``, ``run_chunk_group``, ``evaluate``, ``vmaps_seeds``, ``agent``),
so sweeps record, checkpoint and summarise host-stepped runs as pure-JAX ones.

Checkpoints hold the device state only (:class:`HostState`: params, optimiser
and rule state, replay buffer, rng, seed). The environments are not saved: a
resumed run starts fresh episodes (new pools, zero running returns, a new
actor key derived from the state), so host-stepped runs are NOT resumed
bit-for-bit, unlike pure-JAX ones.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from disco_eval.agents.networks import Agent
from disco_eval.rules.base import Rollout, UpdateRule
from disco_eval.train import replay
from disco_eval.train.loop import IterationMetrics, TrainConfig, Trainer

Array = jax.Array


class HostState(NamedTuple):
  """The device part of a host-stepped run (what checkpoints hold)."""
  params: Any
  opt_state: Any
  rule_state: Any
  buffer: replay.ReplayState
  rng: Array
  seed: Array          # [] int32: which run this is (keys its host pool)


class _Actor:
  """Host side of one seed: its pool, current step and running returns."""

  def __init__(self, pool, key: Array):
    self.pool = pool
    self.obs = pool.reset()
    self.reward = np.zeros((pool.num_envs,), np.float32)
    self.last = np.zeros((pool.num_envs,), bool)
    self.episode_return = np.zeros((pool.num_envs,), np.float32)
    self.key = key


class HostTrainer:
  """Trains on a host-stepped task (e.g. ``envs.procgen.ProcgenTask``).

  `task` makes pools: ``task.pool(mode, num_envs, seed, start_level,
  num_levels)``; the protocol gives the training levels (distribution_mode,
  start_level, num_levels) and the evaluation ones (eval_distribution_mode,
  eval_start_level, eval_num_levels).
  """

  def __init__(self, task: Any, agent: Agent, rule: UpdateRule,
               optimizer: optax.GradientTransformation, cfg: TrainConfig,
               protocol: Any):
    self.task, self.agent, self.rule, self.opt, self.cfg = task, agent, rule, optimizer, cfg
    self.protocol = protocol
    # The learner step of the pure-JAX trainer, composed (it needs no env).
    self._core = Trainer(None, agent, rule, optimizer, cfg)
    self._actors: dict[int, _Actor] = {}
    self._policy = jax.jit(self._policy_step)
    self._warm = jax.jit(self._add_only, donate_argnums=(0,))
    self._learn = jax.jit(self._add_and_learn, donate_argnums=(0,))

  vmaps_seeds = False

  # -- state -----------------------------------------------------------------

  def init(self, seed: int) -> HostState:
    rng = jax.random.PRNGKey(seed)
    rng, k_net, k_rule = jax.random.split(rng, 3)
    params = self.agent.init(k_net)
    state = HostState(
        params=params, opt_state=self.opt.init(params),
        rule_state=self.rule.init_state(k_rule, jax.tree.map(jnp.copy, params)),
        buffer=replay.init(self._empty_entry(), self.cfg.buffer_capacity),
        rng=rng, seed=jnp.asarray(seed, jnp.int32))
    return jax.tree.map(jnp.copy, state)

  def _empty_entry(self) -> Rollout:
    t, e, a = self.cfg.rollout_len, self.cfg.num_envs, self.task.num_actions
    return Rollout(
        observations=jnp.zeros((t, e) + tuple(self.task.observation_shape), jnp.uint8),
        actions=jnp.zeros((t, e), jnp.int32),
        rewards=jnp.zeros((t, e), jnp.float32),
        discounts=jnp.zeros((t, e), jnp.float32),
        behaviour_logits=jnp.zeros((t, e, a), jnp.float32))

  def _setting(self, key: str, default: Any) -> Any:
    value = self.protocol.get(key) if self.protocol is not None else None
    return default if value is None else value

  def _actor(self, state: HostState) -> _Actor:
    seed = int(state.seed)
    if seed not in self._actors:
      pool = self.task.pool(str(self._setting("distribution_mode", "hard")),
                            self.cfg.num_envs, seed,
                            int(self._setting("start_level", 0)),
                            int(self._setting("num_levels", 0)))
      self._actors[seed] = _Actor(pool, jax.random.fold_in(state.rng, 1))
    return self._actors[seed]

  # -- jitted pieces ---------------------------------------------------------

  def _policy_step(self, params, obs, key):
    key, sub = jax.random.split(key)
    logits = self.agent.apply(params, obs)["logits"]
    action = jax.random.categorical(sub, logits).astype(jnp.int32)
    return action, logits, key

  def _entry(self, obs, actions, rewards, discounts, logits) -> Rollout:
    return Rollout(obs, jnp.stack(actions), rewards, discounts, jnp.stack(logits))

  def _add_only(self, s: HostState, obs, actions, rewards, discounts, logits):
    buffer = replay.add(s.buffer, self._entry(obs, actions, rewards, discounts, logits))
    return s._replace(buffer=buffer), jnp.zeros((), jnp.float32)

  def _add_and_learn(self, s: HostState, obs, actions, rewards, discounts, logits,
                     rule_params):
    cfg = self.cfg
    buffer = replay.add(s.buffer, self._entry(obs, actions, rewards, discounts, logits))
    rng, k_learn = jax.random.split(s.rng)

    def one(carry, key):
      params, opt_state, rule_state = carry
      k_sample, k_step = jax.random.split(key)
      batch = replay.sample(buffer, k_sample, cfg.sample_entries)
      params, opt_state, rule_state, loss, _ = self._core.learner_step(
          params, opt_state, rule_state, rule_params, batch, k_step)
      return (params, opt_state, rule_state), loss

    # Unrolled, not lax.scan: XLA's CPU backend runs convolutions inside a
    # loop body far slower (2.1 s instead of 0.22 s for the test config).
    carry, losses = (s.params, s.opt_state, s.rule_state), []
    for key in jax.random.split(k_learn, cfg.updates_per_iteration):
      carry, loss = one(carry, key)
      losses.append(loss)
    params, opt_state, rule_state = carry
    return (HostState(params, opt_state, rule_state, buffer, rng, s.seed),
            jnp.mean(jnp.stack(losses)))

  # -- iterations ------------------------------------------------------------

  def iteration(self, s: HostState, rule_params, it: int) -> tuple[HostState, tuple]:
    """One iteration; returns the new state and (return_sum, episodes, learned, loss)."""
    cfg, actor = self.cfg, self._actor(s)
    obs, actions, logits = [], [], []
    rewards = np.zeros((cfg.rollout_len, cfg.num_envs), np.float32)
    discounts = np.zeros((cfg.rollout_len, cfg.num_envs), np.float32)
    ret_sum, n_eps = 0.0, 0
    for t in range(cfg.rollout_len):
      action, lg, actor.key = self._policy(s.params, actor.obs, actor.key)
      obs.append(actor.obs)
      actions.append(action)
      logits.append(lg)
      rewards[t] = actor.reward
      discounts[t] = 1.0 - actor.last
      ended = actor.last
      ret_sum += float(np.sum(np.where(ended, actor.episode_return + actor.reward, 0.0)))
      n_eps += int(np.sum(ended))
      actor.episode_return = np.where(ended, 0.0, actor.episode_return + actor.reward
                                      ).astype(np.float32)
      actor.obs, actor.reward, actor.last, _ = actor.pool.step(np.asarray(action))
    obs = np.stack(obs)
    if it >= cfg.min_buffer - 1:   # the buffer holds min_buffer entries after this add
      s, loss = self._learn(s, obs, actions, rewards, discounts, logits, rule_params)
      learned = cfg.updates_per_iteration
    else:
      s, loss = self._warm(s, obs, actions, rewards, discounts, logits)
      learned = 0
    return s, (ret_sum, n_eps, learned, float(loss))

  def run_chunk_group(self, states: HostState, rule_params, start: int, count: int):
    """Iterations [start, start + count) of seeds stacked on a leading axis.

    Returns the stacked new states and numpy metrics [S, chunk] (rows past
    `count` inactive), as ``Trainer.run_chunk_group``.
    """
    n = jax.tree.leaves(states)[0].shape[0]
    k = self.cfg.chunk
    m = IterationMetrics(np.zeros((n, k), bool), np.zeros((n, k), np.float32),
                         np.zeros((n, k), np.int32), np.zeros((n, k), np.int32),
                         np.zeros((n, k), np.float32))
    outs = []
    for i in range(n):
      s = jax.tree.map(lambda x: x[i], states)
      for j in range(count):
        s, (ret, eps, learned, loss) = self.iteration(s, rule_params, start + j)
        m.active[i, j], m.return_sum[i, j], m.episodes[i, j] = True, ret, eps
        m.learned[i, j], m.loss[i, j] = learned, loss
      outs.append(s)
    del states
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs), m

  # -- evaluation ------------------------------------------------------------

  def evaluate(self, params, rng: Array, episodes: int,
               max_steps: int = 100_000) -> np.ndarray:
    """Returns [episodes] of the first episode of each of `episodes` fresh
    environments on the protocol's evaluation levels (sampling policy)."""
    seed = int(jax.random.randint(rng, (), 0, 2**31 - 1))
    pool = self.task.pool(
        str(self._setting("eval_distribution_mode", self._setting("distribution_mode", "hard"))),
        episodes, seed, int(self._setting("eval_start_level", 0)),
        int(self._setting("eval_num_levels", 0)))
    obs = pool.reset()
    key = jax.random.fold_in(rng, 1)
    returns = np.zeros((episodes,), np.float32)
    done = np.zeros((episodes,), bool)
    for _ in range(max_steps):
      action, _, key = self._policy(params, obs, key)
      obs, reward, last, _ = pool.step(np.asarray(action))
      returns += np.where(done, 0.0, reward).astype(np.float32)
      done |= last
      if done.all():
        break
    pool.close()
    return returns

  def close(self) -> None:
    for actor in self._actors.values():
      actor.pool.close()
    self._actors.clear()
