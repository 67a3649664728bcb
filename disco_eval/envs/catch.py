"""Catch in pure JAX, with the dynamics of DiscoRL's reference Catch.

An R x C board (8 x 8). A ball starts in a random column of the top row; the
paddle starts in the middle of the bottom row. Actions 0, 1, 2 move the
paddle left, keep it, move it right. Each step the ball falls one row; when it
reaches the bottom row the episode ends with reward +1 (caught) or -1, and the
same step already shows the first observation of the next episode (an
auto-reset environment: episodes are R - 1 steps long).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from disco_eval.envs.base import JaxEnv, TimeStep

Array = jax.Array


class CatchState(NamedTuple):
  ball_y: Array  # [] int32
  ball_x: Array
  paddle_x: Array
  rng: Array  # PRNG key of this environment


class Catch(JaxEnv):
  """Batched-by-vmap Catch; `reset` and `step` act on one environment.

  Its TimeSteps have no ``truncated`` (None): Catch has no time limit.
  """

  name = "catch"

  def __init__(self, rows: int = 8, columns: int = 8):
    self.rows, self.columns = rows, columns
    self.num_actions = 3
    self.observation_shape = (rows, columns)

  def _new_episode(self, rng: Array) -> CatchState:
    rng, sub = jax.random.split(rng)
    return CatchState(
      jnp.zeros((), jnp.int32),
      jax.random.randint(sub, (), 0, self.columns, jnp.int32),
      jnp.asarray(self.columns // 2, jnp.int32),
      rng,
    )

  def render(self, s: CatchState) -> Array:
    ys = jnp.arange(self.rows)[:, None]
    xs = jnp.arange(self.columns)[None, :]
    ball = (ys == s.ball_y) & (xs == s.ball_x)
    paddle = (ys == self.rows - 1) & (xs == s.paddle_x)
    return (ball | paddle).astype(jnp.float32)

  def reset(self, rng: Array) -> tuple[CatchState, TimeStep]:
    s = self._new_episode(rng)
    return s, TimeStep(self.render(s), jnp.zeros((), jnp.float32), jnp.zeros((), bool))

  def step(self, s: CatchState, action: Array) -> tuple[CatchState, TimeStep]:
    paddle_x = jnp.clip(s.paddle_x + action.astype(jnp.int32) - 1, 0, self.columns - 1)
    ball_y = s.ball_y + 1
    last = ball_y == self.rows - 1
    reward = jnp.where(last, jnp.where(paddle_x == s.ball_x, 1.0, -1.0), 0.0)
    moved = CatchState(ball_y, s.ball_x, paddle_x, s.rng)
    fresh = self._new_episode(s.rng)
    nxt = jax.tree.map(lambda a, b: jnp.where(last, a, b), fresh, moved)
    return nxt, TimeStep(self.render(nxt), reward.astype(jnp.float32), last)


def make_task(suite: Any, task: str) -> Catch:
  """The registry's factory: Catch at its reference size."""
  return Catch()
