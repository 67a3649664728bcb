"""``disco-eval reproduce``: train a recorded run again, exactly as it was configured.

The run is rebuilt from its config.json (:mod:`disco_eval.runs.revisit`) and
trained into another results folder. Before anything is trained the code
(version, git commit and uncommitted changes, from the run's provenance) and
the data (the rule's checkpoint sha256, the level sets, every resolved
setting) are compared with the run's; a difference refuses, unless forced.
Afterwards :func:`compare_records` says whether the new records equal the
old: on the same machine and backend they should, bit for bit (the
summary's wall-clock time aside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from disco_eval import provenance, runtime
from disco_eval.errors import UserError
from disco_eval.runs.revisit import Rebuilt, read_config, rebuild
from disco_eval.store import METRICS_FILE, SUMMARY_FILE, run_dir
from disco_eval.store.atomic import read_json
from disco_eval.store.metrics import read_table

# Summary keys that differ between two trainings of one run by design.
TIMING_KEYS = ("train_wall_s",)


def prepare(run: Path, out: Path, force: bool = False) -> tuple[Rebuilt, list[str]]:
  """The run rebuilt to train into `out`, and notes to print; a one-line
  UserError when the code or the data differ (unless `force`: then they are
  notes) or when `out` would be the run's own folder."""
  rebuilt = rebuild(run, out)
  config = rebuilt.config
  target = run_dir(out, config["suite"], config["task"], rebuilt.rule.label, rebuilt.seed)
  if target.resolve() == Path(run).resolve():
    raise UserError(f"--out {out} holds the run itself; pass --out DIR with another folder")
  notes = []
  code = provenance.code_difference(config.get(provenance.PROVENANCE_KEY))
  for what, why in (("the code differs", code), ("the data differ", rebuilt.data)):
    if why is None:
      continue
    if not force:
      raise UserError(
        f"{what} from the run's: {why}; pass --force to train it anyway "
        "(its records may then differ)"
      )
    notes.append(f"warning: {what} from the run's: {why} (--force)")
  recorded = config.get("runtime") or {}
  now = runtime.environment()
  machine = [
    k for k in ("backend", "device_kind", "jax", "jaxlib") if recorded.get(k) != now.get(k)
  ]
  if machine:
    shown = ", ".join(f"{k} {recorded.get(k)} there, {now.get(k)} here" for k in machine)
    notes.append(f"note: another machine ({shown}): the records may differ in the last bits")
  if config.get("episodes_reproducible") is False:
    notes.append("note: this task's episodes are not fixed by the seed: the records will differ")
  return rebuilt, notes


def _metrics_difference(old: Path, new: Path) -> str | None:
  (h1, r1), (h2, r2) = read_table(old / METRICS_FILE), read_table(new / METRICS_FILE)
  if h1 != h2:
    return f"columns differ ({h1} there, {h2} here)"
  for i, (a, b) in enumerate(zip(r1, r2)):
    if a != b:
      column = next(c for c, x, y in zip(h1, a, b) if x != y)
      return f"row {i} differs first, in {column}: {a[h1.index(column)]} there, {b[h1.index(column)]} here"
  if len(r1) != len(r2):
    return f"{len(r1)} rows there, {len(r2)} here"
  return None


def compare_records(old: Path, new: Path) -> dict[str, Any]:
  """Whether the records of two trainings of one run are equal:
  {"metrics": None or the first difference, "rows": N, "summary": None or the
  keys that differ (timing keys left out)}."""
  rows = len(read_table(new / METRICS_FILE)[1])
  s1, s2 = read_json(old / SUMMARY_FILE), read_json(new / SUMMARY_FILE)
  keys = sorted(k for k in set(s1) | set(s2) if k not in TIMING_KEYS and s1.get(k) != s2.get(k))
  return {"metrics": _metrics_difference(old, new), "rows": rows, "summary": keys or None}


__all__ = ["TIMING_KEYS", "compare_records", "prepare", "read_config"]
