"""The training loop's settings and the optimiser's, each declared once.

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

from disco_eval.config.setting import (
  AT_LEAST_2,
  LAG,
  NON_NEGATIVE,
  NON_NEGATIVE_INT,
  POSITIVE,
  POSITIVE_INT,
  UNIT_OPEN,
  VMAP,
  declared,
  setting,
)


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
  frame_stack: int = setting(
    1,
    POSITIVE_INT,
    "last observations the agent sees, stacked along the channel axis (reset at episode "
    "starts; the replay buffer keeps each frame once)",
    labelled=True,
    later=True,
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

  @property
  def learner_batch_shape(self) -> tuple[int, int]:
    """(T + 1 steps, trajectories) of one learner batch; the time axis is also a
    trajectory's length as the actor collects it."""
    return self.rollout_len, self.learner_batch

  @property
  def env_steps_per_learner_step(self) -> float:
    """Env steps the actors take per learner step (``steps_per_iteration /
    updates_per_iteration``): the factor that converts a schedule stated in
    env steps (as the paper's Extended Data Table 6 states them) into the
    optimiser's count of learner steps."""
    return self.steps_per_iteration / self.updates_per_iteration

  @property
  def budget_env_steps(self) -> int:
    """The run's env steps: ``iterations * steps_per_iteration``."""
    return self.iterations * self.steps_per_iteration

  def describe(self) -> str:
    """The loop's sizes in words (``8 envs x 29 steps per iteration, ...``)."""
    return (
      f"{self.num_envs} envs x {self.rollout_len} steps per iteration, "
      f"{self.updates_per_iteration} learner step(s) of {self.learner_batch} trajectories"
    )


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """The keys of a rule manifest's ``[optimizer]`` table, read by
  :func:`disco_eval.train.optim.make_optimizer` (Adam with optional
  clipping). The values live in the manifests; a key a manifest leaves out
  takes the default here (``learning_rate`` has none: every manifest sets it)."""

  learning_rate: float = setting(
    dataclasses.MISSING, POSITIVE, "Adam's step size (the schedule's initial value)"
  )
  lr_schedule: str = setting(
    "constant",
    None,
    "learning-rate schedule: constant, or cosine (linear warm-up from 0, then cosine decay "
    "to lr_end)",
    labelled=True,
    later=True,
  )
  lr_end: float = setting(
    0.0, NON_NEGATIVE, "cosine: the learning rate at the horizon", labelled=True, later=True
  )
  lr_warmup_env_steps: int = setting(
    0, NON_NEGATIVE_INT, "cosine: env steps of linear warm-up from 0", labelled=True, later=True
  )
  lr_horizon_env_steps: int = setting(
    0,
    NON_NEGATIVE_INT,
    "cosine: env steps from the start to the end of the decay (0: the run's budget)",
    labelled=True,
    later=True,
  )
  weight_decay: float = setting(
    0.0,
    NON_NEGATIVE,
    "decoupled weight decay, times the scheduled learning rate (as optax.adamw)",
    labelled=True,
    later=True,
  )
  max_abs_update: float = setting(1.0, NON_NEGATIVE, "elementwise clipping of the update (0: none)")
  max_grad_norm: float = setting(
    0.0, NON_NEGATIVE, "global-norm clipping of the gradient (0: none)"
  )
  b1: float = setting(0.9, UNIT_OPEN, "Adam's first-moment decay")
  b2: float = setting(0.999, UNIT_OPEN, "Adam's second-moment decay")
  eps: float = setting(1e-8, POSITIVE, "Adam's denominator offset")

  @classmethod
  def from_table(cls, table: Mapping[str, Any]) -> "OptimizerSettings":
    """The settings of an ``[optimizer]`` table, each value as its declared type."""
    return cls(
      **{
        s.name: s.parse(f"optimizer.{s.name}", table[s.name])
        for s in OPTIMIZER_SETTINGS
        if s.name in table
      }
    )


LOOP_SETTINGS = declared(TrainConfig)
OPTIMIZER_SETTINGS = declared(OptimizerSettings)
# The names ``--set train.NAME`` and a rule manifest's [train] table may set.
TRAIN_KEYS = tuple(s.name for s in LOOP_SETTINGS if s.settable)


def steps_per_iteration_of(train: Mapping[str, Any] | None) -> int:
  """Env steps per iteration of a stored config's ``train`` table (1 when
  unknown, as in records without one)."""
  try:
    return max(1, int(train["num_envs"]) * int(train["rollout_len"]))  # type: ignore[index]
  except (KeyError, TypeError, ValueError):
    return 1
