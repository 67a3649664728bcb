"""The learner, once for every trainer: one learner step and the N updates of
an iteration.

A *learner step* takes a batch of trajectories [T+1, B, ...] from the replay
buffer, computes the rule's targets outside the gradient and moves the agent
towards them with the optimiser: one pass over the whole batch, or the rule's
``num_epochs`` x ``num_minibatches`` passes (PPO-style), or one pass with the
agent run on ``learner_microbatches`` slices of the batch.

An *iteration's updates*: once the buffer holds ``min_buffer`` entries,
``updates_per_iteration`` learner steps, each on ``sample_entries`` entries
sampled afresh. The pure-JAX trainer (:mod:`disco_eval.train.loop`) runs them
in a ``lax.scan``; the host trainer (:mod:`disco_eval.train.host_loop`)
unrolls them (XLA's CPU backend runs convolutions inside a loop body far
slower: 2.1 s instead of 0.22 s for the test config).

With ``devices = N > 1`` the agent runs on each device's share of the batch
(:mod:`disco_eval.train.devices`).

*Taken-action gradient*: when the agent has an action model (outputs per
state and action, [T+1, B, A, ...]) and the rule's loss reads it only at the
taken actions (the rule's optional ``loss_taken``), a one-pass learner step
runs the action model for every action without gradient (the rule's targets
read them all) and differentiates it at the taken actions only, on B rows
instead of B*A: the same loss and gradient, without the dense zero
cotangents [T+1, B, A, 600] of differentiating every action's outputs.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from disco_eval.agents.networks import Agent
from disco_eval.errors import UserError
from disco_eval.rules.base import Rollout, UpdateRule
from disco_eval.train import devices, frames, replay

Array = jax.Array


def masked_loss(
  rule: UpdateRule, agent_out: Any, targets: Any, batch: Rollout, taken: bool = False
) -> tuple[Array, dict]:
  """The rule's per-step loss [T+1, B] averaged over the batch's loss mask;
  returns ([] loss, the rule's logs). With `taken`, `agent_out`'s action-model
  outputs are at the taken actions only (the rule's ``loss_taken``)."""
  per_step, logs = (rule.loss_taken if taken else rule.loss)(agent_out, targets, batch)
  mask = batch.loss_mask
  if jnp.shape(per_step) != jnp.shape(mask):  # static: checked once, while compiling
    raise UserError(
      f"rule {rule.name}: loss returned shape {list(jnp.shape(per_step))} "
      f"but the contract is one loss per step, [T, B] = {list(jnp.shape(mask))} "
      "(disco_eval/rules/base.py); return the per-step loss, not a mean or a sum"
    )
  return jnp.sum(per_step * mask) / (jnp.sum(mask) + 1e-8), logs


def trajectory_order(rng: Array, b: int, epochs: int, minibatches: int) -> Array:
  """[epochs * minibatches, b // minibatches] trajectory indices: each epoch
  a fresh permutation of the `b` trajectories, cut into minibatches."""
  mb = b // minibatches
  perms = jax.vmap(lambda k: jax.random.permutation(k, b))(jax.random.split(rng, epochs))
  return perms[:, : mb * minibatches].reshape(epochs * minibatches, mb)


def transition_order(rng: Array, t: int, b: int, epochs: int, minibatches: int) -> Array:
  """[epochs * minibatches, t, b // minibatches] flat indices ``step * b +
  trajectory`` into the t x b transitions of a batch: each epoch a fresh
  permutation of all transitions, cut into minibatches of t * (b //
  minibatches) transitions, each laid out as [t, b // minibatches] so that a
  minibatch has the shape of a trajectory minibatch. With `minibatches`
  dividing `b` every transition is in exactly one minibatch per epoch.

  As OpenAI baselines' ppo2 (openai/baselines ppo2/ppo2.py, the
  non-recurrent branch: ``np.random.shuffle(inds)`` over the nbatch
  transitions each epoch) and purejaxrl (luchris429/purejaxrl ppo.py:
  the batch flattened to transitions, then ``jax.random.permutation``).
  """
  mb = b // minibatches
  n = t * b
  perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(rng, epochs))
  return perms[:, : t * mb * minibatches].reshape(epochs * minibatches, t, mb)


def take_transitions(tree: Any, idx: Array, b: int) -> Any:
  """The transitions `idx` [t, m] (flat ``step * b + trajectory``) of every
  array in `tree`: [t, b, ...] arrays (targets) become [t, m, ...]; [t+1, b,
  ...] arrays (a Rollout) become [t+1, m, ...], row t of each transition
  from the transition's own step and a last row repeating row t-1 (a
  transition's next-step row: the loss of a rule that minibatches
  transitions reads only rows [:-1]; ``loss_mask`` reads ``discounts[:-1]``).
  Valid for agents without memory across steps (each step's outputs depend
  on that step's observation only)."""
  steps, cols = idx // b, idx % b
  t = idx.shape[0]

  def take(x):
    g = x[:t][steps, cols]
    return g if x.shape[0] == t else jnp.concatenate([g, g[-1:]], axis=0)

  return jax.tree.map(take, tree)


def is_learning(it: Any, min_buffer: int) -> Any:
  """Whether iteration `it` (int, or a traced [] int32) learns: the buffer
  holds `min_buffer` entries once the iteration's entry is added."""
  return it >= min_buffer - 1


class Learner:
  """The learner of one (agent, rule, optimiser, TrainConfig) setup.

  Attributes:
    mesh: the devices' mesh, or None on one device.
    unroll: the agent on learner batches [T+1, B, ...] (each device its
      share of B on a mesh).
  """

  def __init__(
    self,
    agent: Agent,
    rule: UpdateRule,
    optimizer: optax.GradientTransformation,
    cfg: Any,
    taken_action_grad: bool = True,
    frame_axis: int = -1,
  ):
    """`taken_action_grad`: differentiate the action model at the taken
    actions only where the rule allows it (module docstring); False keeps
    the gradient through every action's outputs (same result; for
    comparisons: tests, ``bench --cost``). `frame_axis`: the task's axis
    that frame stacking concatenates along (``EnvSpec.frame_axis``)."""
    self.agent, self.rule, self.opt, self.cfg = agent, rule, optimizer, cfg
    self.frame_axis = frame_axis
    self.mesh = devices.make_mesh(cfg.devices)  # None on one device
    self.unroll: Callable[[Any, Array], dict] = agent.apply
    self.body: Callable[[Any, Array], tuple] = agent.body
    self.taken_action_grad = bool(
      taken_action_grad and agent.has_model and rule.loss_taken is not None
    )
    if self.mesh is not None:
      devices.check_divisible(cfg.num_envs, cfg.devices)
      devices.check_unroll_sizes(self.unroll_sizes(), cfg.devices)
      self.unroll = devices.split_unroll(agent.apply, self.mesh)
      self.body = devices.split_unroll(agent.body, self.mesh)

  def unroll_sizes(self) -> dict[str, int]:
    """Trajectories the learner runs the agent on in one piece, when fewer
    than the batch (whose size num_envs already makes a multiple of the
    devices), by the setting that makes the number."""
    cfg, rule = self.cfg, self.rule
    b = cfg.sample_entries * cfg.num_envs
    sizes = {}
    if rule.num_epochs * rule.num_minibatches > 1:
      sizes["rule.num_minibatches"] = b // rule.num_minibatches
    elif cfg.learner_microbatches > 1:
      sizes["train.learner_microbatches"] = b // cfg.learner_microbatches
    return sizes

  def split_batch(self, batch: Rollout) -> Rollout:
    """Inside jit: the learner batch [T+1, B, ...] split along B."""
    return batch if self.mesh is None else devices.constrain(batch, self.mesh, 1)

  def _loss(self, agent_out, targets, batch):
    return masked_loss(self.rule, agent_out, targets, batch)

  def _apply(self, grads, opt_state, params):
    updates, opt_state = self.opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  # -- one learner step ------------------------------------------------------

  def step(self, params, opt_state, rule_state, rule_params, batch: Rollout, rng: Array):
    """One update: rule targets outside the gradient, then the agent loss.

    Returns (params, opt_state, rule_state, [] loss, logs). With one epoch
    of one minibatch the agent is unrolled once and its outputs' cotangent
    is pulled back through the network (``jax.vjp``); otherwise each
    minibatch is unrolled again with the current parameters.
    """
    rule = self.rule
    passes = rule.num_epochs * rule.num_minibatches
    k = self.cfg.learner_microbatches
    if passes == 1 and k > 1:
      return self._sliced_step(params, opt_state, rule_state, rule_params, batch, k)
    if passes == 1 and self.taken_action_grad:
      return self._taken_step(params, opt_state, rule_state, rule_params, batch)
    if passes == 1:
      return self._whole_step(params, opt_state, rule_state, rule_params, batch)
    return self._epochs_step(params, opt_state, rule_state, rule_params, batch, rng)

  def _whole_step(self, params, opt_state, rule_state, rule_params, batch: Rollout):
    """One pass over the whole batch: one unroll, its pullback."""
    unroll = self.unroll
    agent_out, pullback = jax.vjp(lambda p: unroll(p, batch.observations), params)
    targets, rule_state, tlogs = self.rule.targets(
      rule_params, rule_state, batch, jax.lax.stop_gradient(agent_out), params, unroll
    )
    (loss, logs), g_out = jax.value_and_grad(self._loss, has_aux=True)(agent_out, targets, batch)
    (grads,) = pullback(g_out)
    params, opt_state = self._apply(grads, opt_state, params)
    return params, opt_state, rule_state, loss, {**tlogs, **logs}

  def _taken_step(self, params, opt_state, rule_state, rule_params, batch: Rollout):
    """``_whole_step`` with the action model differentiated at the taken
    actions only: the torso and flat heads once with their pullback; the
    action model for every action without gradient (for the targets); the
    loss's gradient through the action model at the taken actions (B rows),
    its embedding cotangent pulled back through the torso."""
    agent = self.agent
    (flat, emb), pullback = jax.vjp(lambda p: self.body(p, batch.observations), params)
    agent_out = {**flat, **agent.model(params, emb)}
    targets, rule_state, tlogs = self.rule.targets(
      rule_params, rule_state, batch, jax.lax.stop_gradient(agent_out), params, self.unroll
    )

    def loss_fn(flat, emb, p):
      taken = agent.model(p, emb, batch.actions)  # [T+1, B, *spec]
      return masked_loss(self.rule, {**flat, **taken}, targets, batch, taken=True)

    (loss, logs), (g_flat, g_emb, g_model) = jax.value_and_grad(
      loss_fn, argnums=(0, 1, 2), has_aux=True
    )(flat, emb, params)
    (grads,) = pullback((g_flat, g_emb))
    grads = jax.tree.map(jnp.add, grads, g_model)
    params, opt_state = self._apply(grads, opt_state, params)
    return params, opt_state, rule_state, loss, {**tlogs, **logs}

  def _epochs_step(self, params, opt_state, rule_state, rule_params, batch: Rollout, rng: Array):
    """``num_epochs`` x ``num_minibatches`` passes on targets computed once;
    each epoch a fresh permutation of the B trajectories, or of the T x B
    transitions when the rule says ``minibatch_transitions``
    (:func:`transition_order`)."""
    unroll, rule = self.unroll, self.rule
    agent_out = unroll(params, batch.observations)
    targets, rule_state, tlogs = rule.targets(
      rule_params, rule_state, batch, jax.lax.stop_gradient(agent_out), params, unroll
    )
    t, b = batch.actions.shape[0] - 1, batch.actions.shape[1]
    if rule.minibatch_transitions:
      order = transition_order(rng, t, b, rule.num_epochs, rule.num_minibatches)
      take_batch = lambda idx: take_transitions(batch, idx, b)
      take_targets = lambda idx: take_transitions(targets, idx, b)
    else:
      order = trajectory_order(rng, b, rule.num_epochs, rule.num_minibatches)
      take_batch = lambda idx: jax.tree.map(lambda x: jnp.take(x, idx, axis=1), batch)
      take_targets = lambda idx: jax.tree.map(lambda x: jnp.take(x, idx, axis=1), targets)

    def one(carry, idx):
      params, opt_state = carry
      mb_batch, mb_targets = take_batch(idx), take_targets(idx)

      def loss_fn(p):
        return self._loss(unroll(p, mb_batch.observations), mb_targets, mb_batch)

      (loss, logs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = self.opt.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), (loss, logs)

    (params, opt_state), (losses, logs) = jax.lax.scan(one, (params, opt_state), order)
    return (
      params,
      opt_state,
      rule_state,
      jnp.mean(losses),
      {**tlogs, **jax.tree.map(jnp.mean, logs)},
    )

  def _sliced_step(self, params, opt_state, rule_state, rule_params, batch: Rollout, k: int):
    """``step`` with the agent run on `k` slices of the batch's
    trajectories, one after another: outputs by slice (no gradient; the
    rule's own unrolls too), targets and the loss's cotangent on the whole
    batch, then each slice's pullback, summed. Slices are Python-unrolled
    (XLA's CPU backend runs convolutions in a loop body far slower) and
    chained with optimisation barriers, so that XLA cannot run them side by
    side. Measured on XLA's CPU backend the saving is small (ProcGen, 64
    trajectories: 8.3 GB in one piece, 7.6 GB in 4 slices)."""
    unroll = self.unroll
    b = batch.actions.shape[1]
    if b % k:
      raise ValueError(f"learner_microbatches={k} must divide the batch's {b} trajectories")
    size = b // k

    def piece(x, i):
      return jax.lax.slice_in_dim(x, i * size, (i + 1) * size, axis=1)

    def sliced_unroll(p, observations):
      outs, prev = [], None
      for i in range(k):
        o = piece(observations, i)
        if prev is not None:
          o, _ = jax.lax.optimization_barrier((o, prev))
        outs.append(unroll(p, o))
        prev = outs[-1]
      return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *outs)

    agent_out = sliced_unroll(params, batch.observations)
    targets, rule_state, tlogs = self.rule.targets(
      rule_params, rule_state, batch, jax.lax.stop_gradient(agent_out), params, sliced_unroll
    )
    (loss, logs), g_out = jax.value_and_grad(self._loss, has_aux=True)(agent_out, targets, batch)
    grads = jax.tree.map(jnp.zeros_like, params)
    for i in range(k):
      o, g = piece(batch.observations, i), jax.tree.map(lambda x, i=i: piece(x, i), g_out)
      o, g, grads = jax.lax.optimization_barrier((o, g, grads))
      _, pullback = jax.vjp(lambda p, o=o: unroll(p, o), params)
      (part,) = pullback(g)
      grads = jax.tree.map(jnp.add, grads, part)
    params, opt_state = self._apply(grads, opt_state, params)
    return params, opt_state, rule_state, loss, {**tlogs, **logs}

  # -- an iteration's updates ------------------------------------------------

  def sample(self, buffer: replay.ReplayState, key: Array) -> Rollout:
    """A learner batch [T+1, sample_entries * E, ...] of `buffer`'s entries,
    each step's observation its stack of frames (train.frames)."""
    entry = replay.sample(buffer, key, self.cfg.sample_entries)
    if self.cfg.frame_stack > 1:
      entry = frames.stack_batch(entry, self.cfg.frame_stack, self.frame_axis)
    return entry

  def update_once(self, carry, rule_params, buffer: replay.ReplayState, key: Array):
    """One learner update on a fresh sample of `buffer`: (params, opt_state,
    rule_state) as `carry`; returns the new carry and the loss."""
    params, opt_state, rule_state = carry
    k_sample, k_step = jax.random.split(key)
    batch = self.split_batch(self.sample(buffer, k_sample))
    params, opt_state, rule_state, loss, _ = self.step(
      params, opt_state, rule_state, rule_params, batch, k_step
    )
    return (params, opt_state, rule_state), loss

  def updates(
    self, carry: tuple, rule_params, buffer: replay.ReplayState, key: Array, unrolled: bool = False
  ) -> tuple[tuple, Array]:
    """``updates_per_iteration`` learner steps, each on a fresh sample of
    ``sample_entries`` entries of `buffer`; `carry` is (params, opt_state,
    rule_state). In a ``lax.scan``, or Python-unrolled with `unrolled`.
    Returns the new carry and the steps' mean loss []."""
    keys = jax.random.split(key, self.cfg.updates_per_iteration)
    if not unrolled:
      carry, losses = jax.lax.scan(
        lambda c, k: self.update_once(c, rule_params, buffer, k), carry, keys
      )
      return carry, jnp.mean(losses)
    losses = []
    for k in keys:
      carry, loss = self.update_once(carry, rule_params, buffer, k)
      losses.append(loss)
    return carry, jnp.mean(jnp.stack(losses))
