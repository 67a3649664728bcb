"""metrics.csv: one row per logging step, the first row fixing the header.

Cells are numbers (floats in round-trip repr, so NaN/inf and every bit come
back), strings or empty (None); booleans are stored as 1/0. The table is
always rewritten whole through :func:`~disco_eval.store.atomic.write_atomic`.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from disco_eval.store.atomic import write_atomic

# The metrics column that RunRecord.truncate_metrics cuts on.
STEP_COLUMN = "env_steps"

_INT = re.compile(r"[+-]?\d+")


def format_cell(value: Any) -> str:
  """A metrics value as CSV text (floats in round-trip repr, None empty)."""
  if value is None:
    return ""
  if isinstance(value, (bool, np.bool_)):
    return "1" if value else "0"
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    return repr(float(value))
  if isinstance(value, str):
    return value
  if hasattr(value, "__array__") and np.ndim(value) == 0:
    return format_cell(np.asarray(value).item())
  raise TypeError(f"metrics values must be numbers, strings or None, not {type(value).__name__}")


def parse_cell(text: str) -> Any:
  """Inverse of format_cell: int, float, None (empty) or the string."""
  if text == "":
    return None
  if _INT.fullmatch(text):
    return int(text)
  try:
    return float(text)
  except ValueError:
    return text


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
  """Header and rows of the CSV file `path` as text ([], [] if missing)."""
  try:
    text = Path(path).read_text(encoding="utf-8")
  except FileNotFoundError:
    return [], []
  rows = list(csv.reader(io.StringIO(text, newline="")))
  if not rows:
    return [], []
  return rows[0], rows[1:]


def write_table(path: Path, header: list[str], rows: list[list[str]]) -> None:
  """Replace the CSV file `path` by `header` and `rows` (atomically)."""
  buffer = io.StringIO(newline="")
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(header)
  writer.writerows(rows)
  write_atomic(Path(path), buffer.getvalue().encode("utf-8"))
