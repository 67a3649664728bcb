"""The seeds of one (rule, task) trained together: their states, and how they run.

This is the one place that decides how a group of seeds runs, and the one
object that holds their training states (:class:`SeedGroup`). Sweeps
(``disco_eval.runs``) ask it for a chunk, a seed's state, a seed's parameters
and whether each seed is still finite; they never see how the states are laid
out.

The rule (:func:`how_seeds_run`, decided once per trainer):

* ``train.vmap_seeds = 1``: the seeds run vmapped, in one program over their
  states stacked on a leading axis [S, ...]; ``0``: they take turns, chunk by
  chunk, each seed its own state through one program compiled once.
* ``train.vmap_seeds = -1`` (auto, the default): vmapped on an accelerator,
  taking turns on the CPU. Why, per backend: on a GPU (or TPU) one seed
  rarely fills the device, and one vmapped program runs S seeds in about the
  time of one; on the CPU, XLA's batched matrix products are slower than the
  same products made seed after seed, and a seed taking turns computes
  exactly what it computes alone (its results do not depend on the seeds run
  beside it). Host-stepped tasks follow the same rule on one device (one pool
  of S x E environments, one vmapped policy call and learner:
  :mod:`disco_eval.train.host_batched`); over several devices
  (``train.devices > 1``) their seeds take turns, and ``vmap_seeds = 1`` is
  refused there.
* Chunks are dispatched ahead (the next chunk is enqueued before the previous
  chunk's records are written) for pure-JAX tasks on an accelerator, where
  compiled programs run asynchronously; not on the CPU, where a chunk's call
  returns when it has run (nothing would overlap, and a stop asked for by a
  signal would come a chunk later), nor for host-stepped tasks, whose loop
  runs on the host.

Vmapping changes float rounding only (the program is compiled differently),
not what a seed computes; each run's summary records how many seeds shared
its program (``seeds_in_program``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval.config.train import TrainConfig
from disco_eval.errors import UserError

if TYPE_CHECKING:
  from disco_eval.train.trainers import RunTrainer


@dataclasses.dataclass(frozen=True)
class SeedMode:
  """How the seeds of a group run (see the module docstring).

  Attributes:
    vmapped: one vmapped program over the stacked states (else they take turns).
    ahead: the next chunk is dispatched before the previous chunk's records
      are written.
  """

  vmapped: bool
  ahead: bool


def how_seeds_run(cfg: TrainConfig, host_stepped: bool, backend: str | None = None) -> SeedMode:
  """The rule of the module docstring, for loop settings `cfg` of a
  host-stepped task or not, on `backend` (default: JAX's). Raises UserError
  for ``vmap_seeds = 1`` of a host-stepped task over several devices."""
  accelerator = (backend or jax.default_backend()) != "cpu"
  if host_stepped and cfg.vmap_seeds == 1 and cfg.devices > 1:
    raise UserError(
      "train.vmap_seeds=1 batches host-stepped seeds on one device; "
      "set train.devices=1 or train.vmap_seeds=0"
    )
  if cfg.vmap_seeds >= 0:
    vmapped = bool(cfg.vmap_seeds)
  else:
    vmapped = accelerator and (cfg.devices == 1 or not host_stepped)
  return SeedMode(vmapped=vmapped, ahead=accelerator and not host_stepped)


def stack(trees: list) -> Any:
  """Seeds' states (or any trees) stacked on a leading axis [S, ...] (copies)."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def take(tree: Any, j: int) -> Any:
  """Seed `j`'s part of a tree stacked on a leading axis."""
  return jax.tree.map(lambda x: x[j], tree)


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


class Snapshot:
  """The seeds' parameters at the end of a chunk, for the divergence check
  and the final evaluation of a group stopped early.

  Taken without waiting for the chunk: for a group that dispatches ahead, a
  copy of the parameters (the next chunk reuses the state's buffers) and the
  finiteness reduction are enqueued at once; otherwise the state's own
  parameters are kept and checked when asked.
  """

  def __init__(self, params: Any, vmapped: bool, seeds: int, copy: bool):
    self._vmapped, self.seeds = vmapped, seeds
    self._params = jax.tree.map(jnp.copy, params) if copy else params
    self._finite = self._reduce() if copy else None

  def _reduce(self) -> jax.Array:
    if self._vmapped:
      return _finite_stacked(self._params)
    return jnp.stack([_finite(p) for p in self._params])

  def finite(self) -> np.ndarray:
    """[S] bool: whether each seed's parameters are all finite (waits)."""
    flags = self._finite if self._finite is not None else self._reduce()
    return np.asarray(jax.device_get(flags), bool).reshape(self.seeds)

  def params_of(self, j: int) -> Any:
    """Seed `j`'s parameters."""
    return take(self._params, j) if self._vmapped else self._params[j]

  @property
  def seeds_in_program(self) -> int:
    """How many seeds shared one program (recorded in each run's summary)."""
    return self.seeds if self._vmapped else 1


class SeedGroup:
  """The training states of the seeds of one (rule, task), run as the
  trainer's :class:`SeedMode` says (vmapped, or taking turns).

  `states` gives a seed's state to resume from (a missing or None entry: a
  fresh state, ``trainer.init(seed)``, each seed from its own init).
  """

  def __init__(self, trainer: RunTrainer, seeds, states: dict | None = None):
    self.trainer, self.seeds = trainer, tuple(int(s) for s in seeds)
    self.vmapped, self.ahead = trainer.vmaps_seeds, trainer.dispatches_ahead
    states = states or {}
    fresh = [states.get(s) if states.get(s) is not None else trainer.init(s) for s in self.seeds]
    # Host states hold large replay buffers: no stacked copy unless vmapped.
    self._state = stack(fresh) if self.vmapped else fresh

  def run_chunk(self, rule_params, start: int, count: int) -> Any:
    """Iterations [start, start + count) of every seed; returns the chunk's
    metrics [S, chunk] (rows past `count` inactive; device arrays may still
    be computing)."""
    run = self.trainer.run_vmapped if self.vmapped else self.trainer.run_turns
    self._state, m = run(self._state, rule_params, start, count)
    return m

  def state_of(self, j: int) -> Any:
    """Seed `j`'s (the j-th of `seeds`) training state, as one seed's
    checkpoint holds it."""
    return take(self._state, j) if self.vmapped else self._state[j]

  def params_of(self, j: int) -> Any:
    """Seed `j`'s agent parameters."""
    return take(self._state.params, j) if self.vmapped else self._state[j].params

  def snapshot(self) -> Snapshot:
    """The parameters now (see :class:`Snapshot`)."""
    params = self._state.params if self.vmapped else [s.params for s in self._state]
    return Snapshot(params, self.vmapped, len(self.seeds), copy=self.ahead)

  def block(self) -> None:
    """Waits until every seed's state is computed."""
    jax.block_until_ready(self._state)

  @property
  def seeds_in_program(self) -> int:
    """How many seeds share one program (recorded in each run's summary)."""
    return len(self.seeds) if self.vmapped else 1
