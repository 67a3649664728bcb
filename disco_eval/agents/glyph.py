"""A torso for NetHack (NLE) observations, after the NLE baseline agent's idea.

Observations are flat int16 vectors of ``OBS_LEN`` = 21*79 + 27 = 1686 entries
(``encode`` builds them; the env module uses it): first NLE's ``glyphs``
(21x79, row-major, values 0..5976 where 5976 = ``nle.nethack.MAX_GLYPH`` means
"nothing"), then NLE's ``blstats`` (27 bottom-line stats) clipped to int16.
``blstats[0]`` is the player's x (column, 0..78), ``blstats[1]`` its y (row,
0..20). ``split`` undoes the encoding inside the torso.

``GlyphNet``: obs [B, 1686] (int16, or floats of the same integer values) ->
[B, hidden] float32 embedding, on which ``AgentNet`` puts its heads:

* every glyph is embedded (``nn.Embed``, ``NUM_GLYPHS`` rows of ``embed_dim``)
  -> [B, 21, 79, embed_dim];
* full map: 3x3 convolutions (SAME padding, ELU) of ``map_channels``, the first
  of stride 2 (to keep it cheap on CPU: 21x79 -> 11x40), then flatten;
* egocentric crop: the embedded map padded with zeros by ``crop_size // 2`` on
  each side, a ``crop_size`` x ``crop_size`` window centred on the player
  (``crop``), 3x3 convolutions (stride 1, SAME, ELU) of ``crop_channels``,
  then flatten;
* bottom-line stats: each scaled by ``sign(v) * log1p(|v|)`` (one fixed rule
  for all 27, which keeps counters such as gold, score, time or the condition
  bitmask in a small range), then a dense layer of ``blstats_hidden`` and relu;
* the three concatenated, a dense layer of ``hidden`` and relu.

Convolution and dense weights follow Haiku's defaults as the other torsos
(truncated normal at 2 std, std 1/sqrt(fan_in); zero biases); the embedding
table follows Haiku's ``Embed`` default (truncated normal, std 1).

With the defaults the output is 256 wide and the concatenation is
11*40*16 + 9*9*16 + 64 = 8400 wide; 2,257,360 parameters, of which 2,150,656
in the last dense layer and 95,632 in the embedding table.

Settings (the ``[agent]`` table): ``glyph_embed_dim`` (default 16),
``glyph_map_channels`` (default [16, 16]), ``glyph_crop_size`` (default 9,
odd), ``glyph_crop_channels`` (default [16, 16]), ``glyph_blstats_hidden``
(default 64) and ``glyph_hidden`` (default 256).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from disco_eval.agents.dtypes import torso_dtype
from disco_eval.agents.inits import fan_in_truncated_normal

# The observation layout is the NetHack env module's (re-exported here).
from disco_eval.envs.nethack import GLYPH_COLS, GLYPH_ROWS, NUM_BLSTATS, OBS_LEN, encode  # noqa: F401

Array = jax.Array

NUM_GLYPHS = 5977  # nle.nethack.MAX_GLYPH (5976, "nothing") + 1


def _embed_init(key, shape, dtype=jnp.float32):
  """Normal truncated at 2 std with std 1 (Haiku's Embed default)."""
  return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)


def split(obs) -> tuple[Array, Array]:
  """Observations [..., 1686] -> (glyphs int32 [..., 21, 79], blstats float32 [..., 27]).

  Glyphs are clipped to 0..NUM_GLYPHS-1 so that the embedding lookup is always
  in range.
  """
  obs = jnp.asarray(obs)
  lead = obs.shape[:-1]
  n = GLYPH_ROWS * GLYPH_COLS
  glyphs = obs[..., :n].astype(jnp.int32).reshape(lead + (GLYPH_ROWS, GLYPH_COLS))
  glyphs = jnp.clip(glyphs, 0, NUM_GLYPHS - 1)
  blstats = obs[..., n:].astype(jnp.float32)
  return glyphs, blstats


def player_position(blstats: Array) -> tuple[Array, Array]:
  """(x, y) int32 [B] of the player from blstats [B, 27], clipped to the map."""
  x = jnp.clip(blstats[..., 0].astype(jnp.int32), 0, GLYPH_COLS - 1)
  y = jnp.clip(blstats[..., 1].astype(jnp.int32), 0, GLYPH_ROWS - 1)
  return x, y


