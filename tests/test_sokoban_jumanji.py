"""Sokoban parity with jumanji's pure-JAX Sokoban (jumanji 1.1.2).

jumanji plays our parsed Boxoban levels through `BoxobanLevels`, a jumanji
`Generator` that serves a fixed table of our cell codes (jumanji's default
generator downloads from a model hub and is never used here).

Actions. jumanji moves by ``MOVES = [[-1, 0], [0, 1], [1, 0], [0, -1]]``:
0 up, 1 right, 2 down, 3 left (as envpool; the docstring of its ``step`` says
up, down, left, right, but the code is what counts). Ours are 0 up, 1 down,
2 left, 3 right, so our action ``a`` is jumanji's ``TO_JUMANJI_ACTION[a]``.

Observations. jumanji's ``Observation.grid`` is uint8 [10, 10, 2]:
channel 0 the variable grid (0 empty, 3 agent, 4 box) and channel 1 the fixed
grid (0 floor, 1 wall, 2 target), plus ``step_count``. Ours is a one-hot
float32 [10, 10, 7] of our cell codes; a cell's code maps to the pair
(variable, fixed) as::

  FLOOR 0 -> (0, 0)   WALL 1 -> (0, 1)   TARGET 2 -> (0, 2)   BOX 3 -> (4, 0)
  BOX_ON_TARGET 4 -> (4, 2)   PLAYER 5 -> (3, 0)   PLAYER_ON_TARGET 6 -> (3, 2)

a bijection on the pairs that can occur, so the test maps ours into jumanji's
layout and compares the arrays exactly.

Episode ends. jumanji ends an episode (``StepType.LAST``) when 4 boxes are on
targets or once ``step_count >= time_limit`` (120), both as a termination
with discount 0; it has no truncation flag and does not reset by itself.
Ours ends on the same steps (``last``), marks the unsolved timeout as
``truncated``, and resets automatically; here jumanji follows our reset onto
the level that our reset drew.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.envs import boxoban, sokoban

try:
  from jumanji.environments.routing.sokoban import Sokoban as JumanjiSokoban
  from jumanji.environments.routing.sokoban import State as JumanjiState
  from jumanji.environments.routing.sokoban.generator import Generator
  from jumanji.types import StepType
except Exception as e:  # ImportError, or a jumanji that does not fit this jax
  pytest.skip(
    f"jumanji cannot be imported ({type(e).__name__}: {e}); "
    f"`pip install jumanji==1.1.2` to run the parity tests",
    allow_module_level=True,
  )

BOXOBAN = Path(__file__).resolve().parents[2] / "shared" / "boxoban"
UP, DOWN, LEFT, RIGHT = range(4)
# Our action a (up, down, left, right) is jumanji's TO_JUMANJI_ACTION[a]
# (jumanji: up, right, down, left).
TO_JUMANJI_ACTION = np.array([0, 2, 3, 1], np.int32)
# Our cell code -> jumanji's variable grid value, fixed grid value.
CODE_TO_VARIABLE = np.array([0, 0, 0, 4, 4, 3, 3], np.uint8)
CODE_TO_FIXED = np.array([0, 1, 2, 0, 2, 0, 2], np.uint8)
NUM_STEPS = 200


def to_jumanji_grid(codes):
  """Our cell codes [..., 10, 10] -> jumanji's grid [..., 10, 10, 2] (variable, fixed)."""
  codes = jnp.asarray(codes).astype(jnp.int32)
  return jnp.stack([jnp.asarray(CODE_TO_VARIABLE)[codes], jnp.asarray(CODE_TO_FIXED)[codes]], -1)


