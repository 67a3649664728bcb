"""Hand-designed baselines through the common interface: PPO and IMPALA."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.rules import ppo
from disco_eval.runs import SweepSpec, run_sweep


def test_gae_matches_a_plain_loop():
  rng = np.random.default_rng(0)
  t, b, gamma, lam = 7, 3, 0.9, 0.8
  values = rng.normal(size=(t + 1, b))
  rewards = rng.normal(size=(t, b))
  terminal = rng.random((t, b)) < 0.2
  discounts = gamma * (1.0 - terminal)
  want = np.zeros((t, b))
  nxt = np.zeros(b)
  for i in reversed(range(t)):
    delta = rewards[i] + discounts[i] * values[i + 1] - values[i]
    nxt = delta + discounts[i] * lam * nxt
    want[i] = nxt
  got = ppo.gae(jnp.asarray(values), jnp.asarray(rewards), jnp.asarray(discounts), lam)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_masked_normalize_ignores_masked_entries():
  x = jnp.array([1.0, 2.0, 3.0, 100.0])
  mask = jnp.array([1.0, 1.0, 1.0, 0.0])
  out = ppo.masked_normalize(x, mask)
  np.testing.assert_allclose(out[:3], np.array([-1.0, 0.0, 1.0]) / np.sqrt(2 / 3), rtol=1e-5)


def test_clipped_surrogate_has_no_gradient_outside_the_clip():
  import dataclasses

  import jax

  from disco_eval.config import manifests
  from disco_eval.rules.base import Rollout

  cfg = ppo.from_settings(manifests.load_rule_manifest("ppo").settings()).cfg
  # One transition: unnormalised advantages (normalised, a single one is 0).
  rule = ppo.PPO(dataclasses.replace(cfg, entropy_cost=0.0, value_cost=0.0, normalize_adv=False))
  t, b, a = 2, 1, 2
  batch = Rollout(
    jnp.zeros((t, b, 1)),
    jnp.zeros((t, b), jnp.int32),
    jnp.zeros((t, b)),
    jnp.ones((t, b)),
    jnp.zeros((t, b, a)),
  )
  targets = ppo.PPOTargets(
    advantage=jnp.ones((t - 1, b)),
    returns=jnp.zeros((t - 1, b)),
    old_value=jnp.zeros((t - 1, b)),
    behaviour_logp=jnp.full((t - 1, b), jnp.log(0.5)),
  )

  def pg(logit0):
    logits = jnp.stack([jnp.full((t, b), logit0), jnp.zeros((t, b))], -1)
    loss, _ = rule.loss({"logits": logits, "v": jnp.zeros((t, b, 1))}, targets, batch)
    return loss.sum()

  # ratio pi/mu = 2 sigmoid(logit0): inside the clip the surrogate pushes up,
  # above 1 + eps (positive advantage) it is flat.
  assert jax.grad(pg)(0.0) < 0.0
  assert jax.grad(pg)(3.0) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("rule,steps,margin", [("ppo", 20_000, 0.3), ("impala", 30_000, 0.0)])
def test_baselines_learn_catch(tmp_path, rule, steps, margin):
  # Random play scores about -0.6 on Catch; both must end clearly above it.
  results = run_sweep(
    SweepSpec(suite="catch", rules=(rule,), seeds=(0,), steps=steps, out=tmp_path)
  )
  [res] = results
  assert res.status == "complete", res.error
  assert res.summary["score"] > margin, res.summary


@pytest.mark.slow
def test_rule_scoped_override_and_alias_are_recorded(tmp_path):
  spec = SweepSpec(
    suite="catch",
    rules=("ppo", "impala"),
    seeds=(0,),
    steps=600,
    out=tmp_path,
    overrides=(("ppo.lr", "3e-4"), ("train.chunk", "4")),
  )
  results = run_sweep(spec)
  assert [r.status for r in results] == ["complete", "complete"]
  cfg = {r.rule: json.loads((r.path / "config.json").read_text()) for r in results}
  assert cfg["ppo"]["settings"]["optimizer"]["learning_rate"] == 3e-4
  assert cfg["impala"]["settings"]["optimizer"]["learning_rate"] == 5e-4  # its own Catch value
  assert cfg["ppo"]["overrides"] == {"ppo.lr": "3e-4", "train.chunk": "4"}
  # PPO's own on-policy loop replaces the protocol's; IMPALA keeps the protocol's.
  assert cfg["ppo"]["train"]["buffer_capacity"] == 1 and cfg["ppo"]["train"]["num_envs"] == 16
  assert cfg["impala"]["train"]["buffer_capacity"] != 1
  assert cfg["ppo"]["train"]["chunk"] == cfg["impala"]["train"]["chunk"] == 4
  # Their iterations differ in size (PPO 16 x 33, the protocol 2 x 29), so they
  # stop at different env steps; they share the budget asked for, and a table.
  from disco_eval.analysis import compare

  assert len({c["env_steps"] for c in cfg.values()}) == 2
  result = compare.compare(tmp_path, reps=100)
  assert [g.key.protocol for g in result.groups] == ["reference@600"]
  assert set(result.groups[0].rules) == {"ppo", "impala"}
