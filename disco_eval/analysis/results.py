"""The results of a comparison: per-task rows, aggregate rows, probabilities of
improvement, one group's result and the whole comparison, with their strict JSON
form (non-finite numbers become null).

:func:`disco_eval.analysis.compare.compare` builds them; :mod:`render`,
:mod:`export` and :mod:`plots` read them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from disco_eval.analysis import evaluation, stats
from disco_eval.analysis.collect import Excluded, GroupKey
from disco_eval.analysis.published import PublishedRow
from disco_eval.analysis.rule_kinds import RuleCategory

PER_TASK_CI = "Student-t"


@dataclasses.dataclass(frozen=True)
class TaskRow:
  """Per-task statistics of one rule over its seeds."""

  task: str
  rule: str
  seeds: tuple[int, ...]
  score: stats.Estimate
  normalized: stats.Estimate
  beside: Mapping[str, float] = dataclasses.field(default_factory=dict)  # mean over seeds


@dataclasses.dataclass(frozen=True)
class AggregateRow:
  """One aggregate metric of one rule, with its bootstrap interval.

  For published rows ``lo``/``hi`` are NaN when only a point is available.
  """

  rule: str
  metric: str
  point: float
  lo: float
  hi: float
  seeds: int
  published: bool = False
  # The interval lo/hi are (analysis.intervals.interval_name).
  interval: str = "stratified bootstrap, percentile"


@dataclasses.dataclass(frozen=True)
class ImprovementRow:
  """P(X > Y) with its bootstrap interval."""

  x: str
  y: str
  point: float
  lo: float
  hi: float


@dataclasses.dataclass
class GroupResult:
  """Everything :func:`compare` reports for one suite and protocol."""

  key: GroupKey
  protocol_name: str
  env_steps: tuple[int, ...]
  metric: str
  rules: tuple[str, ...]
  tasks: tuple[str, ...]
  aggregate_tasks: tuple[str, ...]
  seeds: dict[str, int]
  per_task: list[TaskRow]
  aggregate: list[AggregateRow]
  improvement: list[ImprovementRow]
  published: list[PublishedRow]
  published_aggregate: list[AggregateRow]
  matrices: dict[str, np.ndarray]
  matrix_seeds: dict[str, tuple[int, ...]]
  warnings: list[str]
  # What the normalised score is called (a suite without normalisation, e.g.
  # NetHack's single task, aggregates raw scores and says so).
  norm_label: str = "normalised"
  # Per rule label: its category and whether the suite is held out for it.
  kinds: dict[str, RuleCategory] = dataclasses.field(default_factory=dict)
  # Per rule label: the backends its runs trained on (runtime.backend_label), joined.
  backends: dict[str, str] = dataclasses.field(default_factory=dict)
  # The env steps the runs' training curves were read at (None: final scores).
  read_at: int | None = None
  # The budget published rows must match: `read_at`, else the runs' budget.
  budget: int | None = None
  # Lines every table and caption of the group carries besides the labels
  # (compare --select: the value kept per rule, and how; analysis.select).
  notes: list[str] = dataclasses.field(default_factory=list)
  # How the runs were measured: (policy, estimator) (analysis.evaluation).
  measure: tuple[str, str] = ("sampling", "final-policy evaluation")

  @property
  def comparable_published(self) -> list[PublishedRow]:
    """The published rows that measured what the runs did (the others are
    shown marked "not comparable" and enter no aggregate)."""
    return [p for p in self.published if p.comparable]

  @property
  def source(self) -> str:
    """Where the runs' scores come from: the final evaluation, or the curve."""
    if self.read_at is None:
      return "final evaluation of the trained policy"
    return f"read from the training curve at {self.read_at:,} steps"


