"""The training loop's settings (one frozen dataclass, read by every trainer).

A run's loop settings are resolved from the suite protocol, the rule
manifest's ``[train]`` table and ``--set train.*`` by
:mod:`disco_eval.config.resolve`; the defaults here are those of DiscoRL's
reference Catch example, for tests and small experiments that build a loop
by hand.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Loop settings (defaults: the reference Catch example)."""

  num_envs: int = 2
  rollout_len: int = 29  # actor steps per trajectory (T + 1)
  iterations: int = 1000
  buffer_capacity: int = 1024  # entries
  min_buffer: int = 64  # entries before learning starts
  sample_entries: int = 64  # entries per learner batch
  updates_per_iteration: int = 1
  chunk: int = 25  # iterations per compiled chunk
  vmap_seeds: int = -1  # seeds in one vmapped program: 1 yes, 0 no, -1 auto
  # The batch's trajectories go through the agent in this many slices, one
  # after another (same update up to float rounding; one more forward pass).
  learner_microbatches: int = 1
  # Local devices the run's environments and learner batch are split over.
  devices: int = 1
  # Host-stepped suites: 0, the actor acts with the newest parameters (acting
  # and learning alternate); 1, it collects an iteration with the parameters
  # of one iteration earlier, while the learner updates (docs/host_suites.md).
  # Our choice: 0 by default on every device, so that results never depend on
  # the device; the behaviour logits are recorded either way.
  policy_lag: int = 0

  @property
  def steps_per_iteration(self) -> int:
    return self.num_envs * self.rollout_len
