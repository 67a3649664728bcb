"""The update-rule contract (disco_eval/rules/base.py), checked for every rule.

The rules are those of the manifests in ``rules/`` (one TOML per rule), so a
new rule is checked here as soon as its manifest exists: output spec ->
agent (a tiny MLP on Catch-sized observations) -> rule state -> targets ->
per-step loss, with shapes, finite values and a finite gradient of the loss
with respect to the agent parameters. Learned rules need their weights in
the shared folder (``shared/rules/<filename>``); without them they skip.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.agents.networks import Agent
from disco_eval.config import manifests
from disco_eval.config.resolve import rule_settings
from disco_eval.config.suites import load_suite
from disco_eval.rules import weights
from disco_eval.rules.base import OutputSpec, Rollout, acting_logits
from disco_eval.rules.registry import build_rule

RULES = [m.name for m in manifests.list_rule_manifests()]
# Catch-sized: 8x8 boards, 3 actions; a tiny torso keeps the test fast.
OBS_SHAPE, NUM_ACTIONS, T, B = (8, 8), 3, 5, 4
TINY_AGENT = {
  "torso": "mlp",
  "torso_hidden": [16],
  "model_lstm_size": 8,
  "model_head_hidden": [8],
  "head_init_std": 0.01,
}


def make_rule(name: str, shared_dir: Path):
  """(manifest, rule object, rule params or None) of rule `name` with its
  Catch settings; learned rules read their weights from the shared folder."""
  manifest = manifests.load_rule_manifest(name)
  rule = build_rule(manifest.kind, rule_settings(manifest, load_suite("catch")), manifest.name)
  if not manifest.learned:
    return manifest, rule, None
  path = shared_dir / "rules" / manifest.filename
  if not path.is_file():
    pytest.skip(f"weights of rule '{name}' ({path}) are missing")
  # (A manifest with a filename also names its architecture and sha256.)
  params = weights.load_params(path, manifest.architecture, expected_sha256=manifest.sha256)
  return manifest, rule, params


def random_rollout(seed: int = 0) -> Rollout:
  """A Catch-shaped batch of T+1 steps of B trajectories with episode ends."""
  rng = np.random.default_rng(seed)
  discounts = (rng.random((T + 1, B)) > 0.25).astype(np.float32)
  return Rollout(
    observations=jnp.asarray(rng.random((T + 1, B) + OBS_SHAPE) < 0.1, jnp.float32),
    actions=jnp.asarray(rng.integers(0, NUM_ACTIONS, (T + 1, B)), jnp.int32),
    rewards=jnp.asarray(rng.choice([0.0, 1.0, -1.0], (T + 1, B)), jnp.float32),
    discounts=jnp.asarray(discounts),
    behaviour_logits=jnp.asarray(rng.normal(size=(T + 1, B, NUM_ACTIONS)), jnp.float32),
  )


def assert_finite_tree(tree, what: str) -> None:
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    leaf = np.asarray(leaf)
    if np.issubdtype(leaf.dtype, np.inexact):
      assert np.all(np.isfinite(leaf)), f"{what}{jax.tree_util.keystr(path)} is not finite"


def assert_same_layout(a, b, what: str) -> None:
  """`a` and `b` have one tree structure and per-leaf shapes and dtypes (a
  state that goes in must come out alike, to be carried through a scan)."""
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b), what
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.shape(x) == np.shape(y) and jnp.result_type(x) == jnp.result_type(y), what


@pytest.fixture(params=RULES)
def rule_parts(request, shared_dir):
  """(name, rule, rule params, agent, agent params, rule state, batch)."""
  manifest, rule, rule_params = make_rule(request.param, shared_dir)
  spec = rule.output_spec(NUM_ACTIONS)
  agent = Agent(TINY_AGENT, spec, NUM_ACTIONS, OBS_SHAPE)
  params = agent.init(jax.random.PRNGKey(0))
  state = rule.init_state(jax.random.PRNGKey(1), params)
  return manifest.name, rule, rule_params, agent, params, state, random_rollout()


def test_every_rule_manifest_builds_a_rule():
  assert "disco103" in RULES and "actor_critic" in RULES  # the list is not empty by accident
  for name in RULES:
    manifest = manifests.load_rule_manifest(name)
    rule = build_rule(manifest.kind, rule_settings(manifest, load_suite("catch")), manifest.name)
    assert rule.name == name
    assert int(rule.num_epochs) >= 1 and int(rule.num_minibatches) >= 1


def test_output_spec_shapes_the_agent_outputs(rule_parts):
  name, rule, _, agent, params, _, batch = rule_parts
  spec = rule.output_spec(NUM_ACTIONS)
  assert isinstance(spec, OutputSpec)
  assert not set(spec.flat) & set(spec.model), name
  out = agent.apply(params, batch.observations)
  assert set(out) == set(spec.flat) | set(spec.model), name
  for key, shape in spec.flat.items():
    assert out[key].shape == (T + 1, B) + tuple(shape), (name, key)
  for key, shape in spec.model.items():
    assert out[key].shape == (T + 1, B, NUM_ACTIONS) + tuple(shape), (name, key)
  assert_finite_tree(out, f"{name} agent_out")
  # What actors sample from: the "logits" output, or the rule's behaviour hook.
  for evaluation in (False, True):
    logits = acting_logits(rule, out, 100.0, evaluation)
    assert logits.shape == (T + 1, B, NUM_ACTIONS), (name, evaluation)
    assert_finite_tree(logits, f"{name} acting logits")


def _targets_and_loss(rule, rule_params, agent, params, state, batch):
  """What a learner step computes: targets outside the gradient, then the
  masked mean of the per-step loss and its gradient w.r.t. the agent params."""
  out = agent.apply(params, batch.observations)
  targets, new_state, logs = rule.targets(
    rule_params, state, batch, jax.lax.stop_gradient(out), params, agent.apply
  )

  def mean_loss(p):
    per_step, loss_logs = rule.loss(agent.apply(p, batch.observations), targets, batch)
    mask = batch.loss_mask
    return jnp.sum(per_step * mask) / (jnp.sum(mask) + 1e-8), (per_step, loss_logs)

  (loss, (per_step, loss_logs)), grads = jax.value_and_grad(mean_loss, has_aux=True)(params)
  return targets, new_state, logs, loss, per_step, loss_logs, grads


def test_targets_and_loss_are_finite_with_a_finite_gradient(rule_parts):
  name, rule, rule_params, agent, params, state, batch = rule_parts
  step = jax.jit(lambda p, s, b: _targets_and_loss(rule, rule_params, agent, p, s, b))
  targets, new_state, logs, loss, per_step, loss_logs, grads = step(params, state, batch)
  assert per_step.shape == (T, B), name
  assert_finite_tree(targets, f"{name} targets")
  assert_finite_tree(per_step, f"{name} per-step loss")
  assert np.isfinite(float(loss)), name
  assert_same_layout(new_state, state, f"{name}: the new rule state differs in layout")
  assert_finite_tree(new_state, f"{name} new rule state")
  for key, value in {**logs, **loss_logs}.items():
    assert np.shape(value) == () and np.isfinite(float(value)), (name, key)
  assert_same_layout(grads, params, f"{name}: gradient and params differ in layout")
  assert_finite_tree(grads, f"{name} gradient")
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) > 0, name


def test_rule_state_carries_over_steps(rule_parts):
  """Two learner steps in a row: the state the first returns feeds the second."""
  name, rule, rule_params, agent, params, state, batch = rule_parts
  step = jax.jit(lambda s, b: _targets_and_loss(rule, rule_params, agent, params, s, b))
  _, state, *_ = step(state, batch)
  _, again, _, loss, *_ = step(state, random_rollout(1))
  assert_same_layout(again, state, name)
  assert np.isfinite(float(loss)), name
