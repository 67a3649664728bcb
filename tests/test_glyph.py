"""The NetHack glyph torso: encoding, the egocentric crop, shapes, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.agents import glyph
from disco_eval.agents.networks import TORSOS, Agent
from disco_eval.rules.base import OutputSpec

SMALL = {
  "embed_dim": 4,
  "map_channels": (4, 4),
  "crop_size": 5,
  "crop_channels": (4,),
  "blstats_hidden": 8,
  "hidden": 32,
}


def _random_obs(rng: np.random.Generator, n: int) -> np.ndarray:
  """n encoded observations [n, 1686] with random glyphs and a player on the map."""
  rows = []
  for _ in range(n):
    glyphs = rng.integers(0, glyph.NUM_GLYPHS, (glyph.GLYPH_ROWS, glyph.GLYPH_COLS))
    blstats = rng.integers(0, 100, glyph.NUM_BLSTATS)
    blstats[0] = rng.integers(0, glyph.GLYPH_COLS)
    blstats[1] = rng.integers(0, glyph.GLYPH_ROWS)
    rows.append(glyph.encode(glyphs, blstats))
  return np.stack(rows)


def test_constants():
  assert glyph.OBS_LEN == 1686 == 21 * 79 + 27
  assert (glyph.GLYPH_ROWS, glyph.GLYPH_COLS, glyph.NUM_BLSTATS) == (21, 79, 27)
  assert glyph.NUM_GLYPHS == 5977


def test_encode_split_round_trip_and_clipping():
  rng = np.random.default_rng(0)
  glyphs = rng.integers(0, glyph.NUM_GLYPHS, (21, 79)).astype(np.int16)
  glyphs[0, 0], glyphs[20, 78] = 5976, 0
  blstats = rng.integers(-50, 50, 27).astype(np.int64)
  blstats[0], blstats[1] = 78, 20
  blstats[9] = 10**9  # a large score: clipped to the int16 maximum
  blstats[13] = -(10**6)  # clipped to the int16 minimum
  obs = glyph.encode(glyphs, blstats)
  assert obs.shape == (1686,) and obs.dtype == np.int16
  g, b = glyph.split(obs[None])
  assert g.shape == (1, 21, 79) and g.dtype == jnp.int32
  assert b.shape == (1, 27) and b.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(g[0]), glyphs)
  expected = blstats.copy()
  expected[9], expected[13] = 32767, -32768
  np.testing.assert_array_equal(np.asarray(b[0]), expected.astype(np.float32))
  # floats holding the same values split the same way
  g2, b2 = glyph.split(obs[None].astype(np.float32))
  np.testing.assert_array_equal(np.asarray(g2), np.asarray(g))
  np.testing.assert_array_equal(np.asarray(b2), np.asarray(b))
  with pytest.raises(ValueError):
    glyph.encode(glyphs[:20], blstats)
  with pytest.raises(ValueError):
    glyph.encode(glyphs, blstats[:26])


def test_crop_is_a_window_of_the_padded_map():
  rng = np.random.default_rng(1)
  size, half, d = 5, 2, 3
  emb = rng.normal(size=(4, 21, 79, d)).astype(np.float32)
  x = np.array([40, 0, 78, 200])  # centre, top-left, bottom-right, clipped to 78
  y = np.array([10, 0, 20, -3])  # clipped to 0
  out = np.asarray(glyph.crop(jnp.asarray(emb), jnp.asarray(x), jnp.asarray(y), size))
  assert out.shape == (4, size, size, d)
  padded = np.pad(emb, ((0, 0), (half, half), (half, half), (0, 0)))
  xc, yc = np.clip(x, 0, 78), np.clip(y, 0, 20)
  for i in range(4):
    np.testing.assert_array_equal(out[i], padded[i, yc[i] : yc[i] + size, xc[i] : xc[i] + size])
  # centre: the player's own cell sits in the middle of the window
  np.testing.assert_array_equal(out[0, half, half], emb[0, 10, 40])
  np.testing.assert_array_equal(out[0], emb[0, 8:13, 38:43])
  # corner (0, 0): padding above and left, the map's corner below and right
  assert np.all(out[1, :half] == 0) and np.all(out[1, :, :half] == 0)
  np.testing.assert_array_equal(out[1, half:, half:], emb[1, : half + 1, : half + 1])
  # corner (78, 20): padding below and right
  assert np.all(out[2, half + 1 :] == 0) and np.all(out[2, :, half + 1 :] == 0)
  np.testing.assert_array_equal(out[2, : half + 1, : half + 1], emb[2, 18:, 76:])
  np.testing.assert_array_equal(out[3], padded[3, 0:size, 78 : 78 + size])
  with pytest.raises(ValueError):
    glyph.crop(jnp.asarray(emb), jnp.asarray(x), jnp.asarray(y), 4)


def test_output_shape_and_finite_with_defaults():
  net = glyph.GlyphNet()
  obs = _random_obs(np.random.default_rng(2), 3)
  params = net.init(jax.random.PRNGKey(0), jnp.asarray(obs))
  out = net.apply(params, jnp.asarray(obs))
  assert out.shape == (3, 256) and out.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out))) and bool(jnp.all(out >= 0))
  p = params["params"]
  assert p["embed"]["embedding"].shape == (glyph.NUM_GLYPHS, 16)
  assert p["dense"]["kernel"].shape == (11 * 40 * 16 + 9 * 9 * 16 + 64, 256)
  assert sum(x.size for x in jax.tree.leaves(params)) == 2_257_360
  # float input holding the same values gives the same embedding
  out_f = net.apply(params, jnp.asarray(obs, jnp.float32))
  np.testing.assert_allclose(np.asarray(out_f), np.asarray(out), rtol=1e-6, atol=1e-6)


def test_crop_branch_follows_the_player():
  """With the map branch silenced, only glyphs near the player matter."""
  net = glyph.GlyphNet(**{**SMALL, "hidden": 64})
  background = np.full((21, 79), 2359, np.int16)
  blstats = np.zeros(27, np.int64)

  def obs_with(player, mark):
    g = background.copy()
    if mark is not None:
      g[mark] = 100
    b = blstats.copy()
    b[0], b[1] = player  # (x, y)
    return glyph.encode(g, b)

  params = net.init(jax.random.PRNGKey(3), jnp.asarray(obs_with((40, 10), None))[None])
  # zero kernels and biases of the first map conv: the map branch is constant 0
  params = jax.tree_util.tree_map_with_path(
    lambda path, v: jnp.zeros_like(v) if "map_conv_0" in jax.tree_util.keystr(path) else v, params
  )
  run = lambda o: np.asarray(net.apply(params, jnp.asarray(o)[None]))[0]
  far = (2, 5)  # row 2, col 5: far from a player at (40, 10)
  near = (11, 41)  # inside the 5x5 crop around (40, 10)
  np.testing.assert_allclose(run(obs_with((40, 10), far)), run(obs_with((40, 10), None)))
  assert not np.allclose(run(obs_with((40, 10), near)), run(obs_with((40, 10), None)))
  # the player moves next to the mark: now it is seen
  assert not np.allclose(run(obs_with((5, 2), far)), run(obs_with((5, 2), None)))


def test_gradient_finite_and_nonzero():
  net = glyph.GlyphNet(**SMALL)
  obs = jnp.asarray(_random_obs(np.random.default_rng(4), 4))
  params = net.init(jax.random.PRNGKey(5), obs)

  def loss(p):
    return jnp.mean(net.apply(p, obs) ** 2) + jnp.mean(net.apply(p, obs))

  grads = jax.grad(loss)(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert bool(jnp.all(jnp.isfinite(g))), jax.tree_util.keystr(path)
    assert float(jnp.abs(g).sum()) > 0, jax.tree_util.keystr(path)


def test_jit_and_vmap():
  net = glyph.GlyphNet(**SMALL)
  obs = jnp.asarray(_random_obs(np.random.default_rng(6), 6))
  params = net.init(jax.random.PRNGKey(7), obs)
  eager = net.apply(params, obs)
  jitted = jax.jit(net.apply)(params, obs)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-5)
  stacked = obs.reshape(3, 2, glyph.OBS_LEN)
  mapped = jax.jit(jax.vmap(lambda o: net.apply(params, o)))(stacked)
  assert mapped.shape == (3, 2, SMALL["hidden"])
  np.testing.assert_allclose(
    np.asarray(mapped).reshape(6, -1), np.asarray(eager), rtol=1e-5, atol=1e-5
  )


def test_from_settings_and_registration():
  net = glyph.from_settings({})
  assert (
    net.embed_dim,
    net.map_channels,
    net.crop_size,
    net.crop_channels,
    net.blstats_hidden,
    net.hidden,
  ) == (16, (16, 16), 9, (16, 16), 64, 256)
  settings = {
    "glyph_embed_dim": 8,
    "glyph_map_channels": [8],
    "glyph_crop_size": 7,
    "glyph_crop_channels": [8, 8, 8],
    "glyph_blstats_hidden": 32,
    "glyph_hidden": 128,
  }
  net = TORSOS["glyph_net"](settings)
  assert isinstance(net, glyph.GlyphNet)
  assert (
    net.embed_dim,
    net.map_channels,
    net.crop_size,
    net.crop_channels,
    net.blstats_hidden,
    net.hidden,
  ) == (8, (8,), 7, (8, 8, 8), 32, 128)


def test_agent_with_glyph_torso():
  settings = {
    "torso": "glyph_net",
    "glyph_embed_dim": 4,
    "glyph_map_channels": [4, 4],
    "glyph_crop_size": 5,
    "glyph_crop_channels": [4],
    "glyph_blstats_hidden": 8,
    "glyph_hidden": 32,
  }
  spec = OutputSpec(flat={"logits": (8,), "y": (11,)}, model={"q": (3,)})
  agent = Agent(settings, spec, num_actions=8, obs_shape=(glyph.OBS_LEN,))
  params = agent.init(jax.random.PRNGKey(8))
  obs = jnp.asarray(_random_obs(np.random.default_rng(9), 6)).reshape(3, 2, glyph.OBS_LEN)
  out = jax.jit(agent.apply)(params, obs)
  assert out["logits"].shape == (3, 2, 8)
  assert out["y"].shape == (3, 2, 11)
  assert out["q"].shape == (3, 2, 8, 3)
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in out.values())
