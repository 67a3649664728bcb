"""What makes a run folder unusable: lost, unreadable or foreign files.

:func:`find_damage` looks at one seed folder and names the first thing that
makes its record unusable, as a :class:`Damage` with one of
:data:`DAMAGE_REASONS`:

* ``empty``: the folder holds nothing (hidden lock and temp files aside);
* ``foreign``: it holds none of a run's files (config.json, status.json,
  metrics.csv, summary.json, checkpoint/): not a run folder;
* ``unreadable``: a JSON file that does not parse or is not an object, or a
  metrics.csv that is not UTF-8 CSV with an env_steps column and rows as
  long as its header;
* ``missing_config``: config.json is gone while other record files remain
  (the run's true settings are lost);
* ``missing_metrics``: metrics.csv is gone while status.json says the run
  trained (complete, diverged, or running/failed past 0 env steps);
* ``link``: a symbolic link where a record file or folder belongs (the
  lock, a record file, checkpoint/ or a file in it): nothing is ever written
  through it (see :mod:`disco_eval.store.atomic`);
* ``missing_status``: status.json is gone while metrics.csv or checkpoint/
  remain (the run trained; retraining from 0 would overwrite its record);
* ``missing_summary``: the status says complete or diverged but
  summary.json is gone (the summary is always written first);
* ``short_metrics``: the status says complete at N env steps but the last
  whole row of metrics.csv is below N (the table was cut).

Nothing here writes; nothing raises for a folder's content.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path

from disco_eval.store.atomic import read_json
from disco_eval.store.layout import (
  CHECKPOINT_DIR,
  CONFIG_FILE,
  METRICS_FILE,
  STATUS_FILE,
  SUMMARY_FILE,
)
from disco_eval.store.metrics import STEP_COLUMN, whole_lines

DAMAGE_REASONS = (
  "empty",
  "foreign",
  "unreadable",
  "missing_config",
  "missing_metrics",
  "link",
  "missing_status",
  "missing_summary",
  "short_metrics",
)
RECORD_NAMES = (CONFIG_FILE, STATUS_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_DIR)


@dataclasses.dataclass(frozen=True)
class Damage:
  """Why a run folder is unusable: `reason` (one of DAMAGE_REASONS) and a
  one-line `detail`."""

  reason: str
  detail: str


def _json_problem(path: Path) -> str | None:
  """Why the JSON object file `path` is unreadable, or None if it is fine."""
  try:
    doc = read_json(path)
  except (OSError, ValueError) as exc:
    return f"{path.name} is unreadable ({exc})"
  if not isinstance(doc, dict):
    return f"{path.name} is not a JSON object"
  return None


def metrics_problem(path: Path) -> str | None:
  """Why the metrics.csv `path` is unreadable, or None if it is a table."""
  try:
    text = whole_lines(path.read_text(encoding="utf-8"))  # a torn last line is no damage
    rows = list(csv.reader(io.StringIO(text, newline="")))
  except (OSError, UnicodeDecodeError, csv.Error) as exc:
    return f"{path.name} is unreadable ({exc})"
  if not rows:
    return f"{path.name} is empty (no header)"
  if STEP_COLUMN not in rows[0]:
    return f"{path.name} has no {STEP_COLUMN!r} column"
  for number, row in enumerate(rows[1:], start=2):
    if len(row) != len(rows[0]):
      return f"{path.name} line {number} has {len(row)} cells for {len(rows[0])} columns"
  return None


def _link_inside(folder: Path) -> str | None:
  """The first symbolic link among `folder`'s entries (hidden ones too) and
  those of its checkpoint/ folder, as a detail line, else None."""
  for at in (folder, folder / CHECKPOINT_DIR):
    try:
      entries = sorted(os.scandir(at), key=lambda e: e.name)
    except OSError:
      continue
    for entry in entries:
      if entry.is_symlink():
        try:
          target = f" (to {os.readlink(entry.path)})"
        except OSError:
          target = ""
        return f"{Path(entry.path).relative_to(folder)} is a symbolic link{target}"
  return None


def last_steps(path: Path) -> int | None:
  """The env_steps of the last whole row of the metrics.csv `path` (None
  when it has no row or no such column)."""
  try:
    text = whole_lines(path.read_text(encoding="utf-8"))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if len(rows) < 2 or STEP_COLUMN not in rows[0]:
      return None
    return int(float(rows[-1][rows[0].index(STEP_COLUMN)]))
  except (OSError, UnicodeDecodeError, csv.Error, ValueError, IndexError):
    return None


def _status_damage(folder: Path, names: list[str]) -> Damage | None:
  """missing_status, missing_metrics, missing_summary or short_metrics."""
  if STATUS_FILE not in names:
    trained = [n for n in (METRICS_FILE, CHECKPOINT_DIR) if n in names]
    if trained:
      return Damage(
        "missing_status",
        f"{STATUS_FILE} is missing while {', '.join(trained)} remain (the run trained)",
      )
    return None
  status = read_json(folder / STATUS_FILE)
  trained = _trained(status)
  if METRICS_FILE not in names and trained:
    return Damage(
      "missing_metrics", f"{METRICS_FILE} is missing while {STATUS_FILE} says {trained}"
    )
  name = status.get("status")
  if name in ("complete", "diverged") and SUMMARY_FILE not in names:
    return Damage("missing_summary", f"{SUMMARY_FILE} is missing while {STATUS_FILE} says {name}")
  steps = status.get("env_steps")
  if name == "complete" and isinstance(steps, int) and METRICS_FILE in names:
    last = last_steps(folder / METRICS_FILE)
    if last is None or last < steps:
      return Damage(
        "short_metrics",
        f"{METRICS_FILE} ends at {last or 0} env steps while {STATUS_FILE} says "
        f"complete at {steps} (the table was cut)",
      )
  return None


def _entries(folder: Path) -> list[str]:
  """Names in `folder`, without hidden ones (the lock, temp files)."""
  return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def _trained(status: dict) -> str | None:
  """'complete', 'running at N env steps', ... when the status says the run
  logged metrics, else None."""
  name, steps = status.get("status"), status.get("env_steps")
  if name in ("complete", "diverged"):
    return str(name)
  if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
    return f"{name} at {steps} env steps"
  return None


def find_damage(folder: Path) -> Damage | None:
  """The first damage of the run folder `folder` (see the module docstring),
  or None when its record is usable (a missing folder counts as empty)."""
  folder = Path(folder)
  try:
    names = _entries(folder)
  except FileNotFoundError:
    return Damage("empty", "the folder does not exist")
  except OSError as exc:
    return Damage("unreadable", f"cannot list the folder ({exc.strerror})")
  link = _link_inside(folder)
  if link is not None:
    return Damage("link", link)
  if not names:
    return Damage("empty", "the folder is empty")
  present = [n for n in RECORD_NAMES if n in names]
  if not present:
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return Damage("foreign", f"holds no run record files, only {shown}")
  for name in (CONFIG_FILE, STATUS_FILE, SUMMARY_FILE):
    problem = _json_problem(folder / name) if name in names else None
    if problem:
      return Damage("unreadable", problem)
  problem = metrics_problem(folder / METRICS_FILE) if METRICS_FILE in names else None
  if problem:
    return Damage("unreadable", problem)
  if CONFIG_FILE not in names:
    return Damage(
      "missing_config",
      f"{CONFIG_FILE} is missing while {', '.join(present)} remain (its settings are lost)",
    )
  return _status_damage(folder, names)