def crop(embedded: Array, x: Array, y: Array, size: int) -> Array:
  """Windows [B, size, size, D] of a map [B, H, W, D] centred on (y, x) [B].

  The map is padded with zeros by ``size // 2`` on each side first, so the
  window at (y, x) is ``padded[y:y+size, x:x+size]``. ``x`` and ``y`` are
  clipped to the map.
  """
  size = int(size)
  if size < 1 or size % 2 == 0:
    raise ValueError(f"crop size must be odd and positive, got {size}")
  half = size // 2
  _, h, w, d = embedded.shape
  x = jnp.clip(jnp.asarray(x).astype(jnp.int32), 0, w - 1)
  y = jnp.clip(jnp.asarray(y).astype(jnp.int32), 0, h - 1)
  padded = jnp.pad(embedded, ((0, 0), (half, half), (half, half), (0, 0)))

  def one(m, yy, xx):
    return jax.lax.dynamic_slice(m, (yy, xx, jnp.int32(0)), (size, size, d))

  return jax.vmap(one)(padded, y, x)


def scale_blstats(blstats: Array) -> Array:
  """The fixed per-feature scaling of blstats: sign(v) * log1p(|v|)."""
  return jnp.sign(blstats) * jnp.log1p(jnp.abs(blstats))


class GlyphNet(nn.Module):
  """NLE observations [B, 1686] -> [B, hidden] embedding (see module docstring)."""

  embed_dim: int = 16
  map_channels: Sequence[int] = (16, 16)
  crop_size: int = 9
  crop_channels: Sequence[int] = (16, 16)
  blstats_hidden: int = 64
  hidden: int = 256
  dtype: Any = jnp.float32  # compute dtype (agents/dtypes.py)

  @nn.compact
  def __call__(self, obs: Array) -> Array:
    """obs [B, K * 1686]: K stacked observations (``train.frame_stack``),
    oldest first; their embedded maps are concatenated along the channels,
    their blstats along the features, and the crop is centred on the player
    of the newest."""
    b = obs.shape[0]
    k = obs.shape[-1] // OBS_LEN
    glyphs, blstats = split(obs.reshape(b, k, -1))  # [B, K, 21, 79], [B, K, 27]
    emb = nn.Embed(
      NUM_GLYPHS, int(self.embed_dim), embedding_init=_embed_init, name="embed", dtype=self.dtype
    )(glyphs)  # [B, K, 21, 79, D]
    emb = jnp.moveaxis(emb, 1, -2).reshape(emb.shape[:1] + emb.shape[2:4] + (-1,))  # [B,21,79,KD]
    newest, blstats = blstats[:, -1], blstats.reshape(b, -1)

    m = emb
    for i, c in enumerate(self.map_channels):
      stride = 2 if i == 0 else 1
      m = nn.Conv(
        int(c),
        (3, 3),
        strides=(stride, stride),
        padding="SAME",
        kernel_init=fan_in_truncated_normal,
        name=f"map_conv_{i}",
        dtype=self.dtype,
      )(m)
      m = nn.elu(m)
    m = m.reshape(b, -1)

    x, y = player_position(newest)
    p = crop(emb, x, y, self.crop_size)  # [B, S, S, D]
    for i, c in enumerate(self.crop_channels):
      p = nn.Conv(
        int(c),
        (3, 3),
        padding="SAME",
        kernel_init=fan_in_truncated_normal,
        name=f"crop_conv_{i}",
        dtype=self.dtype,
      )(p)
      p = nn.elu(p)
    p = p.reshape(b, -1)

    s = nn.Dense(
      int(self.blstats_hidden),
      kernel_init=fan_in_truncated_normal,
      name="blstats_dense",
      dtype=self.dtype,
    )(scale_blstats(blstats).astype(self.dtype))
    s = nn.relu(s)

    out = jnp.concatenate([m, p, s], axis=-1)
    out = nn.Dense(
      int(self.hidden), kernel_init=fan_in_truncated_normal, name="dense", dtype=self.dtype
    )(out)
    return nn.relu(out).astype(jnp.float32)


def from_settings(agent: dict) -> GlyphNet:
  """The torso described by an ``[agent]`` settings table."""
  return GlyphNet(
    embed_dim=int(agent.get("glyph_embed_dim", 16)),
    map_channels=tuple(int(c) for c in agent.get("glyph_map_channels", (16, 16))),
    crop_size=int(agent.get("glyph_crop_size", 9)),
    crop_channels=tuple(int(c) for c in agent.get("glyph_crop_channels", (16, 16))),
    blstats_hidden=int(agent.get("glyph_blstats_hidden", 64)),
    hidden=int(agent.get("glyph_hidden", 256)),
    dtype=torso_dtype(agent),
  )