@dataclasses.dataclass
class CompareResult:
  """The result of :func:`compare`: one :class:`GroupResult` per suite and
  protocol, the excluded runs, and warnings that concern all groups."""

  roots: tuple[Path, ...]
  metrics: tuple[str, ...]
  reps: int
  seed: int
  confidence: float
  groups: list[GroupResult]
  excluded: list[Excluded]
  warnings: list[str]
  # Whether diverged runs were counted at their evaluated score (else
  # excluded), how many were counted, and the line that says so.
  include_diverged: bool = False
  diverged_counted: int = 0
  diverged_note: str | None = None
  # compare --select: the value kept per rule and group, and its candidates
  # (disco_eval.analysis.select.Selection).
  selections: list = dataclasses.field(default_factory=list)

  def to_json(self) -> dict:
    """A JSON-able dict (NaN and infinities become null)."""
    return _jsonable(
      {
        "root": self.roots[0],
        "roots": list(self.roots),
        "settings": {
          "metrics": list(self.metrics),
          "reps": self.reps,
          "seed": self.seed,
          "confidence": self.confidence,
          "aggregate_ci": "stratified bootstrap, percentile; over one task see each "
          "aggregate row's interval (analysis.intervals)",
          "per_task_ci": f"{PER_TASK_CI} over seeds (n-1 degrees of freedom)",
          "diverged_runs": "counted at evaluated score" if self.include_diverged else "excluded",
          "diverged_counted": self.diverged_counted,
          "diverged_excluded": sum(e.reason == "diverged" for e in self.excluded),
        },
        "groups": [_group_json(g) for g in self.groups],
        "excluded": [dataclasses.asdict(e) for e in self.excluded],
        "warnings": self.warnings,
        "selection": [s.to_json() for s in self.selections],
      }
    )


def _group_json(group: GroupResult) -> dict:
  """JSON form of a group (matrices as lists of rows, seeds labelled)."""
  doc = {
    "suite": group.key.suite,
    "protocol": group.key.protocol,
    "protocol_name": group.protocol_name,
    "env_steps": list(group.env_steps),
    "metric": group.metric,
    "rules": list(group.rules),
    "tasks": list(group.tasks),
    "aggregate_tasks": list(group.aggregate_tasks),
    "seeds": group.seeds,
    "per_task": [
      {
        "task": r.task,
        "rule": r.rule,
        "seeds": list(r.seeds),
        "num_seeds": len(r.seeds),
        "score": r.score._asdict(),
        "normalized_score": r.normalized._asdict(),
        "beside": dict(r.beside),
      }
      for r in group.per_task
    ],
    "aggregate": [dataclasses.asdict(r) for r in group.aggregate],
    "probability_of_improvement": [dataclasses.asdict(r) for r in group.improvement],
    "published": [
      dict(
        dataclasses.asdict(r),
        published=True,
        held_out="published",
        comparability=evaluation.verdict(r.comparable, r.reason),
      )
      for r in group.published
    ],
    "published_aggregate": [dataclasses.asdict(r) for r in group.published_aggregate],
    "matrices": {
      rule: {
        "seeds": list(group.matrix_seeds[rule]),
        "tasks": list(group.aggregate_tasks),
        "normalized_scores": m.tolist(),
      }
      for rule, m in group.matrices.items()
    },
    "warnings": group.warnings,
    "notes": group.notes,
    "measured": {
      "policy": group.measure[0],
      "estimator": group.measure[1],
      "selection": "compare --select: see notes" if group.notes else "none",
    },
    "normalized_label": group.norm_label,
    "rule_kinds": {
      rule: {
        "category": k.category,
        "held_out": k.held_out,
        "discovered_on": list(k.discovered_on),
        **({"near": k.near_note} if k.near_note else {}),
      }
      for rule, k in group.kinds.items()
    },
    "backends": group.backends,
    "read_at": group.read_at,
    "source": group.source,
    "budget": group.budget,
  }
  return doc


def _jsonable(value: Any) -> Any:
  """`value` with NaN/inf -> None, paths -> str, tuples -> lists, numpy ->
  Python."""
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, np.generic):
    return _jsonable(value.item())
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, Path):
    return str(value)
  return value
