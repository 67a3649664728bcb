"""Disco103 is shape-generic: any T, B and number of actions."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.config import manifests
from disco_eval.rules import disco, weights

CFG = disco.from_settings(manifests.load_rule_manifest("disco103").settings()).cfg

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "rules" / "disco_103.npz"


@pytest.fixture(scope="module")
def params():
  if not WEIGHTS.is_file():
    pytest.skip(f"{WEIGHTS} is missing")
  return weights.load_params(WEIGHTS)


def make_inputs(seed, t, b, a):
  """Random inputs drawn as the golden files' (shared/golden/FORMAT.md)."""
  rng = np.random.default_rng(seed)
  n = lambda *s: rng.normal(size=s).astype(np.float32)
  out = {
    "logits": n(t + 1, b, a),
    "y": n(t + 1, b, 600),
    "z": n(t + 1, b, a, 600),
    "aux_pi": n(t + 1, b, a, a),
    "q": 2 * n(t + 1, b, a, 601),
  }
  tgt = {k: v + (0.6 if k == "q" else 0.3) * n(*v.shape) for k, v in out.items()}
  discounts = (rng.random((t + 1, b)) > 0.25).astype(np.float32)
  discounts[0, 0] = 0
  discounts[t, b - 1] = 0
  rewards = rng.choice([0, 0, 0, 1, -1, 0.5, 10], size=(t + 1, b)).astype(np.float32)
  actions = rng.integers(0, a, size=(t + 1, b)).astype(np.int32)
  behaviour = out["logits"] + 0.5 * n(t + 1, b, a)
  return actions, rewards, discounts, out, behaviour, tgt


def step(params, state, actions, rewards, discounts, out, behaviour, tgt):
  inp = disco.MetaInputs(
    jnp.asarray(actions),
    jnp.asarray(rewards[1:]),
    jnp.asarray(discounts[1:] == 0),
    jax.tree.map(jnp.asarray, out),
    jnp.asarray(behaviour),
    jax.tree.map(jnp.asarray, tgt),
  )
  return jax.jit(lambda p, s, i: disco.meta_step(p, s, i, CFG))(params, state, inp)


@pytest.mark.parametrize("t,b,a", [(1, 1, 3), (7, 3, 5), (4, 2, 18), (28, 4, 3)])
def test_runs_on_any_shape(params, t, b, a):
  res, state, _ = step(params, disco.initial_meta_state(), *make_inputs(t * 100 + a, t, b, a))
  assert res.pi_hat.shape == (t, b, a)
  assert res.y_hat.shape == (t, b, 600) and res.z_hat.shape == (t, b, 600)
  assert res.values.qv_adv.shape == (t + 1, b, a)
  assert state.hidden.shape == (128,)
  for leaf in jax.tree.leaves((res, state)):
    assert bool(jnp.all(jnp.isfinite(leaf)))


@pytest.mark.parametrize("a", [3, 11, 18])
def test_actions_are_exchangeable(params, a):
  """Relabelling actions permutes the policy target and changes nothing else."""
  t, b = 5, 3
  actions, rewards, discounts, out, behaviour, tgt = make_inputs(a, t, b, a)
  perm = np.random.default_rng(a).permutation(a)  # new label of old action i
  inv = np.argsort(perm)

  def relabel(x, axes):
    for ax in axes:
      x = np.take(x, inv, axis=ax)
    return x

  axes = {"logits": [2], "y": [], "z": [2], "aux_pi": [2, 3], "q": [2]}
  out_p = {k: relabel(v, axes[k]) for k, v in out.items()}
  tgt_p = {k: relabel(v, axes[k]) for k, v in tgt.items()}
  state = disco.initial_meta_state()
  r1, s1, _ = step(params, state, actions, rewards, discounts, out, behaviour, tgt)
  r2, s2, _ = step(
    params, state, perm[actions], rewards, discounts, out_p, relabel(behaviour, [2]), tgt_p
  )
  np.testing.assert_allclose(
    np.take(np.asarray(r1.pi_hat), inv, axis=2), r2.pi_hat, rtol=1e-4, atol=1e-4
  )
  np.testing.assert_allclose(r1.y_hat, r2.y_hat, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(r1.z_hat, r2.z_hat, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(s1.hidden, s2.hidden, rtol=1e-4, atol=1e-5)


def test_gradients_match_closed_forms(params):
  """FORMAT.md's closed forms of d total_loss / d agent outputs, A = 7."""
  t, b, a = 6, 2, 7
  actions, rewards, discounts, out, behaviour, tgt = make_inputs(3, t, b, a)
  res, _, _ = step(
    params, disco.initial_meta_state(), actions, rewards, discounts, out, behaviour, tgt
  )
  is_term = jnp.asarray(discounts[1:] == 0)
  mask = jnp.asarray(discounts[:-1] > 0, jnp.float32)

  def total(ao):
    loss, vloss, _ = disco.agent_loss(ao, res, jnp.asarray(actions), is_term, CFG)
    return jnp.sum((loss + vloss) * mask) / (jnp.sum(mask) + 1e-8)

  grads = jax.grad(total)(jax.tree.map(jnp.asarray, out))
  w = np.asarray(mask / (jnp.sum(mask) + 1e-8))[..., None]
  sm = jax.nn.softmax
  want_logits = w * (sm(out["logits"][:-1]) - sm(res.pi_hat))
  np.testing.assert_allclose(grads["logits"][:-1], want_logits, atol=2e-7)
  np.testing.assert_allclose(grads["logits"][-1], 0.0)
  want_y = w * (sm(out["y"][:-1]) - sm(res.y_hat))
  np.testing.assert_allclose(grads["y"][:-1], want_y, atol=2e-7)
  z_taken = np.take_along_axis(np.asarray(grads["z"][:-1]), actions[:-1, :, None, None], axis=2)[
    :, :, 0
  ]
  z_a = np.take_along_axis(out["z"][:-1], actions[:-1, :, None, None], axis=2)[:, :, 0]
  np.testing.assert_allclose(z_taken, w * (sm(z_a) - sm(res.z_hat)), atol=2e-7)
  # Other actions get no z gradient.
  assert float(jnp.sum(jnp.abs(grads["z"][:-1]))) == pytest.approx(
    float(np.sum(np.abs(z_taken))), rel=1e-5
  )
