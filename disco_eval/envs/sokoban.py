"""Sokoban (Boxoban levels) in pure JAX.

The standard Boxoban rules (as DeepMind's Boxoban, jumanji's Sokoban and
envpool's ``Sokoban-v0``): 10x10 levels with 4 boxes and 4 targets; actions
0, 1, 2, 3 move the player up, down, left, right (jumanji and envpool number
them up, right, down, left). The player moves onto floor
or a target; walking into a box pushes it one cell if the cell behind it is
free (no wall, no box, inside the grid); any other move leaves the grid as it
is (the step still counts). Rewards: -0.1 every step, +1 for a box pushed onto
a target, -1 for a box pushed off one, +10 on the step that places the last
box. An episode ends when every box is on a target (terminal) or after
`max_steps` = 120 steps (a timeout: ``last`` and ``truncated``; jumanji
calls it a termination, its observation holds the step count, ours does not).
Checked step by step against envpool's C++ Sokoban (tests/test_sokoban.py) and
jumanji's pure-JAX one (tests/test_sokoban_jumanji.py): same observations,
rewards and episode ends on the same levels and action sequences.

Auto-reset, as :mod:`disco_eval.envs.catch`: the step that ends an episode
returns its reward, ``last=True`` and already the first observation of the
next episode, on a level drawn uniformly from the level table.

Observation: a one-hot grid float32 [10, 10, 7]; channel k marks the cells of
code k of :mod:`disco_eval.envs.boxoban` (0 floor, 1 wall, 2 empty target,
3 box, 4 box on target, 5 player, 6 player on target).

The level table (int8 [N, 10, 10] cell codes; ~90 MB for the 900k training
levels) lives on the device and is device data of the compiled programs,
not a constant baked into them: ``device_data`` hands it to the trainer,
which passes it to its jitted programs as an argument and traces the env
inside ``reading`` (see :class:`~disco_eval.envs.base.JaxEnv`).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval.envs import boxoban
from disco_eval.envs.base import JaxEnv, TimeStep
from disco_eval.envs.boxoban import (
  BOX,
  BOX_ON_TARGET,
  FLOOR,
  PLAYER,
  PLAYER_ON_TARGET,
  SIZE,
  TARGET,
  WALL,
)

Array = jax.Array

NUM_CHANNELS = 7
MAX_STEPS = 120
STEP_REWARD = -0.1
BOX_REWARD = 1.0
SOLVE_REWARD = 10.0
# Row/column offsets of the actions up, down, left, right.
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], np.int32)
DEFAULT_TRAIN_SPLIT = "unfiltered-train"


class SokobanState(NamedTuple):
  walls: Array  # [10, 10] bool
  targets: Array  # [10, 10] bool
  boxes: Array  # [10, 10] bool
  player: Array  # [2] int32 (row, column)
  steps: Array  # [] int32 steps taken in this episode
  level: Array  # [] int32 row of the level table (-1: given directly)
  rng: Array  # PRNG key of this environment


def state_from_codes(
  codes: Array, rng: Array | None = None, level: Array | int = -1
) -> SokobanState:
  """The first state of the level with cell codes `codes` [10, 10]."""
  codes = jnp.asarray(codes)
  is_player = (codes == PLAYER) | (codes == PLAYER_ON_TARGET)
  flat = jnp.argmax(is_player.reshape(-1)).astype(jnp.int32)
  return SokobanState(
    walls=codes == WALL,
    targets=(codes == TARGET) | (codes == BOX_ON_TARGET) | (codes == PLAYER_ON_TARGET),
    boxes=(codes == BOX) | (codes == BOX_ON_TARGET),
    player=jnp.stack([flat // SIZE, flat % SIZE]),
    steps=jnp.zeros((), jnp.int32),
    level=jnp.asarray(level, jnp.int32),
    rng=rng if rng is not None else jax.random.PRNGKey(0),
  )


def render_codes(s: SokobanState) -> Array:
  """Cell codes int32 [10, 10] of a state (the codes of ``boxoban``)."""
  rows = jnp.arange(SIZE)[:, None]
  cols = jnp.arange(SIZE)[None, :]
  here = (rows == s.player[0]) & (cols == s.player[1])
  t = s.targets
  return jnp.where(
    s.walls,
    WALL,
    jnp.where(
      s.boxes,
      jnp.where(t, BOX_ON_TARGET, BOX),
      jnp.where(here, jnp.where(t, PLAYER_ON_TARGET, PLAYER), jnp.where(t, TARGET, FLOOR)),
    ),
  ).astype(jnp.int32)


def observe(s: SokobanState) -> Array:
  """The one-hot observation float32 [10, 10, 7]."""
  return jax.nn.one_hot(render_codes(s), NUM_CHANNELS, dtype=jnp.float32)


def transition(
  s: SokobanState, action: Array, max_steps: int = MAX_STEPS
) -> tuple[SokobanState, Array, Array, Array]:
  """One step without reset: (next state, reward, solved, timed_out)."""
  move = jnp.asarray(MOVES)[action.astype(jnp.int32)]
  one, two = s.player + move, s.player + 2 * move

  def inside(p):
    return jnp.all((p >= 0) & (p < SIZE))

  def at(grid, p):
    q = jnp.clip(p, 0, SIZE - 1)
    return grid[q[0], q[1]] & inside(p)

  def blocked(p):  # wall or off the grid
    return at(s.walls, p) | ~inside(p)

  box_one = at(s.boxes, one)
  free_two = ~blocked(two) & ~at(s.boxes, two)
  moves = ~blocked(one) & (~box_one | free_two)
  push = moves & box_one
  c1, c2 = jnp.clip(one, 0, SIZE - 1), jnp.clip(two, 0, SIZE - 1)
  boxes = s.boxes.at[c1[0], c1[1]].set(s.boxes[c1[0], c1[1]] & ~push)
  boxes = boxes.at[c2[0], c2[1]].set(boxes[c2[0], c2[1]] | push)
  player = jnp.where(moves, one, s.player)
  on_before = jnp.sum(s.boxes & s.targets)
  on_after = jnp.sum(boxes & s.targets)
  solved = ~jnp.any(boxes & ~s.targets)
  reward = (
    STEP_REWARD
    + BOX_REWARD * (on_after - on_before).astype(jnp.float32)
    + SOLVE_REWARD * solved.astype(jnp.float32)
  )
  steps = s.steps + 1
  timed_out = (steps >= max_steps) & ~solved
  nxt = s._replace(boxes=boxes, player=player, steps=steps)
  return nxt, reward.astype(jnp.float32), solved, timed_out


class Sokoban(JaxEnv):
  """Batched-by-vmap Sokoban over a table of levels; `reset` and `step` act
  on one environment. TimeStep observations are float32 [10, 10, 7];
  ``truncated`` marks the step limit."""

  num_actions = 4
  observation_shape = (SIZE, SIZE, NUM_CHANNELS)

  def __init__(self, levels: Any, max_steps: int = MAX_STEPS, name: str = "sokoban"):
    levels = np.asarray(levels)
    if levels.ndim != 3 or levels.shape[1:] != (SIZE, SIZE) or len(levels) == 0:
      raise ValueError(f"levels must be cell codes [N, {SIZE}, {SIZE}], got {levels.shape}")
    self.name = name
    self.max_steps = int(max_steps)
    self.num_levels = int(len(levels))
    self.levels = jnp.asarray(levels.astype(np.int8))  # on the default device

  def device_data(self) -> Array:
    """The level table int8 [N, 10, 10] (an argument of compiled programs)."""
    return self.levels

  @contextlib.contextmanager
  def reading(self, data: Array) -> Iterator[None]:
    """``reset`` and ``step`` draw levels from `data` (the table or a tracer)."""
    own, self.levels = self.levels, data
    try:
      yield
    finally:
      self.levels = own

  def _new_episode(self, rng: Array) -> SokobanState:
    rng, sub = jax.random.split(rng)
    index = jax.random.randint(sub, (), 0, self.num_levels, jnp.int32)
    return state_from_codes(self.levels[index], rng, index)

  def reset(self, rng: Array) -> tuple[SokobanState, TimeStep]:
    s = self._new_episode(rng)
    false = jnp.zeros((), bool)
    return s, TimeStep(observe(s), jnp.zeros((), jnp.float32), false, false)

  def step(self, s: SokobanState, action: Array) -> tuple[SokobanState, TimeStep]:
    moved, reward, solved, timed_out = transition(s, action, self.max_steps)
    last = solved | timed_out
    fresh = self._new_episode(s.rng)
    nxt = jax.tree.map(lambda a, b: jnp.where(last, a, b), fresh, moved)
    return nxt, TimeStep(observe(nxt), reward, last, timed_out)


def make_task(suite: Any, task: str) -> Sokoban:
  """The training environment of a Sokoban suite task.

  The suite manifest's ``[levels.<task>]`` table names the training split
  (``train``, default ``unfiltered-train``) and may set ``max_steps``.
  """
  table = suite.raw.get("levels", {}).get(task, {})
  split = str(table.get("train", DEFAULT_TRAIN_SPLIT))
  return Sokoban(boxoban.load_levels(split), int(table.get("max_steps", MAX_STEPS)), name=task)


# --- evaluation on fixed levels -------------------------------------------------


@functools.partial(jax.jit, static_argnames=("apply_fn", "max_steps"))
def _evaluate(apply_fn, params, levels, rng, max_steps):
  n = levels.shape[0]
  states = jax.vmap(state_from_codes)(levels)

  def cond(c):
    return (c[4] < max_steps) & ~jnp.all(c[2])

  def body(c):
    s, ret, done, solved, t, key = c
    key, sub = jax.random.split(key)
    logits = apply_fn(params, jax.vmap(observe)(s))["logits"]
    action = jax.random.categorical(sub, logits).astype(jnp.int32)
    nxt, reward, ok, timed_out = jax.vmap(transition, in_axes=(0, 0, None))(s, action, max_steps)
    ret = jnp.where(done, ret, ret + reward)
    solved = solved | (~done & ok)
    # Ended episodes stay as they ended.
    s = jax.tree.map(
      lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b), s, nxt
    )
    return s, ret, done | ok | timed_out, solved, t + 1, key

  init = (
    states,
    jnp.zeros((n,), jnp.float32),
    jnp.zeros((n,), bool),
    jnp.zeros((n,), bool),
    jnp.zeros((), jnp.int32),
    rng,
  )
  _, ret, _, solved, _, _ = jax.lax.while_loop(cond, body, init)
  return solved, ret


def evaluate_levels(
  apply_fn: Callable[[Any, Array], dict],
  params: Any,
  levels: Any,
  rng: Array,
  max_steps: int = MAX_STEPS,
) -> tuple[Array, Array]:
  """Plays every level once with the sampling policy, all in parallel.

  `apply_fn(params, obs [N, 10, 10, 7])["logits"]` gives [N, 4] logits;
  `levels` are cell codes [N, 10, 10]. Each level is one episode of at most
  `max_steps` steps. Returns (solved bool [N], returns float32 [N]).
  `apply_fn` must be hashable (e.g. ``agent.apply``): it is a static argument
  of the compiled program.
  """
  levels = jnp.asarray(np.asarray(levels, np.int8))
  return _evaluate(apply_fn, params, levels, rng, int(max_steps))


def evaluate_split(
  apply_fn: Callable[[Any, Array], dict],
  params: Any,
  split: str,
  rng: Array,
  max_steps: int = MAX_STEPS,
) -> dict[str, Any]:
  """`evaluate_levels` on every level of a cached Boxoban split.

  Returns {"solve_rate", "mean_return", "return_std", "levels", "split",
  "solved" (numpy bool [N]), "returns" (numpy float32 [N])}.
  """
  levels = boxoban.load_levels(split)
  solved, returns = jax.device_get(evaluate_levels(apply_fn, params, levels, rng, max_steps))
  return {
    "split": split,
    "levels": int(len(levels)),
    "solve_rate": float(np.mean(solved)),
    "mean_return": float(np.mean(returns)),
    "return_std": float(np.std(returns)),
    "solved": np.asarray(solved),
    "returns": np.asarray(returns),
  }


def evaluate_protocol(
  protocol: Any, apply_fn: Callable[[Any, Array], dict], params: Any, rng: Array
) -> tuple[Any, dict[str, Any]] | None:
  """The registry's final evaluation of a Sokoban protocol: with
  ``eval_levels``, every level of that split once (returns [N] and
  {"solve_rate", "eval_levels"}); without, None (the trainer's own)."""
  split = protocol.get("eval_levels")
  if not split:
    return None
  res = evaluate_split(apply_fn, params, split, rng)
  return res["returns"], {"solve_rate": float(res["solve_rate"]), "eval_levels": split}
