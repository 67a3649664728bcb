"""How much the rule's targets at step t depend on the agent's predictions at t+k.

The paper's Fig. 4d (Oh et al., Nature 2025; Methods, "Analysis details") plots, over k,
the norm of the gradient of the targets at t with respect to the predictions y and z at
t+k: a rule that bootstraps from its own predictions (as a TD target bootstraps from the
next value) has a clearly non-zero dependence at k >= 1.

Our measure, for a target X in {y_hat [T,B,Y], z_hat [T,B,Y], pi_hat [T,B,A]} and an input
P in {y [T+1,B,Y], z [T+1,B,A,Y]}:

  S_X,P(t, k) = ||d X_t / d P_{t+k}||_F,

the Frobenius norm of the Jacobian of the target of trajectory b at step t with respect to
the prediction at step t+k of the same trajectory, P taken as both copies the rule reads
(the online agent's and the target network's, one concatenated vector). The norm is
estimated with Gaussian probes u ~ N(0, I): ||J||_F^2 = E ||J^T u||^2, each term one exact
gradient (:func:`probe_gradients`); the curve is the mean over t and b of S(t, k) for each
k = 0..T (pairs with t+k <= T). The rule's values, advantages and their statistics are
constants here, as in the learner (the meta-network's y/z inputs reach the targets only
through the meta-network). Targets of different trajectories do not depend on each other's
predictions (the per-trajectory LSTM; the meta-RNN's new state affects later steps only), so
one gradient of the sum over trajectories gives every trajectory's own.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval.rules import disco, variants

TARGETS = ("y", "z", "pi")  # y_hat, z_hat, pi_hat
INPUTS = ("y", "z")


class Curves(NamedTuple):
  """Sensitivity over k.

  Attributes:
    k: [K] offsets 0..T.
    mean: {(target, input): [K]} mean over (t, b) of S(t, k).
    count: [K] number of (t, b) pairs averaged at each k.
    probes: Gaussian probes per target.
  """

  k: np.ndarray
  mean: dict[tuple[str, str], np.ndarray]
  count: np.ndarray
  probes: int


def _targets_fn(params, state, cfg, variant):
  """(inputs) -> {target: array} of the rule (or its variant), differentiable."""

  def fn(inp: disco.MetaInputs) -> dict[str, jax.Array]:
    if variant is None:
      out, _, _ = disco.meta_step(params, state, inp, cfg, differentiable=True)
    else:
      out, _ = variants.variant_meta_step(params, state, inp, cfg, variant, differentiable=True)
    return {"y": out.y_hat, "z": out.z_hat, "pi": out.pi_hat}

  return fn


def _split_inputs(inp: disco.MetaInputs):
  """(the four prediction arrays, a function rebuilding the inputs from them)."""
  leaves = {
    ("agent", "y"): inp.agent_out["y"],
    ("agent", "z"): inp.agent_out["z"],
    ("target", "y"): inp.target_out["y"],
    ("target", "z"): inp.target_out["z"],
  }

  def rebuild(p):
    agent = {**inp.agent_out, "y": p[("agent", "y")], "z": p[("agent", "z")]}
    target = {**inp.target_out, "y": p[("target", "y")], "z": p[("target", "z")]}
    return inp._replace(agent_out=agent, target_out=target)

  return leaves, rebuild


def probe_gradients(params, state, inp, cfg, target: str, t, u, variant=None):
  """Gradient of sum_b <u, X_t[b]> with respect to the four prediction arrays.

  Args:
    params, state, cfg: the rule's parameters, meta-state and settings.
    inp: the rule step's inputs (T transitions, B trajectories).
    target: "y", "z" or "pi".
    t: [] step of the target.
    u: [D] probe (D = Y, or A for "pi").
    variant: None or a rule variant (rules.variants).

  Returns:
    {("agent"|"target", "y"|"z"): gradient of the input's shape}.
  """
  fn = _targets_fn(params, state, cfg, variant)
  leaves, rebuild = _split_inputs(inp)

  def scalar(p):
    x = fn(rebuild(p))[target]  # [T, B, D]
    return jnp.sum(jnp.take(x, t, axis=0) @ u)

  return jax.grad(scalar)(leaves)


def _squared_norms(grads) -> dict[str, jax.Array]:
  """{input: [T+1, B] squared norm over the prediction of each step}, both copies."""
  out = {}
  for name in INPUTS:
    total = 0.0
    for copy in ("agent", "target"):
      g = grads[(copy, name)]
      total = total + jnp.sum(g.reshape(g.shape[:2] + (-1,)) ** 2, axis=-1)
    out[name] = total
  return out


def sensitivity(params, state, inp, cfg, variant=None, probes: int = 4, seed: int = 0):
  """S(t, s) for every target, input, t < T and input step s <= T (see the module doc).

  Returns:
    {(target, input): [T, T+1, B] numpy array} of Jacobian norms (estimated with `probes`
    Gaussian probes per target, generated from `seed`).
  """
  steps = inp.rewards.shape[0]
  key = jax.random.PRNGKey(seed)
  result = {}
  for target in TARGETS:
    size = inp.agent_out["logits"].shape[-1] if target == "pi" else inp.agent_out["y"].shape[-1]
    key, sub = jax.random.split(key)
    us = jax.random.normal(sub, (probes, size), inp.agent_out["y"].dtype)

    def per_t(t, target=target, us=us):
      def per_u(u):
        return _squared_norms(probe_gradients(params, state, inp, cfg, target, t, u, variant))

      sq = jax.lax.map(per_u, us)
      return {k: jnp.sqrt(jnp.mean(v, axis=0)) for k, v in sq.items()}

    norms = jax.jit(lambda ts: jax.lax.map(per_t, ts))(jnp.arange(steps))
    for name in INPUTS:
      result[(target, name)] = np.asarray(norms[name])  # [T, T+1, B]
  return result


def curves(s: dict[tuple[str, str], np.ndarray], probes: int) -> Curves:
  """Means over (t, b) of S(t, t+k) for k = 0..T."""
  first = next(iter(s.values()))
  steps, length, batch = first.shape
  ks = np.arange(length)
  means = {}
  for key, arr in s.items():
    m = np.zeros(length)
    for k in ks:
      vals = [arr[t, t + k] for t in range(steps) if t + k < length]
      m[k] = float(np.mean(vals)) if vals else float("nan")
    means[key] = m
  counts = np.array([sum(1 for t in range(steps) if t + k < length) * batch for k in ks], np.int64)
  return Curves(ks, means, counts, probes)
