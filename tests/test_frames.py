"""Frame stacking: the stacks the learner builds from stored frames are the
ones the actor acted on, and each frame is stored once."""

import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.rules.base import Rollout
from disco_eval.train import frames


def _episodes(steps: int, envs: int, rng) -> tuple[np.ndarray, np.ndarray]:
  obs = rng.integers(0, 255, size=(steps, envs, 3, 2)).astype(np.uint8)
  first = rng.random((steps, envs)) < 0.25
  first[0] = True
  return obs, first


@pytest.mark.parametrize("axis", [-1, 0])
def test_learner_stacks_match_the_actor_windows(axis):
  k, envs, t, start = 4, 3, 6, 5
  obs, first = _episodes(start + t, envs, np.random.default_rng(0))
  window = frames.HostWindow(obs[0], k, axis)
  inputs, since, history = [window.input()], [window.since.copy()], None
  for i in range(1, start + t):
    window.push(obs[i], first[i])
    if i == start:
      history = window.history()  # the K - 1 frames before the newest
    inputs.append(window.input())
    since.append(window.since.copy())
  zeros = np.zeros((t, envs), np.float32)
  rollout = Rollout(obs[start:], zeros, zeros, zeros, np.zeros((t, envs, 2), np.float32))
  entry = frames.StackedEntry(rollout, history, np.stack(since[start:]))
  built = np.asarray(frames.stack_batch(entry, k, axis).observations)
  assert built.shape == (t, envs) + frames.stacked_shape((3, 2), k, axis)
  np.testing.assert_array_equal(built, np.stack(inputs[start:]))
  # The stored entry holds T + K - 1 frames per trajectory, not T * K.
  assert entry.rollout.observations.shape[0] + entry.history.shape[0] == t + k - 1


def test_device_window_follows_the_host_rule():
  k, envs = 3, 2
  obs, first = _episodes(8, envs, np.random.default_rng(1))
  host = frames.HostWindow(obs[0], k)
  device = frames.reset_window(jnp.asarray(obs[0]), k)
  since = jnp.zeros((envs,), jnp.int32)
  for i in range(1, 8):
    host.push(obs[i], first[i])
    device = frames.push(device, jnp.asarray(obs[i]), jnp.asarray(first[i]))
    since = frames.next_since(since, jnp.asarray(first[i]), k)
    np.testing.assert_array_equal(np.asarray(frames.as_input(device)), host.input())
    np.testing.assert_array_equal(np.asarray(since), host.since)


def test_a_new_episode_stacks_its_first_frame():
  obs = np.arange(4 * 1 * 1, dtype=np.float32).reshape(4, 1, 1)
  window = frames.HostWindow(obs[0], 3)
  window.push(obs[1], np.array([False]))
  window.push(obs[2], np.array([True]))
  assert window.input().tolist() == [[2.0, 2.0, 2.0]]
  window.push(obs[3], np.array([False]))
  assert window.input().tolist() == [[2.0, 2.0, 3.0]]


def test_stacked_shape():
  assert frames.stacked_shape((64, 64, 3), 4) == (64, 64, 12)
  assert frames.stacked_shape((10,), 1) == (10,)
  assert frames.stacked_shape((1, 84, 84), 4, axis=0) == (4, 84, 84)
