"""Which interval an aggregate shows, and the one-task case.

Over several tasks an aggregate's interval is the stratified percentile
bootstrap (``stats.interval_estimates``). Over ONE task (Crafter, NetHack,
Sokoban, Catch) the bootstrap resamples n seed values only: n values have
``comb(2n - 1, n)`` distinct resamples (3 seeds: 10), so its percentile
interval is too narrow and moves in large steps. There:

* ``mean`` and ``og`` (a mean of ``max(0, 1 - x)``) get the Student-t
  interval over seeds (``n - 1`` degrees of freedom);
* ``iqm`` and ``median`` keep the bootstrap only when n seeds give at least
  :data:`MIN_DISTINCT_RESAMPLES` distinct resamples (n >= 5), else they get
  no interval (NaN bounds);
* a warning says so when seeds < :data:`MIN_SEEDS_ONE_TASK`.

:func:`interval_name` is the phrase tables, CSV rows, JSON and plot captions
use for the interval they show.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from disco_eval.analysis import stats

MIN_DISTINCT_RESAMPLES = 100
MIN_SEEDS_ONE_TASK = 5
BOOTSTRAP = "stratified bootstrap, percentile"
STUDENT_T = "Student-t over seeds (n-1 dof)"


def distinct_resamples(n: int) -> int:
  """Distinct resamples (multisets) of n values drawn with replacement."""
  return math.comb(2 * n - 1, n) if n > 0 else 0


def interval_name(metric: str, seeds: int, tasks: int) -> str:
  """The interval an aggregate of `metric` over `seeds` x `tasks` shows."""
  if tasks != 1:
    return BOOTSTRAP
  if metric in ("mean", "og"):
    return STUDENT_T
  if distinct_resamples(seeds) >= MIN_DISTINCT_RESAMPLES:
    return f"{BOOTSTRAP} ({distinct_resamples(seeds)} distinct resamples)"
  return (
    f"none: {seeds} seeds give {distinct_resamples(seeds)} distinct bootstrap resamples "
    f"(< {MIN_DISTINCT_RESAMPLES})"
  )


def one_task_rows(rows: Sequence, matrices: Mapping[str, np.ndarray], confidence: float) -> list:
  """Aggregate rows (``AggregateRow``) of a one-task group with the intervals above;
  rows of a group of several tasks are returned unchanged (their `interval` set)."""
  out = []
  for row in rows:
    matrix = matrices[row.rule]
    name = interval_name(row.metric, matrix.shape[0], matrix.shape[1])
    if name == STUDENT_T:
      values = matrix[:, 0] if row.metric == "mean" else np.maximum(0.0, 1.0 - matrix[:, 0])
      est = stats.t_interval(values, confidence)
      row = dataclasses.replace(row, point=est.mean, lo=est.lo, hi=est.hi)
    elif name.startswith("none"):
      row = dataclasses.replace(row, lo=math.nan, hi=math.nan)
    out.append(dataclasses.replace(row, interval=name))
  return out


def one_task_warnings(matrices: Mapping[str, np.ndarray]) -> list[str]:
  """A warning per rule of a one-task group with fewer than 5 seeds."""
  return [
    f"rule {rule}: one task and {m.shape[0]} seed(s): the aggregate intervals are Student-t "
    f"over seeds (mean, optimality gap) and none for IQM and median "
    f"({distinct_resamples(m.shape[0])} distinct bootstrap resamples); "
    f"run {MIN_SEEDS_ONE_TASK} or more seeds"
    for rule, m in matrices.items()
    if m.shape[1] == 1 and m.shape[0] < MIN_SEEDS_ONE_TASK
  ]


def caption_note(rows: Sequence) -> str:
  """``; over one task the aggregate intervals are ...`` for aggregate rows
  that are not bootstrapped ('' when all are)."""
  names = sorted({f"{r.metric}: {r.interval}" for r in rows if r.interval != BOOTSTRAP})
  return f"; over one task the aggregate intervals are {'; '.join(names)}" if names else ""
