"""The environment contracts: what a suite task must provide to be trained on.

There are two kinds of task, by where their environments step:

* :class:`JaxEnv`: a pure-JAX environment (Catch, Sokoban). ``reset`` and
  ``step`` act on ONE environment and are pure functions of arrays, so the
  trainer vmaps them over environments and runs the whole loop inside one
  jitted program (:mod:`disco_eval.train.loop`).
* :class:`HostTask`: a task whose environments step on the host (ProcGen
  through EnvPool, Crafter and NetHack in worker processes). It makes
  :class:`HostPool` s, batches of auto-resetting environments that the host
  trainer steps with numpy actions (:mod:`disco_eval.train.host_loop`).

Both kinds share the declared parts of :class:`EnvSpec`: the action count,
the observation shape and dtype, and the optional parts with their defaults
(reproducibility, per-episode columns, a score computed from training
episodes). A task overrides a default by setting the class attribute; no
caller probes for an attribute that the contract does not declare.

Step convention (both kinds): the step that ends an episode returns its
final reward with ``last`` set (``truncated`` too when a time limit ended it).
A pure-JAX env returns the next episode's first observation on that same
step; a host pool returns the episode's final observation and makes the next
step a *reset step* (action ignored, reward 0, first observation of a new
episode).

A backend is registered in :mod:`disco_eval.envs.registry` (suite manifest
``backend`` -> factory of its tasks).
"""

import abc
import contextlib
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np


class TimeStep(NamedTuple):
  """What an actor of a pure-JAX env sees after a step (one environment).

  Attributes:
    observation: [*observation_shape] float32.
    reward: [] float32, reward that arrived with this step.
    last: [] bool, this step ended an episode.
    truncated: [] bool, the episode was ended by a time limit; None for
      envs without one (Catch), so that their state carries no such leaf.
  """

  observation: Any
  reward: Any
  last: Any
  truncated: Any = None


class EnvSpec(abc.ABC):
  """What every task declares, whichever kind it is.

  Attributes:
    name: the task's name (as in the suite manifest).
    num_actions: size of the discrete action space.
    observation_shape: shape of one environment's observation.
    observation_dtype: how observations are stored (host tasks keep them in
      this dtype in the replay buffer; pure-JAX envs emit float32).
    reproducible: False when the same seed does not replay the same
      episodes (NetHackChallenge-v0 refuses seeding); run records say so.
    episode_columns: names of per-episode figures the pools report on the
      step that ends an episode (:attr:`HostPool.episode_infos`); every
      iteration's metrics carry their sums over the episodes that ended.
    scores_training_episodes: the task implements
      :meth:`score_from_training` (protocols whose ``score_from`` is
      "training episodes", e.g. Crafter's score).
    frame_axis: the observation's channel axis, along which frame stacking
      (``train.frame_stack``) concatenates the last K observations: -1 for
      HWC images, grids and vectors; 0 for CHW images.
  """

  name: str
  num_actions: int
  observation_shape: tuple[int, ...]
  observation_dtype: Any = np.float32
  reproducible: bool = True
  episode_columns: tuple[str, ...] = ()
  scores_training_episodes: bool = False
  frame_axis: int = -1

  def score_from_training(self, rows: Sequence[dict], protocol: Any) -> dict[str, Any]:
    """A protocol's figures from a run's metrics rows (one per iteration);
    must hold ``score``. Only for tasks with ``scores_training_episodes``."""
    raise NotImplementedError(f"task '{self.name}' does not score training episodes")


class JaxEnv(EnvSpec):
  """A pure-JAX environment; ``reset`` and ``step`` act on one environment
  (batched by ``jax.vmap``) and auto-reset: the step that ends an episode
  already returns the next episode's first observation."""

  @abc.abstractmethod
  def reset(self, rng: Any) -> tuple[Any, TimeStep]:
    """A fresh environment from PRNG key `rng`: (state, first TimeStep)."""

  @abc.abstractmethod
  def step(self, state: Any, action: Any) -> tuple[Any, TimeStep]:
    """One step with `action` ([] int32): (next state, TimeStep)."""

  def device_data(self) -> Any:
    """The large arrays ``reset`` and ``step`` read (a pytree; Sokoban's level
    table), or None. A trainer passes them to its compiled programs as an
    argument and traces the env inside ``with env.reading(data):``, so they
    are device data, not constants of the program."""
    return None

  @contextlib.contextmanager
  def reading(self, data: Any) -> Iterator[None]:
    """While the block runs, ``reset`` and ``step`` read `data` (what
    ``device_data`` returns, or a tracer of it) instead of the env's own."""
    del data
    yield


class HostPool(abc.ABC):
  """`num_envs` auto-resetting environments stepped on the host.

  Attributes:
    num_envs: E, the environments stepped together.
    observation_shape: shape of one environment's observation.
    episode_infos: after each ``step``, ``(env_index, {column: number})``
      for the episodes that ended in it (the task's ``episode_columns``);
      empty for pools that report none.
    supports_force_reset: the pool implements :meth:`force_reset`
      (evaluation caps on episode length need it).
  """

  num_envs: int
  observation_shape: tuple[int, ...]
  episode_infos: Sequence[tuple[int, dict]] = ()
  supports_force_reset: bool = False

  @abc.abstractmethod
  def reset(self) -> np.ndarray:
    """Starts new episodes in all environments; returns obs [E, *obs_shape]."""

  @abc.abstractmethod
  def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One step of every environment with actions [E] int.

    Returns obs [E, *obs_shape], reward [E] float32 (arrived with obs), last
    [E] bool (this step ended an episode) and truncated [E] bool (a time
    limit ended it).
    """

  def send(self, actions: Any) -> None:
    """Starts a ``step`` with actions [E] whose results :meth:`recv` returns
    (pools of several seeds start all of theirs before waiting for any).
    Default: steps at once; pools that can step in the background override
    ``send`` and ``recv`` together."""
    self._sent = self.step(actions)

  def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The results of the step that :meth:`send` started, as ``step`` returns them."""
    out, self._sent = self._sent, None
    return out

  def force_reset(self, mask: Any) -> None:
    """The next step of the environments in `mask` [E] bool is a reset step
    (only for pools with ``supports_force_reset``)."""
    raise NotImplementedError(f"{type(self).__name__} cannot force resets")

  def close(self) -> None:  # noqa: B027 - optional: pools holding nothing need not close
    """Releases the environments (threads, processes); idempotent."""


class HostTask(EnvSpec):
  """A task whose environments step on the host, in pools it makes."""

  observation_dtype: Any = np.uint8

  @abc.abstractmethod
  def pool(
    self, num_envs: int, seed: int, protocol: Any = None, evaluation: bool = False
  ) -> HostPool:
    """`num_envs` environments seeded by `seed`, on the protocol's training
    levels or, with `evaluation`, on its evaluation levels (the task reads
    them from the protocol's settings)."""
