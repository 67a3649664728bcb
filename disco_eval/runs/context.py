"""What training the seeds of one unit (rule, task) and summarising their runs read."""

import dataclasses
from typing import Any, Callable

from disco_eval.config.train import TrainConfig
from disco_eval.runs.spec import Progress, SweepSpec
from disco_eval.train.trainers import RunTrainer


@dataclasses.dataclass(frozen=True)
class UnitContext:
  """The fixed parts of one unit's training (one object instead of a dozen
  arguments).

  Attributes:
    trainer: the unit's trainer (``train.trainers.RunTrainer``).
    rule: the resolved rule (``label``, ``params``, ``sha256``).
    suite: the suite (``name``, ``normalize``, ``backend``).
    task: the task's name.
    protocol: the protocol (``name``, ``get``).
    cfg: the loop settings.
    spec: the sweep spec (checkpoint cadence).
    on_progress: receives the progress events.
  """

  trainer: RunTrainer
  rule: Any
  suite: Any
  task: str
  protocol: Any
  cfg: TrainConfig
  spec: SweepSpec
  on_progress: Callable[[Progress], None]

  @property
  def steps_per_iteration(self) -> int:
    return self.cfg.steps_per_iteration

  @property
  def env_steps(self) -> int:
    """Env steps each run trains for (whole iterations)."""
    return self.cfg.iterations * self.cfg.steps_per_iteration