class BoxobanLevels(Generator):
  """A jumanji Sokoban generator serving a fixed table of our levels.

  `levels` are our cell codes [N, 10, 10] (``boxoban.parse_levels``). A call
  draws the level as our ``Sokoban`` does on a reset: ``key, sub = split(k)``,
  level ``randint(sub, (), 0, N)``. jumanji's ``reset(k)`` hands the
  generator ``split(k)[0]``, so ``jumanji.reset(k)`` starts on the level of
  our ``reset(split(k)[0])``.
  """

  def __init__(self, levels):
    super().__init__()
    levels = np.asarray(levels)
    if levels.ndim != 3 or levels.shape[1:] != (boxoban.SIZE, boxoban.SIZE) or not len(levels):
      raise ValueError(f"levels must be cell codes [N, 10, 10], got {levels.shape}")
    grid = np.asarray(to_jumanji_grid(levels))
    self.num_levels = int(len(levels))
    self._variable_grids = jnp.asarray(grid[..., 0])
    self._fixed_grids = jnp.asarray(grid[..., 1])

  def level_state(self, index, key) -> JumanjiState:
    """The first state of level `index` of the table."""
    variable = self._variable_grids[index]
    return JumanjiState(
      key=key,
      fixed_grid=self._fixed_grids[index],
      variable_grid=variable,
      agent_location=self.get_agent_coordinates(variable).astype(jnp.int32),
      step_count=jnp.zeros((), jnp.int32),
    )

  def __call__(self, rng_key) -> JumanjiState:
    key, sub = jax.random.split(rng_key)
    index = jax.random.randint(sub, (), 0, self.num_levels, jnp.int32)
    return self.level_state(index, key)


def level(*rows: str) -> np.ndarray:
  codes, _ = boxoban.parse_levels("; 0\n" + "\n".join(rows) + "\n")
  return codes[0]


def walled(*inner: str) -> np.ndarray:
  rows = ["#" * 10] + ["#" + r.ljust(8) + "#" for r in inner]
  rows += ["#" + " " * 8 + "#"] * (9 - len(rows)) + ["#" * 10]
  return level(*rows)


NEAR = walled("@$.  *", "     *", "     *")  # one push from solved
LOOSE = walled("  *", "@$.  *", "  .$")  # boxes to push onto and off targets


@pytest.fixture(scope="module")
def levels() -> np.ndarray:
  path = BOXOBAN / "unfiltered" / "test" / "000.txt"
  if not path.is_file():
    pytest.skip(f"shared Boxoban levels {path} are missing")
  test, _ = boxoban.parse_levels(path.read_bytes(), str(path))
  # 50 Boxoban levels, then easy ones so that random play also solves levels
  # and pushes boxes off targets.
  return np.concatenate([test[:50], np.stack([NEAR] * 10 + [LOOSE] * 6)])


def test_generator_serves_our_levels_and_reset_draws_the_same_level(levels):
  env = sokoban.Sokoban(levels)
  jenv = JumanjiSokoban(generator=BoxobanLevels(levels))
  keys = jax.random.split(jax.random.PRNGKey(3), 64)
  ours, ts = jax.jit(jax.vmap(env.reset))(jax.vmap(lambda k: jax.random.split(k)[0])(keys))
  theirs, jts = jax.jit(jax.vmap(jenv.reset))(keys)
  assert len(set(np.asarray(ours.level).tolist())) > 20
  codes = np.asarray(jnp.argmax(ts.observation, -1))
  np.testing.assert_array_equal(
    np.asarray(to_jumanji_grid(codes)), np.asarray(jts.observation.grid)
  )
  assert jts.observation.grid.dtype == jnp.uint8
  np.testing.assert_array_equal(np.asarray(ours.player), np.asarray(theirs.agent_location))
  assert np.all(np.asarray(jts.step_type) == StepType.FIRST)
  assert np.all(np.asarray(jts.observation.step_count) == 0)


def _play_both(levels, actions):
  """Plays env i from level i with actions[i] (ours), in both environments.

  Returns numpy arrays [N, T] (grids [N, T, 10, 10, 2]) of both sides.
  """
  env = sokoban.Sokoban(levels)
  gen = BoxobanLevels(levels)
  jenv = JumanjiSokoban(generator=gen)
  to_jumanji = jnp.asarray(TO_JUMANJI_ACTION)

  def run(i, acts):
    s = sokoban.state_from_codes(env.levels[i], jax.random.PRNGKey(i), i)
    js = gen.level_state(i, jax.random.PRNGKey(0))

    def body(carry, a):
      s, js = carry
      moved, reward, _, _ = sokoban.transition(s, a, env.max_steps)
      nxt, ts = env.step(s, a)
      js2, jts = jenv.step(js, to_jumanji[a])
      # jumanji does not reset itself: it follows ours onto the level our reset drew.
      fresh = gen.level_state(nxt.level, js2.key)
      js_next = jax.tree.map(lambda x, y: jnp.where(jts.last(), x, y), fresh, js2)
      out = {
        # The grid after the step, before any reset.
        "grid": to_jumanji_grid(sokoban.render_codes(moved)),
        "jgrid": jts.observation.grid,
        # The observation handed out: after an episode end, the next episode's first.
        "obs": to_jumanji_grid(jnp.argmax(ts.observation, -1)),
        "jobs_next": jnp.stack([js_next.variable_grid, js_next.fixed_grid], -1),
        "steps": moved.steps,
        "jsteps": jts.observation.step_count,
        "player": moved.player,
        "jplayer": js2.agent_location,
        "reward": reward,
        "step_reward": ts.reward,
        "jreward": jts.reward,
        "last": ts.last,
        "truncated": ts.truncated,
        "jlast": jts.last(),
        "jdiscount": jts.discount,
        "jsolved": jts.extras["solved"],
      }
      return (nxt, js_next), out

    return jax.lax.scan(body, (s, js), acts)[1]

  n = len(levels)
  return jax.device_get(jax.jit(jax.vmap(run))(jnp.arange(n), jnp.asarray(actions)))


