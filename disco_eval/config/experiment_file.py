"""Experiment files: one TOML file describing a sweep (``run --config FILE``).

Every key is optional and stands for the ``run`` option of the same name;
an option given on the command line wins over the file, except ``--set``,
whose items are added after the file's ``set`` table (a later setting of one
key wins). ``examples/experiment.toml`` shows every key::

  suite = "catch"
  tasks = ["catch"]            # or "a,b"
  rules = ["disco103", "actor_critic"]
  seeds = 3
  seed_start = 0
  steps = 20000
  protocol = "disco"
  out = "results"
  track = ["tensorboard"]
  launcher = "local"
  [set]                        # --set table.key=value, nested or dotted
  optimizer.learning_rate = 3e-4

Paths (``out``, ``slurm_profile``) are relative to the working directory, as
on the command line; an unknown key is a one-line error naming it.
A ``[sweep]`` table (``KEY = [values, ...]``, or ``KEY = "protocol"`` for the
protocol's own tuning grid) is a grid of ``--set`` values, as ``--sweep``:
each combination is trained as its own configuration; ``--sweep`` items on the
command line are added to the file's.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from disco_eval.errors import UserError

# file key -> (kind of value, the run option's parameter name)
KEYS: dict[str, tuple[str, str]] = {
  "suite": ("str", "suite"),
  "tasks": ("csv", "tasks"),
  "rules": ("list", "rule"),
  "seeds": ("int", "seeds"),
  "seed_start": ("int", "seed_start"),
  "steps": ("int", "steps"),
  "protocol": ("str", "protocol"),
  "out": ("str", "out_dir"),
  "set": ("table", "set_"),
  "track": ("list", "track"),
  "devices": ("int", "devices"),
  "checkpoint_every": ("int", "checkpoint_every"),
  "checkpoint_minutes": ("float", "checkpoint_minutes"),
  "deterministic": ("bool", "deterministic"),
  "allow_cpu": ("bool", "allow_cpu"),
  "no_memory_check": ("bool", "no_memory_check"),
  "launcher": ("str", "launcher"),
  "seeds_per_unit": ("int", "seeds_per_unit"),
  "retries": ("int", "retries"),
  "gpus_per_unit": ("float", "gpus_per_unit"),
  "cpus_per_unit": ("int", "cpus_per_unit"),
  "ray_address": ("str", "ray_address"),
  "slurm_profile": ("str", "slurm_profile"),
  "slurm_partition": ("str", "slurm_partition"),
  "slurm_account": ("str", "slurm_account"),
  "slurm_time": ("int", "slurm_time"),
  "slurm_mem_gb": ("int", "slurm_mem_gb"),
  "slurm_array_parallelism": ("int", "slurm_array_parallelism"),
  "sweep": ("table", "sweep"),
}


def _scalar_text(value: Any) -> str:
  """A ``--set`` value from a TOML value (as it would be typed)."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, list):
    return "[" + ",".join(_scalar_text(v) for v in value) + "]"
  return str(value)


def _flatten(table: dict, prefix: str = "") -> list[tuple[str, str]]:
  """A (nested) ``set`` table as ``--set`` pairs (dotted keys)."""
  pairs = []
  for key, value in table.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      pairs += _flatten(value, name + ".")
    else:
      pairs.append((name, _scalar_text(value)))
  return pairs


def _check(path: Path, key: str, kind: str, value: Any) -> Any:
  """`value` of `key` as the option takes it, or a one-line UserError."""

  def bad(what: str):
    return UserError(f"{path}: '{key}' must be {what}, got {value!r}")

  if kind == "str":
    if not isinstance(value, str):
      raise bad("a string")
    return value
  if kind == "int":
    if isinstance(value, bool) or not isinstance(value, int):
      raise bad("an integer")
    return value
  if kind == "float":
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
      raise bad("a number")
    return float(value)
  if kind == "bool":
    if not isinstance(value, bool):
      raise bad("true or false")
    return value
  if kind in ("list", "csv"):
    if isinstance(value, str):
      value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
      raise bad("a list of strings")
    return ",".join(value) if kind == "csv" else value
  if not isinstance(value, dict):
    raise bad("a table")
  return value


def _sweep_items(path: Path, table: dict) -> list[str]:
  """A ``[sweep]`` table as ``--sweep`` items: ``KEY=V1,V2`` (``protocol`` alone
  for the protocol's grid)."""
  items = []
  for key, values in table.items():
    if key == "protocol" and values is True:
      items.append("protocol")
      continue
    if not isinstance(values, list) or not values or isinstance(values[0], (dict, list)):
      raise UserError(f"{path}: [sweep] {key} must be a list of values, got {values!r}")
    items.append(f"{key}=" + ",".join(_scalar_text(v) for v in values))
  return items


def load(path: Path) -> dict[str, Any]:
  """The run options an experiment file sets: {parameter name: value}
  (``set_`` as ``KEY=VALUE`` strings). One-line UserErrors for a missing or
  malformed file, an unknown key, a value of the wrong kind, or a sweep."""
  path = Path(path)
  try:
    doc = tomllib.loads(path.read_text())
  except FileNotFoundError:
    raise UserError(f"experiment file {path} not found") from None
  except OSError as e:
    raise UserError(f"cannot read experiment file {path} ({e.strerror})") from None
  except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
    raise UserError(f"{path} is not valid TOML: {e}") from None
  options = {}
  for key, value in doc.items():
    if key not in KEYS:
      raise UserError(f"{path}: unknown key '{key}' (known: {', '.join(KEYS)})")
    kind, name = KEYS[key]
    options[name] = _check(path, key, kind, value)
  if "sweep" in options:
    options["sweep"] = _sweep_items(path, options["sweep"])
  if "set_" in options:
    options["set_"] = [f"{k}={v}" for k, v in _flatten(options["set_"])]
  return options


def _toml_value(value: Any) -> str:
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (int, float)):
    return repr(value)
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"
  text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
  return f'"{text}"'


def dumps(options: dict[str, Any], header: str = "") -> str:
  """An experiment file holding `options` ({parameter name: value}; None
  values are left out), readable by :func:`load`."""
  names = {name: key for key, (_, name) in KEYS.items()}
  lines = [f"# {line}" for line in header.splitlines()]
  table, grid = [], []
  for name, value in options.items():
    if value is None or name not in names:
      continue
    if name == "set_":
      table = [tuple(item.split("=", 1)) for item in value]
      continue
    if name == "sweep":
      grid += [tuple(item.split("=", 1)) if "=" in item else (item, None) for item in value]
      continue
    if isinstance(value, Path):
      value = str(value)
    lines.append(f"{names[name]} = {_toml_value(value)}")
  if table:
    lines += ["", "[set]"] + [f'"{k.strip()}" = {_toml_value(v.strip())}' for k, v in table]
  if grid:
    lines += ["", "[sweep]"] + [
      f"{k.strip()} = true" if v is None else f'"{k.strip()}" = {_toml_value(v.split(","))}'
      for k, v in grid
    ]
  return "\n".join(lines) + "\n"
