"""Small numerical building blocks shared by update rules (rlax-style).

Every function is a pure function of arrays: jit-, vmap- and grad-friendly.
Shape letters: T trajectory length (transitions), B batch, A actions,
N value bins.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


# ---------------------------------------------------------------------------
# Value transforms.


def signed_hyperbolic(x: Array, eps: float = 1e-3) -> Array:
  """h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x  (Pohlen et al., 2018)."""
  return jnp.sign(x) * (jnp.sqrt(jnp.abs(x) + 1.0) - 1.0) + eps * x


def signed_parabolic(x: Array, eps: float = 1e-3) -> Array:
  """Inverse of :func:`signed_hyperbolic`."""
  z = jnp.sqrt(1.0 + 4.0 * eps * (eps + 1.0 + jnp.abs(x))) / (2.0 * eps)
  z = z - 1.0 / (2.0 * eps)
  return jnp.sign(x) * (jnp.square(z) - 1.0)


def signed_log(x: Array) -> Array:
  """sign(x) log(1 + |x|)."""
  return jnp.sign(x) * jnp.log1p(jnp.abs(x))


# ---------------------------------------------------------------------------
# Categorical (two-hot) values on a uniform support.


def categorical_expectation(logits: Array, max_abs_value: float) -> Array:
  """Expected value of softmax(logits) on linspace(-max, max, N).

  Args:
    logits: [..., N] value logits.
    max_abs_value: half-width of the support.

  Returns:
    [...] expected values (in the transformed space).
  """
  num_bins = logits.shape[-1]
  support = jnp.linspace(-max_abs_value, max_abs_value, num_bins)
  return jnp.sum(jax.nn.softmax(logits) * support, axis=-1)


def two_hot(value: Array, max_abs_value: float, num_bins: int) -> Array:
  """Two-hot encoding of `value` on linspace(-max, max, num_bins).

  The lower bin gets (upper - v) / (upper - lower + 1e-5), the upper bin the
  rest; a value on a bin gives that bin weight 1.

  Args:
    value: [...] scalars, clipped to the support.
    max_abs_value: half-width of the support.
    num_bins: N.

  Returns:
    [..., N] probabilities.
  """
  lo_v, hi_v = -max_abs_value, max_abs_value
  value = jnp.clip(value, lo_v, hi_v)
  pos = (value - lo_v) / (hi_v - lo_v) * (num_bins - 1)
  lower, upper = jnp.floor(pos), jnp.ceil(pos)
  lower_value = lower / (num_bins - 1.0) * (hi_v - lo_v) + lo_v
  upper_value = upper / (num_bins - 1.0) * (hi_v - lo_v) + lo_v
  p_lower = (upper_value - value) / (upper_value - lower_value + 1e-5)
  p_upper = 1.0 - p_lower
  lower_hot = jax.nn.one_hot(lower.astype(jnp.int32), num_bins) * p_lower[..., None]
  upper_hot = jax.nn.one_hot(upper.astype(jnp.int32), num_bins) * p_upper[..., None]
  return lower_hot + upper_hot


def decode_value(logits: Array, max_abs_value: float) -> Array:
  """Scalar value of categorical logits in h-space: h^-1(E[bin])."""
  return signed_parabolic(categorical_expectation(logits, max_abs_value))


def categorical_value_loss(logits: Array, value_target: Array, max_abs_value: float) -> Array:
  """Cross-entropy of logits [..., N] to the two-hot of h(value_target) [...]."""
  num_bins = logits.shape[-1]
  target = jax.lax.stop_gradient(two_hot(signed_hyperbolic(value_target), max_abs_value, num_bins))
  return -jnp.sum(target * jax.nn.log_softmax(logits), axis=-1)


# ---------------------------------------------------------------------------
# Distributions.


def categorical_kl(p_logits: Array, q_logits: Array) -> Array:
  """KL(softmax(p) || softmax(q)) over the last axis."""
  log_p = jax.nn.log_softmax(p_logits)
  log_q = jax.nn.log_softmax(q_logits)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def entropy(logits: Array) -> Array:
  """Entropy of softmax(logits) over the last axis."""
  log_p = jax.nn.log_softmax(logits)
  return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def select(x: Array, actions: Array) -> Array:
  """x[..., a, ...] at the taken action: x [T, B, A, ...], actions [T, B]."""
  idx = actions.reshape(actions.shape + (1,) * (x.ndim - actions.ndim))
  return jnp.take_along_axis(x, idx.astype(jnp.int32), axis=actions.ndim).squeeze(actions.ndim)


def log_prob(logits: Array, actions: Array) -> Array:
  """log softmax(logits)[a]: logits [T, B, A], actions [T, B] -> [T, B]."""
  return select(jax.nn.log_softmax(logits), actions)


# ---------------------------------------------------------------------------
# Off-policy returns.


def retrace(q_taken: Array, v: Array, rewards: Array, discounts: Array, c: Array) -> Array:
  """Retrace returns for Q(s_t, a_t), t = 0..T-1.

  G_{T-1} = r_{T-1} + g_{T-1} v_T and, going backwards,
  G_t = r_t + g_t (v_{t+1} - c_{t+1} q_{t+1} + c_{t+1} G_{t+1}).

  Args:
    q_taken: [T, B] target Q of the taken actions.
    v: [T+1, B] target state values.
    rewards: [T, B] reward of each transition.
    discounts: [T, B] discount of each transition (0 at episode ends).
    c: [T, B] trace coefficients (lambda min(1, rho)).

  Returns:
    [T, B] returns, with no gradient.
  """
  last = rewards[-1] + discounts[-1] * v[-1]

  def step(g_next, xs):
    r, d, v_next, q_next, c_next = xs
    g = r + d * (v_next - c_next * q_next + c_next * g_next)
    return g, g

  xs = (rewards[:-1], discounts[:-1], v[1:-1], q_taken[1:], c[1:])
  _, gs = jax.lax.scan(step, last, xs, reverse=True)
  return jax.lax.stop_gradient(jnp.concatenate([gs, last[None]], axis=0))


class VTraceOutput(NamedTuple):
  """V-trace targets [T, B] and policy-gradient advantages [T, B]."""

  vs: Array
  pg_advantage: Array


def vtrace(
  v_tm1: Array,
  v_t: Array,
  rewards: Array,
  discounts: Array,
  rho: Array,
  lambda_: float = 1.0,
  clip_rho: float = 1.0,
  clip_pg_rho: float = 1.0,
) -> VTraceOutput:
  """V-trace (Espeholt et al., 2018) with a trace coefficient lambda.

  Args:
    v_tm1: [T, B] values at t.
    v_t: [T, B] values at t+1.
    rewards: [T, B].
    discounts: [T, B].
    rho: [T, B] importance ratios pi/mu (unclipped).
    lambda_: trace coefficient.
    clip_rho: clipping of rho in the TD errors.
    clip_pg_rho: clipping of rho in the policy-gradient advantage.

  Returns:
    targets vs_t and advantages min(clip_pg_rho, rho) (r + g b_{t+1} - v_t),
    with the bootstrap b_{t+1} = lambda vs_{t+1} + (1 - lambda) v_{t+1}
    (v_T at the end); no gradient.
  """
  rho_c = jnp.minimum(clip_rho, rho)
  cs = lambda_ * jnp.minimum(1.0, rho)
  deltas = rho_c * (rewards + discounts * v_t - v_tm1)

  def step(acc, xs):
    delta, d, c = xs
    acc = delta + d * c * acc
    return acc, acc

  _, diffs = jax.lax.scan(step, jnp.zeros_like(v_t[-1]), (deltas, discounts, cs), reverse=True)
  vs = diffs + v_tm1
  vs_next = jnp.concatenate([lambda_ * vs[1:] + (1.0 - lambda_) * v_tm1[1:], v_t[-1:]], axis=0)
  pg_rho = jnp.minimum(clip_pg_rho, rho)
  adv = pg_rho * (rewards + discounts * vs_next - v_tm1)
  return VTraceOutput(jax.lax.stop_gradient(vs), jax.lax.stop_gradient(adv))


# ---------------------------------------------------------------------------
# Moving statistics for normalisation.


class EmaState(NamedTuple):
  """Adam-style debiased moving moments of a scalar statistic."""

  moment1: Array
  moment2: Array
  decay_product: Array


def ema_init() -> EmaState:
  z = jnp.zeros((), jnp.float32)
  return EmaState(z, z, jnp.ones((), jnp.float32))


def ema_update(state: EmaState, x: Array, decay: float, axis_name: str | None = None) -> EmaState:
  """Moves the moments towards mean(x) and mean(x^2) over all entries."""
  m1, m2 = jnp.mean(x), jnp.mean(jnp.square(x))
  if axis_name is not None:
    m1, m2 = jax.lax.pmean((m1, m2), axis_name)
  return EmaState(
    decay * state.moment1 + (1.0 - decay) * m1,
    decay * state.moment2 + (1.0 - decay) * m2,
    state.decay_product * decay,
  )


def ema_normalize(x: Array, state: EmaState, eps: float, subtract_mean: bool = True) -> Array:
  """(x - mean) / (sqrt(var + 1e-12) + eps) with debiased moments."""
  debias = 1.0 / (1.0 - state.decay_product)
  mean = state.moment1 * debias
  var = jnp.maximum(state.moment2 * debias - jnp.square(mean), 0.0)
  centred = x - mean if subtract_mean else x
  return centred / (jnp.sqrt(var + 1e-12) + eps)
