"""What a sweep runs and what it reports: the spec, units, events and results.

These are small, picklable values: a cluster worker (``disco_eval.launch``)
gets a :class:`SweepSpec` and a :class:`Unit` and runs it from those alone.
"""

import dataclasses
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """What to run."""

  suite: str
  rules: tuple[str, ...] = ("disco103",)
  seeds: tuple[int, ...] = (0, 1, 2)
  tasks: tuple[str, ...] = ()
  steps: int | None = None  # env-step budget override
  protocol: str | None = None
  out: Path = Path("results")
  overrides: tuple[tuple[str, str], ...] = ()  # ("table.key", "value")
  # chunks between checkpoints; None: 10 on the CPU, none on accelerators
  # (runtime.checkpoint_every)
  checkpoint_every: int | None = None
  checkpoint_minutes: float = 10.0  # wall-clock minutes between checkpoints
  memory_check: bool = True  # a local sweep projects each unit's memory first (runs.memory)


@dataclasses.dataclass
class Progress:
  """An event for progress displays."""

  # "plan" | "start" | "chunk" | "done" | "skip" | "failed" | "resume" | "busy"
  # | "retry" (a launcher submits a unit again)
  kind: str
  rule: str
  task: str
  seeds: tuple[int, ...]
  env_steps: int = 0
  total_steps: int = 0
  steps_per_s: float = 0.0
  latest_return: float = float("nan")  # over the seeds
  latest_returns: dict[int, float] = dataclasses.field(default_factory=dict)  # per seed
  message: str = ""


@dataclasses.dataclass
class RunResult:
  rule: str
  task: str
  seed: int
  # "complete" | "diverged" | "skipped" | "failed" | "busy" (being written by another
  # process: not touched here)
  status: str
  path: Path
  summary: dict[str, Any] | None = None
  error: str | None = None


@dataclasses.dataclass(frozen=True)
class Unit:
  """One unit of work: the seeds of one (rule, task) trained together.

  `rule_index` is the rule's index in ``SweepSpec.rules`` and `label` its label;
  `overrides` are the spec's overrides that apply to this rule (scoped, with
  aliases expanded); `env_steps` is each run's step budget (for displays).
  """

  rule_index: int
  label: str
  task: str
  seeds: tuple[int, ...]
  overrides: tuple[tuple[str, str], ...] = ()
  env_steps: int = 0
