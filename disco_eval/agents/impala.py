"""The IMPALA-CNN torso (Espeholt et al. 2018, "IMPALA", Fig. 3, the deep network).

For each stack of channels (default 16, 32, 32): a 3x3 convolution, a 3x3 max
pool of stride 2 (SAME padding), then two residual blocks (relu, conv3x3, relu,
conv3x3, add). Then relu, flatten, a dense layer (default 256) and a relu; the
output is a flat embedding [B, hidden] on which ``AgentNet`` puts its heads.

Input: images as EnvPool gives them, channel-first [B, C, H, W] (uint8 0..255,
or the same values as floats); they are scaled by 1/255 and transposed to NHWC.
Weights follow Haiku's defaults (truncated normal, std 1/sqrt(fan_in); zero
biases), as the other torsos.

Settings (the ``[agent]`` table): ``impala_channels`` (default [16, 32, 32])
and ``impala_hidden`` (default 256).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from disco_eval.agents.dtypes import torso_dtype
from disco_eval.agents.inits import fan_in_truncated_normal

Array = jax.Array


def _conv(channels: int, name: str, dtype) -> nn.Conv:
  return nn.Conv(
    channels, (3, 3), padding="SAME", kernel_init=fan_in_truncated_normal, name=name, dtype=dtype
  )


class ImpalaCNN(nn.Module):
  """[B, C, H, W] images -> [B, hidden] embedding."""

  channels: Sequence[int] = (16, 32, 32)
  hidden: int = 256
  dtype: Any = jnp.float32  # compute dtype (agents/dtypes.py)

  @nn.compact
  def __call__(self, obs: Array) -> Array:
    x = (obs.astype(jnp.float32) / 255.0).astype(self.dtype)
    x = jnp.transpose(x, (0, 2, 3, 1))  # NCHW -> NHWC
    for i, c in enumerate(self.channels):
      x = _conv(int(c), f"stack_{i}_conv", self.dtype)(x)
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
      for j in range(2):
        y = _conv(int(c), f"stack_{i}_res_{j}_a", self.dtype)(nn.relu(x))
        y = _conv(int(c), f"stack_{i}_res_{j}_b", self.dtype)(nn.relu(y))
        x = x + y
    x = nn.relu(x).reshape(x.shape[0], -1)
    x = nn.Dense(
      int(self.hidden), kernel_init=fan_in_truncated_normal, name="dense", dtype=self.dtype
    )(x)
    return nn.relu(x).astype(jnp.float32)


def from_settings(agent: dict) -> ImpalaCNN:
  """The torso described by an ``[agent]`` settings table."""
  return ImpalaCNN(
    channels=tuple(int(c) for c in agent.get("impala_channels", (16, 32, 32))),
    hidden=int(agent.get("impala_hidden", 256)),
    dtype=torso_dtype(agent),
  )
