"""Finding every run under a results folder, without ever raising.

A run folder is any folder holding config.json, and every folder at the seed
level (``<suite>/<task>/<rule>/<name>``) is met as one, whatever it holds.
Runs whose files are unreadable, corrupt or inconsistent, and seed-level
folders that are empty, lost their config.json or metrics.csv, or are not
runs at all, are reported with a `problem` (and, for damage, a `reason` from
:data:`disco_eval.store.damage.DAMAGE_REASONS`), never dropped and never
silently averaged.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from disco_eval.store.atomic import read_json
from disco_eval.store.damage import find_damage
from disco_eval.store.layout import CONFIG_FILE, STATUS_FILE, STATUSES, SUMMARY_FILE

# The canonical seed folder name: seed0, seed7, seed12 (never seed01 or seed+1).
_SEED_DIR = re.compile(r"seed(0|[1-9][0-9]*)")


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What scan_runs found in one run folder.

  suite/task/rule/seed come from the folder's place under the root (or from
  its config when the place is unexpected). `status` is the status string
  (None if the run never started). `problem` describes anything unreadable or
  inconsistent (None if all is well); the other fields are None where the
  file they come from could not be read. `reason` is the damage's kind
  (``empty``, ``foreign``, ``unreadable``, ``missing_config``,
  ``missing_metrics``) when the folder's record is damaged, else None (a
  `problem` without a reason is an inconsistency).
  """

  path: Path
  suite: str | None
  task: str | None
  rule: str | None
  seed: int | None
  status: str | None
  config: dict | None
  summary: dict | None
  problem: str | None
  reason: str | None = None


def _unreadable_run(
  path: Path, problem: str, reason: str | None = "unreadable", where: tuple = (None,) * 4
) -> RunInfo:
  """RunInfo of a folder nothing could be read from (`where`: its suite,
  task, rule and seed as far as its place tells)."""
  suite, task, rule, seed = where
  return RunInfo(
    path=path,
    suite=suite,
    task=task,
    rule=rule,
    seed=seed,
    status=None,
    config=None,
    summary=None,
    problem=problem,
    reason=reason,
  )


def _place(parts: tuple[str, ...]) -> tuple:
  """(suite, task, rule, seed) that a seed-level folder's place tells."""
  match = _SEED_DIR.fullmatch(parts[3])
  return (*parts[:3], int(match.group(1)) if match else None)


def _damaged_run(root: Path, path: Path) -> RunInfo | None:
  """RunInfo of a seed-level folder with no usable config.json (empty,
  foreign, lost config), or None when it holds a config.json to read."""
  parts = path.relative_to(root).parts
  if (path / CONFIG_FILE).is_file():
    return None
  found = find_damage(path)
  if found is None:  # e.g. config.json is a folder
    return _unreadable_run(path, f"{CONFIG_FILE} is not a file", where=_place(parts))
  if not _SEED_DIR.fullmatch(parts[3]) and found.reason != "missing_config":
    found = dataclasses.replace(
      found,
      reason="foreign",
      detail=f"unexpected folder name {parts[3]!r} (runs are <suite>/<task>/<rule>/seed<k>); "
      + found.detail,
    )
  return _unreadable_run(path, found.detail, found.reason, _place(parts))


def _load_for_scan(path: Path, problems: list[str]) -> Any:
  """A JSON object file, None if missing; a problem is noted if unreadable."""
  try:
    doc = read_json(path)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as exc:
    problems.append(f"{path.name} is unreadable ({exc})")
    return None
  if not isinstance(doc, dict):
    problems.append(f"{path.name} is not a JSON object")
    return None
  return doc


def _named(value: Any) -> Any:
  """A config entry's name: tables such as the rule's carry it as ``name``."""
  return value.get("name") if isinstance(value, dict) else value


def _status(
  path: Path, status_doc: dict | None, summary: dict | None, problems: list[str]
) -> str | None:
  """The status string of the run folder `path` (None if absent or invalid)."""
  status = None
  if status_doc is not None:
    status = status_doc.get("status")
    if status not in STATUSES:
      problems.append(f"{STATUS_FILE} has an unknown status {status!r}")
      status = None
  if status == "complete" and summary is None and not (path / SUMMARY_FILE).exists():
    problems.append(f"status is complete but {SUMMARY_FILE} is missing")
  return status


