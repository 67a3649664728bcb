"""A torso chosen by the observation's rank, for suites whose tasks differ in
observation kind (Craftax-Classic: a symbolic vector or an image).

``FlatOrImage``: flat observations [B, D] go through the MLP torso
(``torso_hidden``, default [512, 512]); images [B, C, H, W] through the
IMPALA CNN (``impala_channels``, ``impala_hidden``; see
:mod:`disco_eval.agents.impala`). The choice is made from the shape when the
network is built, so one ``[agent]`` table serves both tasks of a suite.
"""

from typing import Callable

import flax.linen as nn
import jax

from disco_eval.agents import impala

Array = jax.Array


class FlatOrImage(nn.Module):
  """[B, D] -> the flat torso; [B, C, H, W] -> the image torso."""

  flat: Callable[[], nn.Module]
  image: Callable[[], nn.Module]

  @nn.compact
  def __call__(self, obs: Array) -> Array:
    if obs.ndim == 2:
      return self.flat()(obs)
    if obs.ndim == 4:
      return self.image()(obs)
    raise ValueError(f"flat_or_image takes [B, D] or [B, C, H, W] observations, got {obs.shape}")


def from_settings(agent: dict, mlp: Callable[[dict], nn.Module]) -> FlatOrImage:
  """The torso described by an ``[agent]`` table; `mlp` builds the flat torso."""
  return FlatOrImage(flat=lambda: mlp(agent), image=lambda: impala.from_settings(agent))
