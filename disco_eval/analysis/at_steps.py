"""A run's training curve read at a given budget (``compare --at STEPS``).

A run logs one ``metrics.csv`` row per iteration: its ``env_steps`` so far,
the ``episodes`` that ended in the iteration and their mean return
``avg_return``. **The curve's value at STEPS** is the episode-weighted mean of
``avg_return`` over the rows with ``(1 - WINDOW) * STEPS < env_steps <=
STEPS``, i.e. the mean return of the training episodes that ended in the last
5% of the first STEPS env steps; the last row at or before STEPS is always in
it, so an iteration larger than the window still gives a value. Rows after
STEPS are never read.

WINDOW = 0.05 is our choice: one iteration ends too few episodes on some
suites for a stable number, and a window of 5% of the budget stays at the
budget (on a rising curve its mean lies below the value at STEPS by at most
the rise over that last 5%). These are training episodes of the behaviour
policy, not evaluation episodes of the final policy: rows read this way are
labelled "read from the training curve at N steps" in every report, and
their metric is ``return``.

A run that never reached STEPS, or that ended no episode in the window, is
refused with a one-line error: nothing is extrapolated.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from disco_eval.analysis import collect, curves, published
from disco_eval.errors import UserError

WINDOW = 0.05
CURVE_METRIC = "return"
_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}
_STEPS_RE = re.compile(r"(\d+(?:\.\d*)?(?:e\d+)?)([kmbg]?)")


def parse_steps(text: str | int, option: str = "--at", bits: int = 53) -> int:
  """A budget as env steps: ``1000000``, ``1_000_000``, ``1e6``, ``1M``,
  ``50M``, ``2.5M``, ``100k``, ``2B``, at most ``2**bits``; a UserError
  naming `option` for anything else."""
  if isinstance(text, int) and not isinstance(text, bool):
    value = float(text)
  else:
    match = _STEPS_RE.fullmatch(str(text).strip().lower().replace("_", "").replace(",", ""))
    if match is None:
      raise UserError(
        f"{option} {text}: not a number of env steps; use e.g. 1000000, 1e6, 1M or 50M"
      )
    value = float(match.group(1)) * _UNITS[match.group(2)]
  if not 1 <= value <= 2**bits:  # inf and nan too: 1e309 is inf
    raise UserError(
      f"{option} {text}: env steps must be a whole number in [1, 2^{bits}]; e.g. {option} 1M"
    )
  if value != int(value):
    raise UserError(f"{option} {text}: env steps must be a positive whole number")
  return int(value)


def at_phrase(steps: int) -> str:
  """``read from the training curve at 1,000,000 steps``."""
  return f"read from the training curve at {steps:,} steps"


def value_at(run: collect.Run, steps: int) -> float:
  """The run's training curve at `steps` env steps (see the module docstring).

  Raises:
    UserError: the run never reached `steps`, or ended no episode in the window.
  """
  logged, episodes, returns = curves.read_curve(run)
  reached = int(logged.max())
  if reached < steps:
    raise UserError(
      f"run {run.path} reached {reached:,} env steps, short of --at {steps:,}; "
      "pass a smaller --at, or leave its runs out with --rules/--protocol"
    )
  upto = logged <= steps
  last = logged[upto].max() if upto.any() else -1.0
  inside = upto & ((logged > (1.0 - WINDOW) * steps) | (logged == last))
  ok = inside & np.isfinite(returns) & (episodes > 0)
  if not ok.any():
    raise UserError(
      f"run {run.path}: no training episode ended between {(1.0 - WINDOW) * steps:,.0f} and "
      f"{steps:,} env steps; no curve value at --at {steps:,}"
    )
  return float(np.sum(returns[ok] * episodes[ok]) / np.sum(episodes[ok]))


def collection_at(collection: collect.Collection, steps: int) -> collect.Collection:
  """`collection` with each run's score read from its training curve at
  `steps` (normalised with the suite manifest; NaN where it has no constants
  for the task), its metric ``return`` and ``read_at = steps``."""
  manifests = {}
  runs = []
  for run in collection.runs:
    if run.suite not in manifests:
      manifests[run.suite] = published.load_manifest(run.suite)[0]
    manifest = manifests[run.suite]
    value = value_at(run, steps)
    normalized = (
      manifest.normalize(run.task, value, run.protocol_label) if manifest else float("nan")
    )
    if not math.isfinite(normalized):
      raise UserError(
        f"cannot normalise the curve of {run.path}: the manifest of suite '{run.suite}' "
        f"has no normalisation for task '{run.task}'"
      )
    runs.append(
      dataclasses.replace(
        run,
        score=value,
        normalized_score=normalized,
        metric=CURVE_METRIC,
        env_steps=steps,
        beside={},
        read_at=steps,
      )
    )
  return dataclasses.replace(collection, runs=tuple(runs))


def collect_at(
  root: str | Path | Sequence[str | Path], at: int | str | None, **filters: Any
) -> collect.Collection:
  """:func:`disco_eval.analysis.collect.collect` (`filters`: its keyword
  arguments), each run read from its training curve at `at` when given."""
  at = parse_steps(at) if at is not None else None
  collection = collect.collect(root, **filters)
  if at is None or not collection.runs:
    return collection
  return collection_at(collection, at)
