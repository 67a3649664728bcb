"""Whether a run's stored config.json and a new config describe the same run.

Configs are compared as canonical JSON (what config.json would hold), without
the keys that may change between invocations of one run
(VOLATILE_CONFIG_KEYS). A setting added after runs were first recorded
(LATER_CONFIG_KEYS) matches an older record that lacks it when the new value
is the one that record ran with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from disco_eval.config.train import LOOP_SETTINGS, OPTIMIZER_SETTINGS
from disco_eval.errors import UserError
from disco_eval.store.atomic import compact, dumps

# Config keys that may change between invocations of the same run (they are
# ignored when an existing run's config is compared with a new one).
# runtime: the machine a run computes on (disco_eval.runtime.environment).
# schema_version: the layout of the file (store.schema), not a setting of the run; records
# written before it existed lack it and still match.
# provenance: the command line and code that made the run (disco_eval.provenance).
VOLATILE_CONFIG_KEYS = (  # label: derived
  "versions",
  "created",
  "label",
  "runtime",
  "schema_version",
  "provenance",
)
# Volatile keys whose first recorded value is kept when a run is resumed.
KEPT_CONFIG_KEYS = ("created", "provenance")
# Config keys added after runs were first recorded, with the value an older
# record that lacks them ran with: such a record still matches a new config.
# Keys are paths of nested tables ending in the setting's name.
# The loop's are those its declaration marks ``later`` (disco_eval.config.train).
LATER_CONFIG_KEYS = {
  **{("train", s.name): s.default for s in LOOP_SETTINGS if s.later},
  ("settings", "agent", "torso_dtype"): "float32",
  **{("settings", "optimizer", s.name): s.default for s in OPTIMIZER_SETTINGS if s.later},
}

# Config keys added after runs were first recorded whose old value is not
# known (the data a run used, the hash of a plug-in's other source files): an
# older record that lacks one still matches (resumes), and is reported apart
# from newer runs by compare (its fingerprint lacks the key).
UNKNOWN_BEFORE_KEYS = (("data",), ("rule", "module", "sources_sha256"))

_ABSENT = object()


def _without_unknown_before(stored: dict, new: dict) -> dict:
  """`new` without the UNKNOWN_BEFORE_KEYS that `stored` lacks."""
  new = json.loads(json.dumps(new))
  for *tables, key in UNKNOWN_BEFORE_KEYS:
    where, there = stored, new
    for table in tables:
      where = where.get(table) if isinstance(where, dict) else None
      there = there.get(table) if isinstance(there, dict) else None
    if isinstance(there, dict) and key in there and not (isinstance(where, dict) and key in where):
      del there[key]
  return new


def canonical_config(config: dict) -> dict:
  """`config` as JSON would store it, without the volatile keys."""
  if not isinstance(config, dict):
    raise TypeError(f"a run config must be a dict, not {type(config).__name__}")
  doc = json.loads(dumps(config))
  for key in VOLATILE_CONFIG_KEYS:
    doc.pop(key, None)
  return doc


def _with_later_keys(stored: dict, new: dict) -> dict:
  """`stored` with the LATER_CONFIG_KEYS it lacks, at their old values, where
  `new` has them (so that only a real change of those settings differs)."""
  stored = json.loads(json.dumps(stored))
  for path, old_value in LATER_CONFIG_KEYS.items():
    *tables, key = path
    where, there = stored, new
    for table in tables:
      where = where.get(table) if isinstance(where, dict) else None
      there = there.get(table) if isinstance(there, dict) else None
    if isinstance(where, dict) and isinstance(there, dict) and key not in where and key in there:
      where[key] = old_value
  return stored


def _first_difference(old: Any, new: Any, where: str = "") -> tuple[str, Any, Any] | None:
  """(key path, old value, new value) of the first difference, or None."""
  if compact(old) == compact(new):
    return None
  if isinstance(old, dict) and isinstance(new, dict):
    for key in sorted(set(old) | set(new)):
      sub = f"{where}.{key}" if where else str(key)
      if key not in old or key not in new:
        return sub, old.get(key, _ABSENT), new.get(key, _ABSENT)
      found = _first_difference(old[key], new[key], sub)
      if found is not None:
        return found
  if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
    for i, (a, b) in enumerate(zip(old, new)):
      found = _first_difference(a, b, f"{where}[{i}]")
      if found is not None:
        return found
  return where or "<config>", old, new


def _show(value: Any, limit: int = 60) -> str:
  """A short one-line rendering of a JSON value for messages."""
  if value is _ABSENT:
    return "absent"
  text = compact(value)
  return text if len(text) <= limit else text[: limit - 3] + "..."


def check_same_run(run_path: Path, stored: dict, canonical: dict) -> None:
  """A UserError naming the first differing key unless `stored` (a run's
  config.json) matches `canonical` (see :func:`canonical_config`)."""
  stored_canonical = {k: v for k, v in stored.items() if k not in VOLATILE_CONFIG_KEYS}
  stored_canonical = _with_later_keys(stored_canonical, canonical)
  canonical = _without_unknown_before(stored_canonical, canonical)
  difference = _first_difference(stored_canonical, canonical)
  if difference is not None:
    key, old, new = difference
    raise UserError(
      f"run {run_path} was recorded with a different config: {key} is "
      f"{_show(old)} there but {_show(new)} now; pass --out DIR to record this "
      "run elsewhere (or delete that folder to start it over)"
    )


def refreshed_config(config: dict, stored: dict) -> dict | None:
  """`config` with the stored "created" and "provenance" kept (the run's
  first invocation), or None where that is what config.json already holds
  (nothing to rewrite)."""
  updated = dict(config)
  for key in KEPT_CONFIG_KEYS:
    if key in stored:
      updated[key] = stored[key]
  if dumps(updated) != dumps(stored):
    return updated
  return None


def config_difference(stored: dict, new: dict) -> str | None:
  """The first difference between a run's stored config.json and `new` (a
  config as a run would record it), as "KEY is OLD there but NEW now", or
  None when they describe the same run (volatile keys aside)."""
  canonical = canonical_config(new)
  stored_canonical = _with_later_keys(canonical_config(stored), canonical)
  difference = _first_difference(stored_canonical, canonical)
  if difference is None:
    return None
  key, old, now = difference
  return f"{key} is {_show(old)} there but {_show(now)} now"
