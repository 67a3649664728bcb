"""Frame stacking: the agent sees the last K observations, each frame stored once.

The agent's input at a step is its last K frames concatenated along the
observation's channel axis (the task's ``frame_axis``: -1, the last, for HWC
images, grids and vectors; 0 for Atari's CHW frames), oldest first: with the
last axis an observation [*o] becomes [*o[:-1], K * o[-1]].
At an episode's start the stack holds the episode's first frame K times and
each later step pushes one frame in, as the usual wrappers do: gym's
``FrameStack`` (gym <= 0.26; gymnasium's ``FrameStackObservation`` with its
default ``padding_type="reset"``) and EnvPool's ``stack_num`` fill the stack
with the reset observation on ``reset``. Frames of an earlier episode never
enter a stack.

The replay buffer keeps each frame once: a trajectory's per-step frames (the
rollout's ``observations``), the K - 1 frames before its first step (its
*history*) and, per step, the steps since its episode started, clipped to
K - 1 (``since_start``). The stacks are built on the device when a batch is
learned from (:func:`stack_batch`): the frame d steps back of step t is
frame t - min(d, since_start[t]) of the history followed by the trajectory.
The actor keeps a window of its last K frames (:func:`reset_window`,
:func:`push`) that follows the same rule, so the learner sees the inputs the
actor acted on. With K = 1 nothing of this is used: entries are plain rollouts.
"""

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from disco_eval.rules.base import Rollout

Array = Any


class StackedEntry(NamedTuple):
  """A replay entry with frame stacking (leaves time-major, E trajectories).

  Attributes:
    rollout: the trajectories, ``observations`` [T+1, E, *o] one frame a step.
    history: [K-1, E, *o] the frames before each trajectory's first step.
    since_start: [T+1, E] int32 steps since the episode started, <= K - 1.
  """

  rollout: Rollout
  history: Array
  since_start: Array


def stacked_shape(shape: tuple[int, ...], k: int, axis: int = -1) -> tuple[int, ...]:
  """The agent's input shape for observations of `shape` stacked `k` times
  along `axis`."""
  shape = list(shape)
  shape[axis % len(shape)] *= k
  return tuple(shape)


def _merge(x, pos: int):
  """`x` with its axes pos and pos + 1 merged into one."""
  return x.reshape(x.shape[:pos] + (x.shape[pos] * x.shape[pos + 1],) + x.shape[pos + 2 :])


def as_input(window: Array, axis: int = -1) -> Array:
  """[N, K, *o] frames (oldest first) -> [N, *o] with `axis` K times longer."""
  pos = 1 + axis % (window.ndim - 2)
  return _merge(jnp.moveaxis(window, 1, pos), pos)


def reset_window(obs: Array, k: int) -> Array:
  """[N, *o] first frames -> [N, K, *o] windows holding each K times."""
  return jnp.repeat(obs[:, None], k, axis=1)


def push(window: Array, obs: Array, first: Array) -> Array:
  """The windows [N, K, *o] after frames `obs` [N, *o] arrive; `first` [N]
  marks frames that start an episode (their window is reset)."""
  pushed = jnp.concatenate([window[:, 1:], obs[:, None].astype(window.dtype)], axis=1)
  fresh = reset_window(obs.astype(window.dtype), window.shape[1])
  mask = first.reshape(first.shape + (1,) * (window.ndim - 1))
  return jnp.where(mask, fresh, pushed)


def next_since(since: Array, first: Array, k: int) -> Array:
  """Steps since the episode started [N] after one step, clipped to k - 1."""
  return jnp.where(first, 0, jnp.minimum(since + 1, k - 1)).astype(jnp.int32)


def stack_batch(entry: StackedEntry, k: int, axis: int = -1) -> Rollout:
  """The rollout of a sampled entry with each step's K-frame stack as its
  observation: [T+1, B, *o] -> [T+1, B, *o] with `axis` K times longer."""
  frames = entry.rollout.observations
  seq = jnp.concatenate([entry.history.astype(frames.dtype), frames], axis=0)  # [K-1+T+1, B, *o]
  steps = jnp.arange(frames.shape[0])[:, None]  # [T+1, 1]
  batch = jnp.arange(frames.shape[1])[None, :]  # [1, B]
  stack = []
  for d in range(k - 1, -1, -1):  # oldest first
    t = (k - 1) + steps - jnp.minimum(d, entry.since_start)  # [T+1, B]
    stack.append(seq[t, batch])
  pos = 2 + axis % (frames.ndim - 2)
  obs = _merge(jnp.stack(stack, axis=pos), pos)
  return entry.rollout._replace(observations=obs)


class HostWindow:
  """The last K frames of N host-stepped environments (numpy), by the rule
  above; a host pool's reset step returns an episode's first frame."""

  def __init__(self, obs: np.ndarray, k: int, axis: int = -1):
    self.k, self.axis = k, axis
    self.window = np.repeat(obs[:, None], k, axis=1)  # [N, K, *o]
    self.since = np.zeros((obs.shape[0],), np.int32)  # [N]

  def input(self) -> np.ndarray:
    """The agent's input [N, *o[:-1], K * o[-1]]."""
    pos = 1 + self.axis % (self.window.ndim - 2)
    return _merge(np.ascontiguousarray(np.moveaxis(self.window, 1, pos)), pos)

  def latest(self) -> np.ndarray:
    """The newest frames [N, *o]."""
    return self.window[:, -1].copy()

  def history(self) -> np.ndarray:
    """The K - 1 frames before the newest, time-major [K-1, N, *o]."""
    return np.ascontiguousarray(np.moveaxis(self.window[:, :-1], 1, 0))

  def push(self, obs: np.ndarray, first: np.ndarray) -> None:
    """Frames `obs` [N, *o] arrive; `first` [N] marks episodes' first frames."""
    self.window = np.concatenate([self.window[:, 1:], obs[:, None]], axis=1)
    self.window[first] = obs[first][:, None]
    self.since = np.where(first, 0, np.minimum(self.since + 1, self.k - 1)).astype(np.int32)
