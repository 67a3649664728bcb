"""Weight initialisers shared by the agent networks (Haiku's defaults)."""

import math

import jax
import jax.numpy as jnp


def fan_in_truncated_normal(key, shape, dtype=jnp.float32):
  """Normal truncated at 2 std with std 1/sqrt(fan_in), fan_in = all dims but
  the last (Haiku's Linear and Conv2D default)."""
  std = 1.0 / math.sqrt(math.prod(shape[:-1]))
  return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) * std


def truncated_normal(std: float):
  """Normal truncated at 2 std with the given std."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) * std

  return init