def test_matches_jumanji_sokoban_on_random_play(levels):
  n = len(levels)
  actions = np.random.default_rng(0).integers(0, 4, size=(n, NUM_STEPS)).astype(np.int32)
  out = _play_both(levels, actions)
  # Observations: the grid after every step, then (at episode ends) after the reset.
  for i in range(n):
    for t in range(NUM_STEPS):
      where = f"level {i} step {t + 1}"
      assert np.array_equal(out["grid"][i, t], out["jgrid"][i, t]), where
      assert np.array_equal(
        out["obs"][i, t], out["jobs_next"][i, t] if out["last"][i, t] else out["grid"][i, t]
      ), where
  np.testing.assert_array_equal(out["player"], out["jplayer"])
  np.testing.assert_array_equal(out["steps"], out["jsteps"])
  # Rewards: the same float32 numbers, bit for bit.
  np.testing.assert_array_equal(out["reward"], out["step_reward"])
  np.testing.assert_array_equal(out["reward"], out["jreward"])
  assert out["jreward"].dtype == np.float32
  # Episode ends on the same steps; jumanji's timeout is a termination (discount
  # 0), ours a truncation; a solved level is a termination in both.
  np.testing.assert_array_equal(out["last"], out["jlast"])
  np.testing.assert_array_equal(out["jdiscount"], np.where(out["jlast"], 0.0, 1.0))
  solved = out["last"] & ~out["truncated"]
  np.testing.assert_array_equal(solved, out["jlast"] & out["jsolved"])
  np.testing.assert_array_equal(out["truncated"], out["jlast"] & ~out["jsolved"])
  assert np.all(out["steps"][out["truncated"]] == 120)
  # The random play covered every kind of reward and both kinds of ending.
  seen = {
    "solved": int(solved.sum()),
    "timeout": int(out["truncated"].sum()),
    "on": int((out["reward"] > 0.5).sum()),
    "off": int((out["reward"] < -0.5).sum()),
    "ten": int((out["reward"] > 9.5).sum()),
  }
  assert all(v > 0 for v in seen.values()), seen
  assert seen["ten"] == seen["solved"]
  # Every env played on after its first episode ended (200 > 120 steps).
  assert np.all(out["last"].any(axis=1))


def test_solving_on_the_120th_step_is_a_solve_in_both():
  # 119 steps into the wall, then the push that solves: step 120 ends the
  # episode either way; it is solved (+10) and not a timeout, in both.
  levels = np.stack([NEAR])
  actions = np.array([[UP] * 119 + [RIGHT] + [UP] * (NUM_STEPS - 120)], np.int32)
  out = _play_both(levels, actions)
  assert not out["last"][0, :119].any() and not out["jlast"][0, :119].any()
  assert out["last"][0, 119] and out["jlast"][0, 119]
  assert not out["truncated"][0, 119] and out["jsolved"][0, 119]
  assert abs(out["reward"][0, 119] - 10.9) < 1e-5 and abs(out["jreward"][0, 119] - 10.9) < 1e-5
  # Without the push, step 120 is the timeout in both, with the step reward only.
  actions = np.full((1, NUM_STEPS), UP, np.int32)
  out = _play_both(levels, actions)
  assert out["last"][0, 119] and out["jlast"][0, 119] and out["truncated"][0, 119]
  assert not out["last"][0, :119].any() and not out["jlast"][0, :119].any()
  assert abs(out["reward"][0, 119] + 0.1) < 1e-6 and abs(out["jreward"][0, 119] + 0.1) < 1e-6
