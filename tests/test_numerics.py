"""Numerics against plain-Python definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval import numerics as nx


def test_signed_hyperbolic_inverse():
  x = jnp.linspace(-5000.0, 5000.0, 1001)
  np.testing.assert_allclose(nx.signed_parabolic(nx.signed_hyperbolic(x)), x, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("value", [-300.0, -12.25, -0.5, 0.0, 3.0, 7.75, 299.9, 400.0])
def test_two_hot_expectation(value):
  probs = nx.two_hot(jnp.asarray(value), 300.0, 601)
  support = np.linspace(-300, 300, 601)
  assert float(jnp.sum(probs)) == pytest.approx(1.0, abs=1e-4)
  assert float(jnp.sum(probs * support)) == pytest.approx(np.clip(value, -300, 300), abs=1e-3)
  assert int(jnp.sum(probs > 0)) <= 2


def _retrace_loop(q, v, r, d, c):
  t = len(r)
  g = np.zeros_like(r)
  g[-1] = r[-1] + d[-1] * v[-1]
  for i in range(t - 2, -1, -1):
    g[i] = r[i] + d[i] * (v[i + 1] + c[i + 1] * (g[i + 1] - q[i + 1]))
  return g


def test_retrace_matches_definition():
  rng = np.random.default_rng(0)
  t, b = 9, 3
  q, r = rng.normal(size=(t, b)), rng.normal(size=(t, b))
  v = rng.normal(size=(t + 1, b))
  d = (rng.random((t, b)) > 0.2) * 0.99
  c = rng.random((t, b))
  ours = nx.retrace(*(jnp.asarray(x, jnp.float32) for x in (q, v, r, d, c)))
  np.testing.assert_allclose(ours, _retrace_loop(q, v, r, d, c), rtol=1e-5, atol=1e-5)


def test_vtrace_matches_definition():
  rng = np.random.default_rng(1)
  t, b, lam = 11, 2, 0.9
  v = rng.normal(size=(t + 1, b))
  r = rng.normal(size=(t, b))
  d = (rng.random((t, b)) > 0.2) * 0.97
  rho = np.exp(rng.normal(size=(t, b)))
  out = nx.vtrace(*(jnp.asarray(x, jnp.float32) for x in (v[:-1], v[1:], r, d, rho)), lambda_=lam)
  vs = np.zeros((t, b))
  acc = np.zeros(b)
  for i in range(t - 1, -1, -1):
    delta = np.minimum(1, rho[i]) * (r[i] + d[i] * v[i + 1] - v[i])
    acc = delta + d[i] * lam * np.minimum(1, rho[i]) * acc
    vs[i] = v[i] + acc
  boot = np.concatenate([lam * vs[1:] + (1 - lam) * v[1:-1], v[-1:]])
  adv = np.minimum(1, rho) * (r + d * boot - v[:-1])
  np.testing.assert_allclose(out.vs, vs, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.pg_advantage, adv, rtol=1e-5, atol=1e-5)


def test_ema_debiased_normalisation():
  s = nx.ema_init()
  x = jnp.asarray([1.0, 3.0])
  s = nx.ema_update(s, x, 0.99)
  # After one update the debiased mean and variance are those of x.
  np.testing.assert_allclose(nx.ema_normalize(x, s, 0.0), [-1.0, 1.0], rtol=1e-4)
  np.testing.assert_allclose(
    nx.ema_normalize(x, s, 0.0, subtract_mean=False), [1.0, 3.0], rtol=1e-4
  )


def test_categorical_kl_is_zero_on_equal_logits():
  logits = jax.random.normal(jax.random.PRNGKey(0), (4, 7))
  np.testing.assert_allclose(nx.categorical_kl(logits, logits), 0.0, atol=1e-6)
  assert float(jnp.min(nx.categorical_kl(logits, logits[::-1]))) > 0
