"""The reference optimiser: Adam whose denominator carries no (meta-)gradient,
updates clipped elementwise, then scaled by the learning rate."""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from disco_eval.config.train import OptimizerSettings


def scale_by_adam_sg_denom(
  b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
  """Adam's rescaling with ``stop_gradient`` on the second-moment term.

  Identical to Adam in value; under a meta-gradient only the first moment
  carries gradient, as in DiscoRL's reference optimiser.
  """

  def init_fn(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return optax.ScaleByAdamState(
      count=jnp.zeros([], jnp.int32), mu=zeros, nu=jax.tree.map(jnp.zeros_like, params)
    )

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    new = jax.tree.map(lambda m, v: m / (jnp.sqrt(jax.lax.stop_gradient(v)) + eps), mu_hat, nu_hat)
    return new, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(settings: dict[str, Any]) -> optax.GradientTransformation:
  """From a manifest's ``[optimizer]`` table (its keys and their defaults:
  :class:`disco_eval.config.train.OptimizerSettings`): optional global-norm
  clipping of the gradient (``max_grad_norm``, e.g. PPO's 0.5), Adam,
  elementwise clipping of the update (``max_abs_update``; 0 turns it off),
  learning rate."""
  opt = OptimizerSettings.from_table(settings)
  parts = []
  if opt.max_grad_norm > 0:
    parts.append(optax.clip_by_global_norm(opt.max_grad_norm))
  parts.append(scale_by_adam_sg_denom(opt.b1, opt.b2, opt.eps))
  if opt.max_abs_update > 0:
    parts.append(optax.clip(opt.max_abs_update))
  parts.append(optax.scale(-opt.learning_rate))
  return optax.chain(*parts)
