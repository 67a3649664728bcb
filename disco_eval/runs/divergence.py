"""Divergence: a seed whose loss or parameters became non-finite.

After each chunk, :func:`check_chunk` reads the chunk's losses (``[S, count]``,
counted only where the learner stepped) and asks one jitted reduction whether
each seed's parameters are still finite. A seed seen non-finite for the first
time gets :meth:`~disco_eval.store.RunRecord.note_divergence` with the first
bad iteration (the chunk's last one when only the parameters show it), so
that its run ends ``diverged``, never ``complete``.

Seeds trained together share one program, so a diverged seed keeps being
trained with the others (its numbers are not used); when every seed of the
group has diverged, :class:`GroupDiverged` stops the group at once, carrying
the state so that the final parameters are still evaluated.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class GroupDiverged(Exception):
  """Every seed of a group diverged: training stops after the chunk that
  ended at `iteration`; `state` is the group's state then (stacked, or a list
  per seed)."""

  def __init__(self, state, iteration: int):
    super().__init__(f"every seed diverged by iteration {iteration}")
    self.state = state
    self.iteration = iteration


@jax.jit
def _finite_stacked(params) -> jax.Array:
  """[S] bool: whether every parameter of each seed is finite (leaves [S, ...])."""
  leaves = jax.tree.leaves(params)
  per_leaf = [jnp.isfinite(x.reshape(x.shape[0], -1)).all(axis=1) for x in leaves]
  return jnp.stack(per_leaf).all(axis=0)


@jax.jit
def _finite(params) -> jax.Array:
  """Scalar bool: whether every parameter is finite."""
  return jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(params)]).all()


def params_finite(params) -> bool:
  """Whether every parameter of one seed is finite."""
  return bool(jax.device_get(_finite(params)))


def finite_params(state, stacked: bool, seeds: int) -> np.ndarray:
  """[seeds] bool: whether each seed's parameters are all finite."""
  if stacked:
    return np.asarray(jax.device_get(_finite_stacked(state.params)), bool)
  return np.asarray([params_finite(state[j].params) for j in range(seeds)])


def first_bad_losses(loss: np.ndarray, learned: np.ndarray) -> list[int | None]:
  """Per seed, the index in the chunk of the first non-finite loss among the
  iterations where the learner stepped (loss, learned: [S, count]), or None."""
  bad = np.asarray(learned, bool) & ~np.isfinite(np.asarray(loss, np.float64))
  return [int(np.argmax(row)) if row.any() else None for row in bad]


class _Params(NamedTuple):
  """Stands for a state of which only the parameters are kept."""

  params: Any


class Guard(NamedTuple):
  """What a chunk's divergence check needs of the state at the chunk's end,
  taken without waiting for it: `finite` ([S] bool, a device array being
  computed, or None to compute it from `state` when checked) and `state`
  (the state itself, or for chunks dispatched ahead an object whose
  ``params`` are a copy of the stacked parameters, as the next chunk reuses
  the state's buffers)."""

  finite: Any
  state: Any
  stacked: bool


def guard(state, stacked: bool, ahead: bool) -> Guard:
  """The divergence :class:`Guard` of `state` (a chunk's end state): for a
  chunk whose successor is dispatched before it is checked (`ahead`,
  stacked states only), the finiteness reduction and a copy of the
  parameters are enqueued now."""
  if not ahead:
    return Guard(None, state, stacked)
  if not stacked:
    raise ValueError("only stacked states can be checked ahead")
  params = jax.tree.map(jnp.copy, state.params)
  return Guard(_finite_stacked(state.params), _Params(params), True)


def check_guarded(records, seeds, g: Guard, m, it: int, count: int, spi: int) -> None:
  """:func:`check_chunk` from a :class:`Guard` taken at the chunk's end."""
  finite = None if g.finite is None else np.asarray(jax.device_get(g.finite), bool)
  check_chunk(records, seeds, g.state, g.stacked, m, it, count, spi, finite)


def check_chunk(
  records, seeds, state, stacked: bool, m, it: int, count: int, spi: int, finite=None
) -> None:
  """Notes each seed that diverged in the chunk of iterations ``it ..
  it + count - 1`` (metrics `m` on the host, arrays [S, count]; `spi` env
  steps per iteration) in its record; raises GroupDiverged when every seed of
  the group has now diverged. `finite` ([S] bool) is computed from `state`
  unless given."""
  if finite is None:
    finite = finite_params(state, stacked, len(seeds))
  firsts = first_bad_losses(m.loss[:, :count], m.learned[:, :count])
  bad = [j for j, first in enumerate(firsts) if first is not None or not finite[j]]
  if not bad:  # the usual chunk: no record is read or written
    return
  for j in bad:
    k = firsts[j] if firsts[j] is not None else count - 1
    records[seeds[j]].note_divergence(it + k, (it + k + 1) * spi)
  if all(records[s].divergence is not None for s in seeds):
    raise GroupDiverged(state, it + count)
