"""Tables and figures of the analyses, written to ``--out`` (csv, png or pdf by suffix).

Every file is written atomically; a figure carries a caption naming the rule (its label,
variant included), where the data came from, and how the numbers were computed.
"""

import csv
import io
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from disco_eval.errors import UserError
from disco_eval.store.atomic import write_atomic

FORMATS = ("csv", "png", "pdf")


def out_format(path: Path) -> str:
  """The format of `path` by its suffix; a UserError naming the choices otherwise."""
  fmt = Path(path).suffix.lower().lstrip(".")
  if fmt not in FORMATS:
    raise UserError(f"--out {path}: unknown format '.{fmt}'; use a .csv, .png or .pdf file")
  return fmt


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence], notes: Sequence[str]) -> bytes:
  """A csv table, with `notes` as leading ``# `` comment lines."""
  buffer = io.StringIO()
  for note in notes:
    buffer.write(f"# {note}\n")
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(header)
  for row in rows:
    writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
  return buffer.getvalue().encode()


def _figure(rows: int, width: float = 6.4, height: float = 1.6):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(width, max(2.6, height * rows)), layout="constrained")
  FigureCanvasAgg(fig)
  return fig, list(fig.subplots(rows, 1, squeeze=False)[:, 0])


def _finish(fig, caption: Sequence[str], fmt: str) -> bytes:
  text = textwrap.fill("; ".join(caption) + ".", 110)
  fig.suptitle(text, fontsize=7, x=0.01, ha="left")
  metadata = {"pdf": {"CreationDate": None, "Creator": "disco-eval"}, "png": {}}[fmt]
  buffer = io.BytesIO()
  fig.savefig(buffer, format=fmt, dpi=110, metadata=metadata)
  return buffer.getvalue()


def curves_figure(
  k: np.ndarray, series: dict[str, np.ndarray], caption: Sequence[str], fmt: str
) -> bytes:
  """Sensitivity curves over k (log scale where positive), one line per series."""
  fig, (ax,) = _figure(1, 6.4, 3.4)
  for name, values in series.items():
    ax.plot(k, values, marker="o", markersize=3, label=name)
  if all(np.nanmax(v) > 0 for v in series.values()):
    ax.set_yscale("log")
  ax.set_xlabel("k (target at t, prediction at t+k)")
  ax.set_ylabel("||d target_t / d prediction_{t+k}||")
  ax.legend(fontsize=7)
  return _finish(fig, caption, fmt)


def trace_figure(columns: dict[str, np.ndarray], names: Sequence[str], caption, fmt) -> bytes:
  """One panel per column of `names`, over the episode's steps."""
  fig, axes = _figure(len(names))
  for ax, name in zip(axes, names):
    ax.plot(columns["t"], columns[name], marker="o", markersize=3)
    ax.set_ylabel(name, fontsize=7)
  axes[-1].set_xlabel("step of the episode")
  return _finish(fig, caption, fmt)


def table_figure(header: Sequence[str], rows: Sequence[Sequence[str]], caption, fmt) -> bytes:
  """A table drawn as a figure."""
  fig, (ax,) = _figure(1, 7.5, 0.35 * (len(rows) + 2))
  ax.axis("off")
  table = ax.table(cellText=[list(r) for r in rows], colLabels=list(header), loc="center")
  table.auto_set_font_size(False)
  table.set_fontsize(7)
  return _finish(fig, caption, fmt)


def write(path: Path, data: bytes) -> Path:
  """`data` to `path`, atomically (its folder must exist: a UserError otherwise)."""
  path = Path(path)
  if not path.parent.is_dir():
    raise UserError(f"--out {path}: folder {path.parent} does not exist; create it first")
  write_atomic(path, data)
  return path
