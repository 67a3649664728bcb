"""A small convolutional torso for grid observations (Sokoban's one-hot grid).

``SokobanConv``: 3x3 convolutions (stride 1, SAME padding, ReLU), then
flatten, a dense layer and a ReLU; the output is a flat embedding [B, hidden]
on which ``AgentNet`` puts its heads. Weights follow Haiku's defaults for
Conv2D and Linear (truncated normal of std 1/sqrt(fan_in), zero biases).

Settings (the ``[agent]`` table): ``conv_channels`` (default [32, 32]) and
``conv_hidden`` (default 256).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from disco_eval.agents.dtypes import torso_dtype
from disco_eval.agents.inits import fan_in_truncated_normal

Array = jax.Array


class SokobanConv(nn.Module):
  """Conv layers over a [B, H, W, C] grid, then flatten and dense -> [B, hidden]."""

  channels: Sequence[int] = (32, 32)
  hidden: int = 256
  kernel: int = 3
  dtype: Any = jnp.float32  # compute dtype (agents/dtypes.py)

  @nn.compact
  def __call__(self, obs: Array) -> Array:
    x = obs.astype(self.dtype)
    if x.ndim == 3:  # [B, H, W]: one channel
      x = x[..., None]
    for i, c in enumerate(self.channels):
      x = nn.Conv(
        int(c),
        (self.kernel, self.kernel),
        padding="SAME",
        kernel_init=fan_in_truncated_normal,
        name=f"conv_{i}",
        dtype=self.dtype,
      )(x)
      x = nn.relu(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.Dense(
      int(self.hidden), kernel_init=fan_in_truncated_normal, name="dense", dtype=self.dtype
    )(x)
    return nn.relu(x).astype(jnp.float32)


def from_settings(agent: dict) -> SokobanConv:
  """The torso described by an ``[agent]`` settings table."""
  return SokobanConv(
    channels=tuple(int(c) for c in agent.get("conv_channels", (32, 32))),
    hidden=int(agent.get("conv_hidden", 256)),
    dtype=torso_dtype(agent),
  )
