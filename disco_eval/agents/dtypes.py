"""The compute dtype of a torso (``agent.torso_dtype``): float32, or bfloat16 on accelerators.

A torso's layers compute in this dtype (inputs and activations; their
parameters stay float32, flax's ``param_dtype``) and its embedding is cast
back to float32, so the heads, the action model, the losses and the rule
always compute in float32. bfloat16 halves the torso's activation memory and
runs on the tensor cores of recent GPUs; on the CPU it is slower, not faster.
A run that does not use float32 says so in its label (``+torso=bfloat16``).
"""

import jax.numpy as jnp

DEFAULT = "float32"
TORSO_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def torso_dtype(agent: dict):
  """The jnp dtype an ``[agent]`` table's ``torso_dtype`` names (default float32)."""
  name = agent.get("torso_dtype", DEFAULT)
  if name not in TORSO_DTYPES:
    raise ValueError(f"agent.torso_dtype must be one of {sorted(TORSO_DTYPES)}, got {name!r}")
  return TORSO_DTYPES[name]
