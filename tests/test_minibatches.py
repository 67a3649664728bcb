"""PPO and DPO minibatches: random transitions, advantages normalised per minibatch."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.config import manifests
from disco_eval.rules import dpo, ppo
from disco_eval.rules.base import Rollout
from disco_eval.train import learner


def test_transition_minibatches_partition_the_transitions_once_per_epoch():
  t, b, epochs, minibatches = 5, 8, 3, 4
  order = np.asarray(learner.transition_order(jax.random.key(0), t, b, epochs, minibatches))
  assert order.shape == (epochs * minibatches, t, b // minibatches)
  for e in range(epochs):
    epoch = order[e * minibatches : (e + 1) * minibatches]
    np.testing.assert_array_equal(np.sort(epoch.ravel()), np.arange(t * b))
  # Transitions, not whole trajectories: some minibatch mixes steps of one
  # trajectory with others' (a trajectory minibatch holds every step of its
  # trajectories).
  cols = order % b
  assert any(len(set(cols[i].ravel())) > b // minibatches for i in range(len(order)))


def test_take_transitions_gathers_each_transition_from_its_own_step():
  t, b = 4, 6
  step_col = (np.arange(t + 1)[:, None] * b + np.arange(b)[None, :]).astype(np.float32)
  batch = Rollout(
    observations=jnp.asarray(step_col)[..., None],
    actions=jnp.asarray(step_col, jnp.int32),
    rewards=jnp.asarray(step_col),
    discounts=jnp.asarray(step_col),
    behaviour_logits=jnp.stack([jnp.asarray(step_col)] * 3, -1),
  )
  targets = ppo.PPOTargets(*(jnp.asarray(step_col[:t]),) * 4)
  idx = learner.transition_order(jax.random.key(1), t, b, 1, 2)[0]  # [t, 3]
  got_batch = learner.take_transitions(batch, idx, b)
  got_targets = learner.take_transitions(targets, idx, b)
  flat = np.asarray(idx, np.float32)
  assert got_batch.actions.shape == (t + 1, 3)
  np.testing.assert_array_equal(got_batch.observations[:-1, :, 0], flat)
  np.testing.assert_array_equal(got_batch.discounts[:-1], flat)  # loss_mask's rows
  np.testing.assert_array_equal(got_batch.behaviour_logits[:-1, :, 2], flat)
  np.testing.assert_array_equal(got_targets.advantage, flat)
  np.testing.assert_array_equal(got_targets.returns, flat)


def _rule(module, name, **changes):
  rule = module.from_settings(manifests.load_rule_manifest(name).settings())
  return dataclasses.replace(rule, cfg=dataclasses.replace(rule.cfg, **changes))


@pytest.mark.parametrize("module,name", [(ppo, "ppo"), (dpo, "dpo")])
def test_advantages_are_normalised_over_the_minibatch_the_loss_sees(module, name):
  rule = _rule(module, name, entropy_cost=0.0, value_cost=0.0)
  assert rule.minibatch_transitions and rule.cfg.normalize_adv
  t, b, a = 6, 2, 3
  adv = jnp.asarray(np.random.default_rng(0).normal(3.0, 5.0, size=(t, b)), jnp.float32)
  discounts = jnp.ones((t + 1, b)).at[2, 1].set(0.0)  # one masked step
  batch = Rollout(
    jnp.zeros((t + 1, b, 1)),
    jnp.zeros((t + 1, b), jnp.int32),
    jnp.zeros((t + 1, b)),
    discounts,
    jnp.zeros((t + 1, b, a)),
  )
  targets = ppo.PPOTargets(
    adv, jnp.zeros((t, b)), jnp.zeros((t, b)), jnp.full((t, b), -jnp.log(3.0))
  )
  out = {"logits": jnp.zeros((t + 1, b, a)), "v": jnp.zeros((t + 1, b, 1))}
  loss, _ = rule.loss(out, targets, batch)  # ratio 1, no drift: loss = -normalised A
  mask = np.asarray(batch.loss_mask, bool)
  valid = np.asarray(adv)[mask]
  want = -(valid - valid.mean()) / (valid.std() + 1e-8)
  np.testing.assert_allclose(np.asarray(loss)[mask], want, rtol=1e-4, atol=1e-5)
  # The same minibatch with advantages shifted and scaled: the same loss.
  shifted = targets._replace(advantage=adv * 7.0 - 2.0)
  loss2, _ = rule.loss(out, shifted, batch)
  np.testing.assert_allclose(np.asarray(loss2)[mask], np.asarray(loss)[mask], rtol=1e-4, atol=1e-4)


def test_ppo_targets_leave_the_advantages_unnormalised():
  rule = _rule(ppo, "ppo", discount_factor=1.0, gae_lambda=1.0)
  t, b, a = 3, 1, 2
  batch = Rollout(
    jnp.zeros((t + 1, b, 1)),
    jnp.zeros((t + 1, b), jnp.int32),
    jnp.asarray([[0.0], [1.0], [2.0], [3.0]]),
    jnp.ones((t + 1, b)),
    jnp.zeros((t + 1, b, a)),
  )
  out = {"logits": jnp.zeros((t + 1, b, a)), "v": jnp.zeros((t + 1, b, 1))}
  targets, _, _ = rule.targets(None, (), batch, out, None, None)
  np.testing.assert_allclose(targets.advantage[:, 0], [6.0, 5.0, 3.0])
