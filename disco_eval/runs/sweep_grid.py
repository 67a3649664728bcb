"""``--sweep KEY=V1,V2,...``: a grid of settings, each trained as its own configuration.

Each ``--sweep`` names one setting and its values; several form a grid (every
combination). ``--sweep protocol`` takes the grid the suite manifest names for
the protocol (``[tuning.PROTOCOL]``, each item sourced). A configuration is one
``--set KEY=V`` per swept setting, added after the command's own ``--set``
overrides, and its runs are recorded under ``OUT/KEY=V[,KEY=V...]/`` (a
configuration folder, read by :func:`disco_eval.store.scan_runs` as a results
folder of its own), so that no two configurations share a run record.
``compare --select KEY`` then picks among them (:mod:`disco_eval.analysis.select`).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any, Sequence

from disco_eval.errors import UserError

PROTOCOL_GRID = "protocol"


@dataclasses.dataclass(frozen=True)
class Configuration:
  """One point of the grid: its ``--set`` pairs and its folder under ``--out``."""

  overrides: tuple[tuple[str, str], ...]

  @property
  def folder(self) -> str:
    return ",".join(f"{k}={v}" for k, v in self.overrides)


def tuning_grid(raw: dict[str, Any], protocol: str) -> dict[str, list[str]]:
  """The ``[tuning.PROTOCOL]`` grid of a suite manifest's data `raw`: key -> values
  (as ``--set`` text); a UserError when the protocol names none."""
  table = (raw.get("tuning") or {}).get(protocol.split("@", 1)[0].split("+", 1)[0])
  grid = {k: v for k, v in (table or {}).items() if k != "sources"}
  if not grid:
    named = ", ".join(sorted(raw.get("tuning") or {})) or "none"
    raise UserError(
      f"--sweep protocol: protocol '{protocol}' names no tuning grid (protocols with one: "
      f"{named}); give the values, e.g. --sweep optimizer.learning_rate=1e-4,3e-4"
    )
  return {k: [_text(x) for x in v] for k, v in grid.items()}


def _text(value: Any) -> str:
  return repr(value) if isinstance(value, float) else str(value)


def parse_sweeps(items: Sequence[str], raw: dict[str, Any], protocol: str) -> dict[str, list[str]]:
  """``--sweep`` items -> key -> values (in order, each key once)."""
  grid: dict[str, list[str]] = {}
  for item in items:
    if item.strip() == PROTOCOL_GRID:
      found = tuning_grid(raw, protocol)
    elif "=" in item and item.split("=", 1)[1].strip():
      key, values = (s.strip() for s in item.split("=", 1))
      found = {key: [v.strip() for v in values.split(",") if v.strip()]}
    else:
      raise UserError(
        f"--sweep expects KEY=V1,V2,... (e.g. optimizer.learning_rate=1e-4,3e-4) or "
        f"'{PROTOCOL_GRID}', got '{item}'"
      )
    for key, values in found.items():
      if key in grid:
        raise UserError(f"--sweep: '{key}' is swept twice; give its values once")
      if len(set(values)) != len(values):
        raise UserError(f"--sweep {key}: a value is given twice")
      if any("/" in v or "\\" in v for v in values):
        raise UserError(f"--sweep {key}: values may not hold '/' or '\\'")
      grid[key] = values
  return grid


def configurations(grid: dict[str, list[str]]) -> list[Configuration]:
  """Every combination of the grid's values, the first key slowest."""
  keys = list(grid)
  return [
    Configuration(tuple(zip(keys, combo))) for combo in itertools.product(*(grid[k] for k in keys))
  ]


def expand(spec, grid: dict[str, list[str]]) -> list:
  """`spec` (a SweepSpec) once per configuration of `grid`: its ``--set``
  overrides plus the configuration's, recorded under ``spec.out/FOLDER``; a
  UserError when ``--set`` already fixes a swept key. No grid: ``[spec]``."""
  if not grid:
    return [spec]
  fixed = {k for k, _ in spec.overrides}
  both = sorted(fixed & set(grid))
  if both:
    raise UserError(f"'{both[0]}' is both --set and --sweep; drop one")
  return [
    dataclasses.replace(spec, overrides=spec.overrides + c.overrides, out=Path(spec.out) / c.folder)
    for c in configurations(grid)
  ]
