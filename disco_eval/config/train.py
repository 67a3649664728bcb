"""The training loop's settings (one frozen dataclass, read by every trainer).

Each loop setting is declared here once, as a field of :class:`TrainConfig`
with its default, range, help line and how records treat it
(:func:`disco_eval.config.setting.setting`); the ``--set train.*`` names,
the checks, the label and the docs' table are derived from it. A run's loop
settings are resolved from the suite protocol, the rule manifest's
``[train]`` table and ``--set train.*`` by :mod:`disco_eval.config.resolve`;
the defaults here are those of DiscoRL's reference Catch example, for tests
and small experiments that build a loop by hand.
"""

import dataclasses
from typing import Any, Mapping

from disco_eval.config.setting import AT_LEAST_2, LAG, POSITIVE_INT, VMAP, declared, setting


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Loop settings (defaults: the reference Catch example)."""

  num_envs: int = setting(2, POSITIVE_INT, "environments the actor steps together")
  rollout_len: int = setting(29, AT_LEAST_2, "actor steps per trajectory (T + 1)")
  iterations: int = setting(
    1000,
    POSITIVE_INT,
    "iterations of the run: the budget over steps per iteration, rounded up",
    measured=False,
    settable=False,
  )
  buffer_capacity: int = setting(1024, POSITIVE_INT, "replay entries kept")
  min_buffer: int = setting(64, POSITIVE_INT, "replay entries before learning starts")
  sample_entries: int = setting(64, POSITIVE_INT, "replay entries per learner batch")
  updates_per_iteration: int = setting(1, POSITIVE_INT, "learner steps per iteration")
  chunk: int = setting(25, POSITIVE_INT, "iterations per compiled chunk", measured=False)
  vmap_seeds: int = setting(-1, VMAP, "seeds in one vmapped program: 1 yes, 0 no, -1 auto")
  learner_microbatches: int = setting(
    1,
    POSITIVE_INT,
    "slices the learner batch goes through the agent in, one after another "
    "(same update up to float rounding; one more forward pass)",
    later=True,
  )
  devices: int = setting(
    1, POSITIVE_INT, "local devices the environments and learner batch are split over", later=True
  )
  # Our choice: 0 by default on every device, so that results never depend on
  # the device; the behaviour logits are recorded either way.
  policy_lag: int = setting(
    0,
    LAG,
    "host-stepped suites: 0, the actor acts with the newest parameters; 1, it collects "
    "an iteration with those of one iteration earlier while the learner updates "
    "(docs/host_suites.md)",
    labelled=True,
    later=True,
  )

  @property
  def steps_per_iteration(self) -> int:
    return self.num_envs * self.rollout_len

  @property
  def learner_batch(self) -> int:
    """Trajectories in one learner batch: ``sample_entries * num_envs``."""
    return self.sample_entries * self.num_envs

  def describe(self) -> str:
    """The loop's sizes in words (``8 envs x 29 steps per iteration, ...``)."""
    return (
      f"{self.num_envs} envs x {self.rollout_len} steps per iteration, "
      f"{self.updates_per_iteration} learner step(s) of {self.learner_batch} trajectories"
    )


LOOP_SETTINGS = declared(TrainConfig)
# The names ``--set train.NAME`` and a rule manifest's [train] table may set.
TRAIN_KEYS = tuple(s.name for s in LOOP_SETTINGS if s.settable)


def steps_per_iteration_of(train: Mapping[str, Any] | None) -> int:
  """Env steps per iteration of a stored config's ``train`` table (1 when
  unknown, as in records without one)."""
  try:
    return max(1, int(train["num_envs"]) * int(train["rollout_len"]))  # type: ignore[index]
  except (KeyError, TypeError, ValueError):
    return 1
