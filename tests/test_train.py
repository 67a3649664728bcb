"""The training core: Catch, replay, optimiser, learner step, learning."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from disco_eval.agents.networks import Agent
from disco_eval.config import manifests
from disco_eval.config.resolve import rule_settings
from disco_eval.config.suites import load_suite
from disco_eval.envs.catch import Catch
from disco_eval.rules import actor_critic, disco, weights
from disco_eval.rules.base import Rollout
from disco_eval.runs import SweepSpec, run_sweep
from disco_eval.train import replay
from disco_eval.train.loop import TrainConfig, Trainer
from disco_eval.train.optim import make_optimizer, scale_by_adam_sg_denom

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "rules" / "disco_103.npz"
TINY_AGENT = {
  "torso": "mlp",
  "torso_hidden": [32],
  "model_lstm_size": 16,
  "model_head_hidden": [16],
  "head_init_std": 0.01,
}


def test_catch_dynamics():
  env = Catch()
  state, ts = env.reset(jax.random.PRNGKey(3))
  assert ts.observation.shape == (8, 8) and float(ts.observation.sum()) == 2.0
  assert int(state.paddle_x) == 4 and int(state.ball_y) == 0
  columns = set()
  for k in range(40):
    state, ts = env.reset(jax.random.PRNGKey(k))
    columns.add(int(state.ball_x))
    steps, last = 0, False
    while not last:  # follow the ball: always caught after 7 steps
      a = jnp.sign(state.ball_x - state.paddle_x) + 1
      state, ts = env.step(state, a)
      steps += 1
      last = bool(ts.last)
    assert steps == 7 and float(ts.reward) == 1.0
    # Auto-reset: the last step already shows the next episode's first board.
    assert int(state.ball_y) == 0 and int(state.paddle_x) == 4
  assert len(columns) == 8


def test_catch_miss_gives_minus_one():
  env = Catch()
  state, _ = env.reset(jax.random.PRNGKey(0))
  target = 0 if int(state.ball_x) > 3 else 7  # run away from the ball
  rewards = []
  for _ in range(7):
    state, ts = env.step(state, jnp.asarray(0 if target == 0 else 2))
    rewards.append(float(ts.reward))
  assert rewards == [0.0] * 6 + [-1.0]


def test_replay_is_fifo_and_samples_valid_entries():
  entry = {"x": jnp.zeros((3, 2))}
  state = replay.init(entry, capacity=4)
  for i in range(6):
    state = replay.add(state, {"x": jnp.full((3, 2), float(i))})
  assert int(state.size) == 4
  batch = replay.sample(state, jax.random.PRNGKey(0), 64)
  assert batch["x"].shape == (3, 128)
  assert set(np.unique(np.asarray(batch["x"]))) <= {2.0, 3.0, 4.0, 5.0}
  assert set(np.unique(np.asarray(batch["x"]))) == {2.0, 3.0, 4.0, 5.0}


def test_adam_sg_denominator_equals_adam_in_value():
  params = {"w": jnp.arange(5.0)}
  ours, ref = scale_by_adam_sg_denom(), optax.scale_by_adam()
  s1, s2 = ours.init(params), ref.init(params)
  for k in range(3):
    g = {"w": jnp.sin(jnp.arange(5.0) + k)}
    u1, s1 = ours.update(g, s1)
    u2, s2 = ref.update(g, s2)
    np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6)


def _disco_trainer(cfg=TrainConfig()):
  if not WEIGHTS.is_file():
    pytest.skip(f"{WEIGHTS} is missing")
  settings = rule_settings(manifests.load_rule_manifest("disco103"), load_suite("catch"))
  rule = disco.from_settings(settings)
  env = Catch()
  agent = Agent(TINY_AGENT, rule.output_spec(3), 3, env.observation_shape)
  return Trainer(env, agent, rule, make_optimizer(settings["optimizer"]), cfg), weights.load_params(
    WEIGHTS
  )


def _catch_batch(t1: int, b: int, episode_ends: bool = False) -> Rollout:
  """A random Catch-shaped batch [t1, b]; with `episode_ends`, random
  discounts of 0 and random behaviour logits."""
  rng = np.random.default_rng(0)
  obs = jnp.asarray(rng.random((t1, b, 8, 8)) < 0.1, jnp.float32)
  actions = jnp.asarray(rng.integers(0, 3, (t1, b)), jnp.int32)
  rewards = jnp.asarray(rng.choice([0.0, 1.0, -1.0], (t1, b)), jnp.float32)
  if not episode_ends:
    return Rollout(obs, actions, rewards, jnp.ones((t1, b)), jnp.zeros((t1, b, 3)))
  return Rollout(
    obs,
    actions,
    rewards,
    jnp.asarray(rng.random((t1, b)) > 0.2, jnp.float32),
    jnp.asarray(rng.normal(size=(t1, b, 3)), jnp.float32),
  )


def test_learner_step_updates_target_ema_and_clips_updates():
  trainer, rule_params = _disco_trainer()
  state = trainer.init(0)
  batch = _catch_batch(6, 4)
  # Make the target differ from the online parameters first.
  target = jax.tree.map(lambda x: x + 1.0, state.params)
  rule_state = state.rule_state._replace(target_params=target)
  params, _, new_rule_state, loss, _ = jax.jit(trainer.learner_step)(
    state.params, state.opt_state, rule_state, rule_params, batch, jax.random.PRNGKey(1)
  )
  want = jax.tree.map(lambda t, p: 0.9 * t + 0.1 * p, target, state.params)
  for a, b_ in zip(jax.tree.leaves(new_rule_state.target_params), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b_, rtol=1e-6)
  assert np.isfinite(float(loss))
  lr = 1e-2
  deltas = [
    float(jnp.max(jnp.abs(a - b_)))
    for a, b_ in zip(jax.tree.leaves(params), jax.tree.leaves(state.params))
  ]
  assert max(deltas) <= lr * (1 + 1e-5) and max(deltas) > 0
  assert int(new_rule_state.meta.adv_ema.decay_product * 1e6) == int(0.99 * 1e6)


def test_chunks_resume_bit_for_bit():
  """Running 2 chunks equals running 1, copying the state out and back, then 1."""
  cfg = TrainConfig(min_buffer=2, sample_entries=2, chunk=3, buffer_capacity=8)
  trainer, rule_params = _disco_trainer(cfg)
  a = trainer.init(5)
  a, _ = trainer.run_chunk(a, rule_params, 0, 3)
  a, _ = trainer.run_chunk(a, rule_params, 3, 3)
  b = trainer.init(5)
  b, _ = trainer.run_chunk(b, rule_params, 0, 3)
  b = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), b)  # host round trip
  b, _ = trainer.run_chunk(b, rule_params, 3, 3)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_disco103_learns_catch(tmp_path):
  """Small but real: a tiny agent trained by Disco103 beats random by far."""
  if not WEIGHTS.is_file():
    pytest.skip(f"{WEIGHTS} is missing")
  res = run_sweep(
    SweepSpec(
      suite="catch",
      rules=(str(WEIGHTS),),
      seeds=(0,),
      steps=6000,
      out=tmp_path,
      overrides=(
        ("train.min_buffer", "8"),
        ("train.sample_entries", "16"),
        ("train.updates_per_iteration", "8"),
        ("agent.torso_hidden", "[64, 64]"),
        ("agent.model_lstm_size", "32"),
        ("agent.model_head_hidden", "[32]"),
      ),
    )
  )
  (r,) = res
  assert r.status == "complete", r.error
  # A uniformly random policy scores about -0.7 on Catch 8x8.
  assert r.summary["score"] > 0.5, r.summary


def test_several_epochs_of_minibatches_through_the_same_interface():
  """A rule asking for 2 epochs x 2 minibatches (as PPO will) needs no trainer fork."""
  import dataclasses

  settings = rule_settings(manifests.load_rule_manifest("actor_critic"), load_suite("catch"))
  rule = dataclasses.replace(actor_critic.from_settings(settings), num_epochs=2, num_minibatches=2)
  env = Catch()
  agent = Agent(TINY_AGENT, rule.output_spec(3), 3, env.observation_shape)
  cfg = TrainConfig(min_buffer=2, sample_entries=2, chunk=4, buffer_capacity=8)
  trainer = Trainer(env, agent, rule, make_optimizer(settings["optimizer"]), cfg)
  state = trainer.init(0)
  before = jax.tree.map(np.asarray, state.params)
  state, metrics = trainer.run_chunk(state, None, 0, 4)
  assert int(np.sum(metrics.learned)) == 3
  assert np.all(np.isfinite(np.asarray(metrics.loss)))
  # Each learner step made 4 optimiser updates: the Adam step count says so.
  assert int(state.opt_state[0].count) == 12
  changed = [
    not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params))
  ]
  assert all(changed)


@pytest.mark.slow
def test_sliced_learner_step_equals_the_whole_batch_step():
  import dataclasses

  trainer, rule_params = _disco_trainer()
  sliced, _ = _disco_trainer(dataclasses.replace(TrainConfig(), learner_microbatches=4))
  state = trainer.init(0)
  batch = _catch_batch(6, 8, episode_ends=True)
  args = (
    state.params,
    state.opt_state,
    state.rule_state,
    rule_params,
    batch,
    jax.random.PRNGKey(1),
  )
  whole = jax.jit(trainer.learner_step)(*args)
  parts = jax.jit(sliced.learner_step)(*args)
  # Same update up to float rounding (Adam's first step divides by |g|).
  for a, b_ in zip(jax.tree.leaves(whole[:4]), jax.tree.leaves(parts[:4])):
    np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="must divide"):
    bad, _ = _disco_trainer(dataclasses.replace(TrainConfig(), learner_microbatches=3))
    bad.learner_step(*args)
