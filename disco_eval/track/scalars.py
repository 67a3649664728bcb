"""The scalars a tracker shows, read from a run's records.

Tags (the x axis is env steps, the metrics' ``env_steps``):

* ``train/avg_return``: mean return of the episodes that ended in an
  iteration (iterations where none ended have no point);
* ``train/loss``: the learner's loss (iterations without a learner step have
  no point); ``train/episodes``, ``train/learner_steps``;
* ``train/<column>``: any other numeric column of metrics.csv (e.g. a host
  task's episode figures);
* ``eval/score``, ``eval/normalized_score``, ``eval/return_std``,
  ``eval/episodes``: the run's final evaluation (summary.json), at the run's
  budget;
* ``reeval/<N>-episodes/score`` and ``.../return_std``: later evaluations
  (``disco-eval evaluate``, evaluations/N-episodes.json).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Iterator

from disco_eval.store import METRICS_FILE, SUMMARY_FILE
from disco_eval.store.metrics import parse_cell

EVALUATIONS_DIR = "evaluations"
_NAMED = {"avg_return", "loss", "episodes", "learner_steps"}
_SKIPPED = {"iteration", "env_steps"}

Scalar = tuple[str, int, float]


def _number(value) -> float | None:
  """`value` as a finite float, else None."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def row_scalars(row: dict) -> Iterator[Scalar]:
  """The scalars of one metrics row."""
  step = row.get("env_steps")
  if not isinstance(step, int):
    return
  for column, value in row.items():
    if column in _SKIPPED:
      continue
    value = _number(value)
    if value is not None:
      yield f"train/{column}", step, value


class MetricsTail:
  """Reads the rows appended to a run's metrics.csv since the last read.

  Only whole lines are read (a torn last line is left for later); when the
  file becomes shorter than what was read (a resume cut rows off),
  :meth:`read` returns None: start over with a new tail.
  """

  def __init__(self, run: Path):
    self.path, self.offset, self.header = Path(run) / METRICS_FILE, 0, None

  def read(self) -> list[dict] | None:
    """The new whole rows (a list, maybe empty), or None after a truncation."""
    try:
      with open(self.path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        if size < self.offset:
          return None
        f.seek(self.offset)
        data = f.read(size - self.offset)
    except FileNotFoundError:
      return []
    end = data.rfind(b"\n") + 1
    lines = data[:end].decode("utf-8").splitlines()
    self.offset += end
    if self.header is None and lines:
      self.header = next(csv.reader([lines.pop(0)]))
    return [dict(zip(self.header, map(parse_cell, cells))) for cells in csv.reader(lines)]


def _json(path: Path) -> dict | None:
  try:
    doc = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return doc if isinstance(doc, dict) else None


def summary_scalars(run: Path) -> list[Scalar]:
  """The scalars of a run's final evaluation (none before it finished)."""
  doc = _json(Path(run) / SUMMARY_FILE)
  if doc is None or not isinstance(doc.get("env_steps"), int):
    return []
  step, out = doc["env_steps"], []
  for tag, key in (
    ("eval/score", "score"),
    ("eval/normalized_score", "normalized_score"),
    ("eval/return_std", "eval_return_std"),
    ("eval/episodes", "eval_episodes"),
  ):
    value = _number(doc.get(key))
    if value is not None:
      out.append((tag, step, value))
  return out


def evaluation_scalars(run: Path) -> list[Scalar]:
  """The scalars of a run's later evaluations (evaluations/*.json)."""
  out = []
  for path in sorted((Path(run) / EVALUATIONS_DIR).glob("*.json")):
    doc = _json(path)
    if doc is None or not isinstance(doc.get("env_steps"), int):
      continue
    for key in ("score", "return_std"):
      value = _number(doc.get(key))
      if value is not None:
        out.append((f"reeval/{path.stem}/{key}", doc["env_steps"], value))
  return out


def run_scalars(run: Path) -> list[Scalar]:
  """Every scalar of a run's records (for a log written afterwards)."""
  rows = MetricsTail(run).read() or []
  return (
    [s for row in rows for s in row_scalars(row)] + summary_scalars(run) + (evaluation_scalars(run))
  )
