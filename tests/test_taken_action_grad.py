"""The action model differentiated at the taken actions only (train/learner.py)
gives the learner step of differentiating every action's outputs."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.agents.networks import Agent
from disco_eval.config import manifests, resolve, suites
from disco_eval.envs.catch import Catch
from disco_eval.rules import disco, weights
from disco_eval.train import replay
from disco_eval.train.learner import Learner
from disco_eval.train.loop import TrainConfig, Trainer
from disco_eval.train.optim import make_optimizer

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "rules" / "disco_103.npz"
AGENT = {
  "torso": "mlp",
  "torso_hidden": [32],
  "model_lstm_size": 16,
  "model_head_hidden": [16],
  "head_init_std": 0.01,
}
# Stated tolerance: parameter updates (new - old), Adam moments, loss.
RTOL, ATOL = 1e-5, 1e-6


def _parts():
  if not WEIGHTS.is_file():
    pytest.skip(f"{WEIGHTS} is missing")
  settings = resolve.rule_settings(
    manifests.load_rule_manifest("disco103"), suites.load_suite("catch")
  )
  rule = disco.from_settings(settings)
  env = Catch()
  agent = Agent(AGENT, rule.output_spec(env.num_actions), env.num_actions, env.observation_shape)
  return env, rule, agent, make_optimizer(settings["optimizer"]), weights.load_params(WEIGHTS)


def test_action_model_at_taken_actions_equals_the_selected_outputs():
  _, rule, agent, _, _ = _parts()
  params = agent.init(jax.random.PRNGKey(0))
  obs = jax.random.uniform(jax.random.PRNGKey(1), (5, 4, 8, 8))
  actions = jax.random.randint(jax.random.PRNGKey(2), (5, 4), 0, 3)
  full = agent.apply(params, obs)
  flat, emb = agent.body(params, obs)
  taken = agent.model(params, emb, actions)
  for key in ("logits", "y"):
    np.testing.assert_array_equal(flat[key], full[key])
  for key in ("z", "aux_pi", "q"):
    assert taken[key].shape == full[key].shape[:2] + full[key].shape[3:]
    want = disco.taken_outputs(full, actions)[key]
    np.testing.assert_allclose(taken[key], want, rtol=1e-5, atol=1e-6)


def test_taken_action_step_equals_the_all_action_step_on_a_real_batch():
  """One learner step on a batch of real Catch trajectories (from a trained
  state: warm Adam moments, a target network that differs), both ways."""
  env, rule, agent, opt, rule_params = _parts()
  cfg = TrainConfig(min_buffer=2, sample_entries=4, chunk=6, buffer_capacity=8)
  trainer = Trainer(env, agent, rule, opt, cfg)
  assert trainer.learner.taken_action_grad
  state, _ = trainer.run_chunk(trainer.init(0), rule_params, 0, 6)
  batch = replay.sample(state.buffer, jax.random.PRNGKey(3), cfg.sample_entries)
  assert float(jnp.min(batch.discounts)) == 0.0  # episode ends inside the batch
  all_actions = Learner(agent, rule, opt, dataclasses.replace(cfg), taken_action_grad=False)
  assert not all_actions.taken_action_grad
  args = (state.params, state.opt_state, state.rule_state, rule_params, batch, jax.random.key(1))
  new = jax.jit(trainer.learner.step)(*args)
  ref = jax.jit(all_actions.step)(*args)
  np.testing.assert_allclose(new[3], ref[3], rtol=RTOL, atol=ATOL)
  old = jax.tree.leaves(state.params)
  for p, a, b in zip(old, jax.tree.leaves(new[0]), jax.tree.leaves(ref[0])):
    np.testing.assert_allclose(a - p, b - p, rtol=RTOL, atol=ATOL)
  assert max(float(jnp.max(jnp.abs(a - p))) for p, a in zip(old, jax.tree.leaves(new[0]))) > 0
  for a, b in zip(jax.tree.leaves(new[1:3]), jax.tree.leaves(ref[1:3])):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