def _identity(
  parts: tuple[str, ...], config: dict | None, problems: list[str]
) -> tuple[str | None, str | None, str | None, int | None]:
  """(suite, task, rule, seed) of a run folder at `parts` under the root."""
  place = len(parts) == 4 and _SEED_DIR.fullmatch(parts[3])
  if place:
    suite, task, rule = parts[:3]
    seed: int | None = int(place.group(1))
    for key, value in (("suite", suite), ("task", task), ("rule", rule), ("seed", seed)):
      if config is not None and key in config and _named(config[key]) != value:
        problems.append(
          f"{CONFIG_FILE} says {key} {_named(config[key])!r} but the folder says {value!r}"
        )
    return suite, task, rule, seed
  problems.append("folder is not at <suite>/<task>/<rule>/seed<k> under the root")
  config_ = config or {}
  suite, task, rule = (
    _named(config_.get(k)) if isinstance(_named(config_.get(k)), str) else None
    for k in ("suite", "task", "rule")
  )
  seed = config_.get("seed") if isinstance(config_.get("seed"), int) else None
  return suite, task, rule, seed


def _run_info(root: Path, path: Path) -> RunInfo:
  """RunInfo of the run folder `path` (never raises)."""
  parts = path.relative_to(root).parts
  if len(parts) == 4:
    damaged = _damaged_run(root, path)
    if damaged is not None:
      return damaged
  found = find_damage(path)
  if found is not None and found.reason not in ("empty", "foreign", "missing_config"):
    info = _read_run(root, path, parts)
    return dataclasses.replace(info, problem=found.detail, reason=found.reason)
  return _read_run(root, path, parts)


def _read_run(root: Path, path: Path, parts: tuple[str, ...]) -> RunInfo:
  """RunInfo of the run folder `path` from its JSON files."""
  problems: list[str] = []
  config = _load_for_scan(path / CONFIG_FILE, problems)
  if config is None and not problems:
    problems.append(f"{CONFIG_FILE} is missing")
  status_doc = _load_for_scan(path / STATUS_FILE, problems)
  summary = _load_for_scan(path / SUMMARY_FILE, problems)
  status = _status(path, status_doc, summary, problems)
  suite, task, rule, seed = _identity(parts, config, problems)
  return RunInfo(
    path=path,
    suite=suite,
    task=task,
    rule=rule,
    seed=seed,
    status=status,
    config=config,
    summary=summary,
    problem="; ".join(problems) or None,
  )


def is_configuration_folder(name: str) -> bool:
  """Whether a folder directly under a results folder holds one configuration
  of a ``--sweep`` (``KEY=V[,KEY=V...]``, a results folder of its own; suite
  names hold no '=')."""
  return "=" in name and all("=" in p and p.split("=", 1)[0] for p in name.split(","))


def scan_runs(root: Path) -> list[RunInfo]:
  """Every run folder (a folder holding config.json, or any folder at the
  seed level ``<suite>/<task>/<rule>/<name>``) under `root`, and under each
  sweep configuration folder ``root/KEY=V`` (:func:`is_configuration_folder`).

  Runs whose files are unreadable or corrupt, damaged or foreign seed-level
  folders, and folders that cannot be listed, are returned with `problem`
  set; nothing is raised and nothing is
  dropped. Sorted by suite, task, rule, seed and path. A missing root gives [].
  """
  root = Path(root)
  found: list[RunInfo] = []

  def unlistable(exc: OSError) -> None:
    if exc.filename is not None and Path(exc.filename) != root:
      found.append(_unreadable_run(Path(exc.filename), f"cannot list folder ({exc.strerror})"))

  if not root.is_dir():
    return []
  nested = []
  for folder, subfolders, files in os.walk(root, onerror=unlistable):
    depth = len(Path(folder).relative_to(root).parts)
    if depth == 0 and CONFIG_FILE not in files:
      nested = [root / s for s in subfolders if is_configuration_folder(s)]
      subfolders[:] = [s for s in subfolders if not is_configuration_folder(s)]
    for name in subfolders if depth < 4 else ():
      if os.path.islink(os.path.join(folder, name)):  # never followed by os.walk
        target = os.readlink(os.path.join(folder, name))
        parts = (Path(folder) / name).relative_to(root).parts
        where = _place(parts) if len(parts) == 4 else (None,) * 4
        detail = f"{name} is a symbolic link (to {target}) where records belong"
        found.append(_unreadable_run(Path(folder) / name, detail, "link", where))
    if CONFIG_FILE in files or depth == 4:
      subfolders[:] = []  # checkpoint/ and the like are not runs
      try:
        found.append(_run_info(root, Path(folder)))
      except Exception as exc:  # noqa: BLE001 - a scan must never raise
        found.append(
          _unreadable_run(Path(folder), f"cannot read run ({type(exc).__name__}: {exc})")
        )
  for sub in nested:
    found += scan_runs(sub)
  return sorted(
    found,
    key=lambda r: (
      r.suite or "",
      r.task or "",
      r.rule or "",
      r.seed if r.seed is not None else -1,
      str(r.path),
    ),
  )
