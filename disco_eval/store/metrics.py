"""metrics.csv: one row per logging step, the first row fixing the header.

Cells are numbers (floats in round-trip repr, so NaN/inf and every bit come
back), strings or empty (None); booleans are stored as 1/0.

The file is created whole (header and first rows) by
:func:`~disco_eval.store.atomic.write_atomic`; later rows are appended
(:func:`append_rows`: one write and one fsync per call, whatever the length
of the table). A kill during an append can leave a torn last line: text
after the last newline, which every reader here ignores and the next append
(or a resume's truncation) cuts off. Every row ends with a newline.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from disco_eval.store.atomic import append_durably, write_atomic

# The metrics column that RunRecord.truncate_metrics cuts on.
STEP_COLUMN = "env_steps"

_INT = re.compile(r"[+-]?\d+")
_TAIL = 1 << 16  # bytes read from the end to find the last newline


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


def whole_lines(text: str) -> str:
  """`text` without a torn last line (the text after its last newline)."""
  return text[: text.rfind("\n") + 1]


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
  """Header and rows of the CSV file `path` as text ([], [] if missing),
  a torn last line left out."""
  try:
    text = whole_lines(Path(path).read_text(encoding="utf-8"))
  except FileNotFoundError:
    return [], []
  rows = list(csv.reader(io.StringIO(text, newline="")))
  if not rows:
    return [], []
  return rows[0], rows[1:]


def read_header(path: Path) -> list[str]:
  """The header of the CSV file `path` ([] if missing or empty)."""
  try:
    with open(path, encoding="utf-8", newline="") as f:
      line = f.readline()
  except FileNotFoundError:
    return []
  return next(csv.reader([line]), []) if line.endswith("\n") else []


def _csv_text(rows: list[list[str]]) -> str:
  buffer = io.StringIO(newline="")
  csv.writer(buffer, lineterminator="\n").writerows(rows)
  return buffer.getvalue()


def write_table(path: Path, header: list[str], rows: list[list[str]]) -> None:
  """Replace the CSV file `path` by `header` and `rows` (atomically)."""
  write_atomic(Path(path), _csv_text([header] + rows).encode("utf-8"))


def _whole_size(path: Path) -> tuple[int, int]:
  """(size of `path`, size without its torn last line) in bytes."""
  with open(path, "rb") as f:
    size = f.seek(0, os.SEEK_END)
    at = size
    while at > 0:
      start = max(0, at - _TAIL)
      f.seek(start)
      block = f.read(at - start)
      cut = block.rfind(b"\n")
      if cut >= 0:
        return size, start + cut + 1
      at = start
    return size, 0


def append_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
  """Add `rows` to the CSV file `path` whose header is `header`: a new file
  is written whole (header first); an existing one gets the rows appended
  (a torn last line cut off first), then fsynced."""
  path = Path(path)
  if not path.exists():
    return write_table(path, header, rows)
  size, whole = _whole_size(path)
  append_durably(path, _csv_text(rows).encode("utf-8"), keep=whole if whole != size else None)


def torn(path: Path) -> bool:
  """Whether the file `path` ends in a torn line (False if missing or empty)."""
  try:
    size, whole = _whole_size(Path(path))
  except FileNotFoundError:
    return False
  return size != whole
