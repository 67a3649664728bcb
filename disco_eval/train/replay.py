"""A device-resident FIFO replay buffer of trajectories.

An *entry* is what one actor unroll produces: T+1 steps of E environments
(leaves [T+1, E, ...]). The buffer keeps the last `capacity` entries; sampling
draws entries uniformly with replacement and stacks their trajectories along
the batch axis. Everything is a pure function of arrays (jit/vmap friendly).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class ReplayState(NamedTuple):
  data: Any  # pytree, leaves [capacity, T+1, E, ...]
  next_index: Array  # [] int32 slot of the next insertion
  size: Array  # [] int32 number of valid entries


def init(example_entry: Any, capacity: int) -> ReplayState:
  data = jax.tree.map(lambda x: jnp.zeros((capacity,) + x.shape, x.dtype), example_entry)
  return ReplayState(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def add(state: ReplayState, entry: Any) -> ReplayState:
  """Inserts one entry, overwriting the oldest when full."""
  capacity = jax.tree.leaves(state.data)[0].shape[0]
  data = jax.tree.map(lambda d, x: d.at[state.next_index].set(x), state.data, entry)
  return ReplayState(data, (state.next_index + 1) % capacity, jnp.minimum(state.size + 1, capacity))


def sample(state: ReplayState, rng: Array, num_entries: int) -> Any:
  """`num_entries` entries (with replacement) as one batch [T+1, n*E, ...]."""
  idx = jax.random.randint(rng, (num_entries,), 0, jnp.maximum(state.size, 1))

  def gather(d):
    x = d[idx]  # [n, T+1, E, ...]
    x = jnp.moveaxis(x, 0, 1)  # [T+1, n, E, ...]
    return x.reshape((x.shape[0], -1) + x.shape[3:])

  return jax.tree.map(gather, state.data)
