"""The learning-rate schedule and the decoupled weight decay of train/optim.py."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from disco_eval.config.train import OptimizerSettings, TrainConfig
from disco_eval.train.optim import learner_steps, learning_rate_schedule, make_optimizer

# ProcGen's row of Extended Data Table 6: 3e-4 -> 0, cosine, warm-up 1e6, horizon 2e8 env steps.
PROCGEN = {
  "learning_rate": 3e-4,
  "lr_schedule": "cosine",
  "lr_end": 0.0,
  "lr_warmup_env_steps": 1_000_000,
  "lr_horizon_env_steps": 200_000_000,
}


def test_env_steps_become_learner_steps():
  cfg = TrainConfig(num_envs=64, rollout_len=29, updates_per_iteration=1)
  assert cfg.env_steps_per_learner_step == 64 * 29
  assert learner_steps(1_000_000, cfg.env_steps_per_learner_step) == round(1e6 / 1856)
  assert learner_steps(0, 1856) == 0
  assert learner_steps(10, 1856) == 1  # a non-zero warm-up never rounds to nothing


def test_cosine_schedule_values():
  per = 1856.0
  sched = learning_rate_schedule(OptimizerSettings.from_table(PROCGEN), per)
  warm = learner_steps(1_000_000, per)
  end = learner_steps(200_000_000, per)
  assert float(sched(0)) == 0.0
  np.testing.assert_allclose(float(sched(warm // 2)), 3e-4 * (warm // 2) / warm, rtol=1e-5)
  np.testing.assert_allclose(float(sched(warm)), 3e-4, rtol=1e-6)
  mid = warm + (end - warm) // 2
  np.testing.assert_allclose(float(sched(mid)), 1.5e-4, rtol=1e-3)
  np.testing.assert_allclose(float(sched(end)), 0.0, atol=1e-12)
  np.testing.assert_allclose(float(sched(end + 1000)), 0.0, atol=1e-12)
  ref = optax.warmup_cosine_decay_schedule(0.0, 3e-4, warm, end, 0.0)
  for step in (0, 1, warm - 1, warm, warm + 7, mid, end - 1, end):
    np.testing.assert_allclose(float(sched(step)), float(ref(step)), rtol=1e-6, atol=1e-12)


def test_cosine_to_an_end_value_and_the_budget_as_horizon():
  table = {**PROCGEN, "lr_end": 1e-5, "lr_warmup_env_steps": 0, "lr_horizon_env_steps": 0}
  sched = learning_rate_schedule(OptimizerSettings.from_table(table), 10.0, budget_env_steps=1000)
  np.testing.assert_allclose(float(sched(0)), 3e-4, rtol=1e-6)
  np.testing.assert_allclose(float(sched(100)), 1e-5, rtol=1e-5)
  np.testing.assert_allclose(float(sched(50)), 1e-5 + (3e-4 - 1e-5) / 2, rtol=1e-4)


def test_constant_schedule():
  sched = learning_rate_schedule(OptimizerSettings.from_table({"learning_rate": 3e-4}))
  assert float(sched(0)) == pytest.approx(3e-4)
  assert float(sched(10**6)) == pytest.approx(3e-4)


def _run(opt, params, grads):
  state = opt.init(params)
  for g in grads:
    updates, state = opt.update(g, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_weight_decay_is_decoupled_as_adamw():
  key = jax.random.PRNGKey(0)
  params = {"w": jax.random.normal(key, (5, 3)), "b": jnp.ones(3)}
  grads = [
    jax.tree.map(lambda p, i=i: jax.random.normal(jax.random.PRNGKey(i + 1), p.shape), params)
    for i in range(5)
  ]
  table = {"learning_rate": 1e-2, "weight_decay": 0.1, "max_abs_update": 0.0}
  ours = _run(make_optimizer(table), params, grads)
  ref = _run(optax.adamw(1e-2, weight_decay=0.1, eps=1e-8), params, grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), ours, ref)
  # Decoupled: with zero gradients Adam's direction is 0 and only the decay moves the weights.
  zero = [jax.tree.map(jnp.zeros_like, params)]
  decayed = _run(make_optimizer(table), params, zero)
  jax.tree.map(
    lambda a, p: np.testing.assert_allclose(a, p * (1 - 1e-2 * 0.1), rtol=1e-6), decayed, params
  )


def test_cosine_with_decay_matches_adamw_with_the_same_schedule():
  params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
  grads = [{"w": jnp.full((2, 3), 0.1 * (i + 1))} for i in range(6)]
  table = {
    "learning_rate": 1e-2,
    "lr_schedule": "cosine",
    "lr_warmup_env_steps": 20,
    "lr_horizon_env_steps": 60,
    "weight_decay": 0.3,
    "max_abs_update": 0.0,
  }
  ours = _run(make_optimizer(table, env_steps_per_learner_step=10.0), params, grads)
  sched = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 6, 0.0)
  ref = _run(optax.adamw(sched, weight_decay=0.3, eps=1e-8), params, grads)
  np.testing.assert_allclose(ours["w"], ref["w"], rtol=1e-5, atol=1e-7)


def test_constant_without_decay_keeps_the_old_state_structure():
  params = {"w": jnp.ones(3)}
  state = make_optimizer({"learning_rate": 3e-4}).init(params)
  old = optax.chain(optax.scale_by_adam(), optax.clip(1.0), optax.scale(-3e-4)).init(params)
  assert jax.tree.structure(state) == jax.tree.structure(old)


def test_records_made_before_the_schedule_still_match_and_keep_their_fingerprint():
  from disco_eval.config import fingerprint
  from disco_eval.config.manifests import LATER_OPTIMIZER_DEFAULTS
  from disco_eval.store import config_match

  old_opt = {"learning_rate": 1e-2, "max_abs_update": 1.0, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
  old = {"suite": "catch", "settings": {"optimizer": old_opt}, "train": {"num_envs": 2}}
  new = {**old, "settings": {"optimizer": {**old_opt, **LATER_OPTIMIZER_DEFAULTS}}}
  assert set(LATER_OPTIMIZER_DEFAULTS) == {
    "lr_schedule",
    "lr_end",
    "lr_warmup_env_steps",
    "lr_horizon_env_steps",
    "weight_decay",
  }
  assert config_match.config_difference(old, new) is None
  assert fingerprint.fingerprint(old) == fingerprint.fingerprint(new)
  decayed = {
    **old,
    "settings": {"optimizer": {**new["settings"]["optimizer"], "weight_decay": 0.1}},
  }
  assert config_match.config_difference(old, decayed) is not None
  assert fingerprint.fingerprint(old) != fingerprint.fingerprint(decayed)


def test_the_catch_settings_of_disco103_keep_a_constant_rate_without_decay():
  from disco_eval.config import manifests, resolve, suites

  rule = manifests.load_rule_manifest("disco103")
  catch = resolve.rule_settings(rule, suites.load_suite("catch"))["optimizer"]
  assert catch["lr_schedule"] == "constant" and catch["weight_decay"] == 0.0
  procgen = resolve.rule_settings(rule, suites.load_suite("procgen"))["optimizer"]
  assert procgen["lr_schedule"] == "cosine" and procgen["weight_decay"] == 0.1
  assert procgen["lr_warmup_env_steps"] == 1_000_000


def test_the_label_shows_an_overridden_schedule_or_decay_but_not_the_learning_rate():
  from disco_eval.config import label

  config = {
    "protocol": {"name": "disco", "env_steps": 100},
    "env_steps": 100,
    "train": {"num_envs": 2, "rollout_len": 5},
    "overrides": {"optimizer.weight_decay": "0.1", "optimizer.learning_rate": "1e-3"},
  }
  assert label.protocol_label(config) == "disco+weight_decay=0.1"
