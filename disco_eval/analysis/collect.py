"""Collect run records: scan a results folder into usable and excluded runs.

:func:`collect` scans a results folder (``store.scan_runs``) and sorts every run
folder into usable runs and excluded ones. A run is usable when its status is
``complete`` and its ``summary.json`` holds a finite ``score`` and
``normalized_score``. Every other run is excluded with a reason, and every
report lists it by path, so nothing is averaged silently:

* ``failed``: the run stopped with an error (the error's first line is kept);
* ``incomplete``: still running, interrupted, or never started;
* ``corrupt``: unreadable or inconsistent files (``RunInfo.problem``), or a
  complete run whose summary lacks its score;
* ``nan``: the score or the normalised score is NaN or infinite.

Runs are grouped by suite and protocol label (:mod:`disco_eval.analysis
.labels`): a run trained with a step budget other than the protocol's gets the
label ``NAME@STEPS`` (e.g. ``reference@1508``) and forms its own group, since
scores after different budgets are not comparable. Statistics are never
computed across groups.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from disco_eval import store
from disco_eval.analysis import labels
from disco_eval.errors import UserError

EXCLUSION_REASONS = ("failed", "incomplete", "corrupt", "nan")


class GroupKey(NamedTuple):
  """Runs that may be compared: one suite under one protocol label."""

  suite: str
  protocol: str


@dataclasses.dataclass(frozen=True)
class Run:
  """A complete run with finite scores.

  ``protocol`` is the protocol's manifest name; ``protocol_label`` adds
  ``@STEPS`` when the run's budget differs from the protocol's.
  """

  suite: str
  protocol: str
  protocol_label: str
  task: str
  rule: str
  seed: int
  env_steps: int
  score: float
  normalized_score: float
  metric: str
  path: Path
  train: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)
  # The protocol's figures reported beside the score (e.g. Crafter's mean
  # episode reward, NetHack's mean score), by name; NaN where missing.
  beside: Mapping[str, float] = dataclasses.field(default_factory=dict, compare=False, hash=False)
  # Evaluation episodes cut at the protocol's eval_max_steps (scored as far
  # as they went).
  eval_truncated: int = dataclasses.field(default=0, compare=False, hash=False)

  @property
  def key(self) -> GroupKey:
    return GroupKey(self.suite, self.protocol_label)


@dataclasses.dataclass(frozen=True)
class Excluded:
  """A run left out of every statistic, and why."""

  path: Path
  reason: str  # one of EXCLUSION_REASONS
  detail: str
  suite: str | None = None
  task: str | None = None
  rule: str | None = None
  seed: int | None = None

  def describe(self) -> str:
    """One line: reason, path and detail."""
    return f"excluded {self.reason} run {self.path}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class Collection:
  """The runs found under a results folder.

  ``all_rules`` holds every rule name found under the folder, before any
  filter, so that plots can give each rule the same colour whatever is shown.
  """

  root: Path
  runs: tuple[Run, ...]
  excluded: tuple[Excluded, ...]
  all_rules: tuple[str, ...]

  def groups(self) -> dict[GroupKey, list[Run]]:
    """Usable runs by (suite, protocol label), in sorted order."""
    out: dict[GroupKey, list[Run]] = defaultdict(list)
    for run in self.runs:
      out[run.key].append(run)
    return {key: out[key] for key in sorted(out)}

  def table(self) -> dict[GroupKey, dict[str, dict[str, dict[int, Run]]]]:
    """Usable runs as ``[group][task][rule][seed] -> Run``."""
    return {key: nest_runs(runs) for key, runs in self.groups().items()}


def nest_runs(runs: Iterable[Run]) -> dict[str, dict[str, dict[int, Run]]]:
  """Runs as ``[task][rule][seed] -> Run``."""
  nested: dict[str, dict[str, dict[int, Run]]] = {}
  for run in runs:
    nested.setdefault(run.task, {}).setdefault(run.rule, {})[run.seed] = run
  return nested


def _first_line(text: Any) -> str:
  """The first non-empty line of `text` (or a placeholder)."""
  for line in str(text or "").splitlines():
    if line.strip():
      return line.strip()
  return "no error message recorded"


def finite(value: Any) -> float | None:
  """`value` as a finite float, else None."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def _status_detail(path: Path) -> dict:
  """status.json of a run as a dict ({} when unreadable)."""
  try:
    return store.RunRecord(path).status or {}
  except UserError:
    return {}


def _classify(info: store.RunInfo) -> Run | Excluded:
  """A usable Run, or an Excluded with its reason."""
  where = dict(suite=info.suite, task=info.task, rule=info.rule, seed=info.seed)
  problem = info.problem
  if problem:
    return Excluded(info.path, "corrupt", problem, **where)
  if info.status is None:
    return Excluded(info.path, "incomplete", "never started (no status.json)", **where)
  if info.status in ("running", "interrupted"):
    steps = _status_detail(info.path).get("env_steps")
    at = f" at {steps} env steps" if isinstance(steps, int) else ""
    return Excluded(
      info.path,
      "incomplete",
      f"status is {info.status}{at} (still running or interrupted; rerun the sweep to resume it)",
      **where,
    )
  if info.status == "failed":
    error = _first_line(_status_detail(info.path).get("error"))
    return Excluded(info.path, "failed", error, **where)
  summary = info.summary
  if not isinstance(summary, dict) or "score" not in summary:
    return Excluded(info.path, "corrupt", "summary.json lacks a score", **where)
  if "normalized_score" not in summary:
    return Excluded(info.path, "corrupt", "summary.json lacks normalized_score", **where)
  protocol = labels.protocol_name(info)
  steps = labels.run_env_steps(info)
  if protocol is None or steps is None:
    return Excluded(
      info.path, "corrupt", "config.json and summary.json name no protocol or env_steps", **where
    )
  score = finite(summary.get("score"))
  normalized = finite(summary.get("normalized_score"))
  if score is None:
    return Excluded(info.path, "nan", f"score is {summary.get('score')!r}", **where)
  if normalized is None:
    return Excluded(
      info.path,
      "nan",
      f"normalized_score is {summary.get('normalized_score')!r} "
      f"(does the suite manifest normalise task {info.task!r}?)",
      **where,
    )
  train = (info.config or {}).get("train")
  protocol_doc = (info.config or {}).get("protocol")
  names = protocol_doc.get("reported_beside", []) if isinstance(protocol_doc, dict) else []
  beside = {str(n): finite(summary.get(n)) for n in names if isinstance(n, str)}
  return Run(
    suite=info.suite,
    protocol=protocol,
    protocol_label=labels.run_label(info.config, protocol, steps),
    task=info.task,
    rule=info.rule,
    seed=int(info.seed),
    env_steps=steps,
    score=score,
    normalized_score=normalized,
    metric=str(summary.get("metric") or "score"),
    path=info.path,
    train=dict(train) if isinstance(train, dict) else {},
    beside={k: (float("nan") if v is None else v) for k, v in beside.items()},
    eval_truncated=int(finite(summary.get("eval_truncated")) or 0),
  )


def _selected(
  info: store.RunInfo, suite: str | None, rules: Sequence[str] | None, protocol: str | None
) -> bool:
  """Whether a scanned run passes the filters (unknown fields pass)."""
  if suite is not None and info.suite is not None and info.suite != suite:
    return False
  if rules and info.rule is not None and info.rule not in rules:
    return False
  if protocol is not None:
    name, label = labels.run_labels(info)
    if name is not None and protocol not in (name, label):
      return False
  return True


def parse_list(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
  """``"a,b"`` (or a sequence of names) as a tuple of names; None if empty."""
  if text is None:
    return None
  items = text.split(",") if isinstance(text, str) else list(text)
  names = tuple(dict.fromkeys(n.strip() for n in items if n and n.strip()))
  return names or None


def _check_filters(
  infos: list[store.RunInfo],
  root: Path,
  suite: str | None,
  rules: Sequence[str] | None,
  protocol: str | None,
) -> None:
  """UserError naming a filter value that matches no run at all."""
  suites_found = sorted({i.suite for i in infos if i.suite})
  if suite is not None and suite not in suites_found:
    raise UserError(
      f"no runs of suite '{suite}' under {root}; suites found: {', '.join(suites_found) or 'none'}"
    )
  in_suite = [i for i in infos if suite is None or i.suite in (suite, None)]
  rules_found = sorted({i.rule for i in in_suite if i.rule})
  missing = [r for r in rules or () if r not in rules_found]
  if missing:
    raise UserError(
      f"no runs of rule '{missing[0]}' under {root}"
      f"{f' for suite {suite}' if suite else ''}; rules found: "
      f"{', '.join(rules_found) or 'none'}"
    )
  if protocol is not None:
    found = sorted({p for i in in_suite for p in labels.run_labels(i) if p})
    if protocol not in found:
      raise UserError(
        f"no runs with protocol '{protocol}' under {root}; "
        f"protocols found: {', '.join(found) or 'none'}"
      )


def collect(
  root: str | Path,
  suite: str | None = None,
  rules: Sequence[str] | str | None = None,
  protocol: str | None = None,
) -> Collection:
  """Scans `root` and sorts its runs into usable and excluded ones.

  Args:
    root: the results folder.
    suite: keep only this suite.
    rules: keep only these rules (names, or ``"a,b"``).
    protocol: keep only this protocol (a name, or a label ``NAME@STEPS``).

  Returns:
    A :class:`Collection`. Runs whose suite, rule or protocol is unknown
    (corrupt files) pass every filter, so that they are listed as excluded.

  Raises:
    UserError: no runs at all under `root`, or a filter value matches none.
  """
  root = Path(root)
  infos = store.scan_runs(root)
  if not infos:
    raise UserError(f"no runs found under {root}; run `disco-eval run SUITE` first")
  rules = parse_list(rules)
  _check_filters(infos, root, suite, rules, protocol)
  runs: list[Run] = []
  excluded: list[Excluded] = []
  for info in infos:
    if not _selected(info, suite, rules, protocol):
      continue
    item = _classify(info)
    (runs if isinstance(item, Run) else excluded).append(item)
  all_rules = tuple(sorted({i.rule for i in infos if i.rule}))
  return Collection(root, tuple(runs), tuple(excluded), all_rules)


def nothing_usable_error(collection: Collection) -> UserError:
  """The error for a folder whose selected runs are all excluded."""
  counts = defaultdict(int)
  for e in collection.excluded:
    counts[e.reason] += 1
  first = collection.excluded[0].describe() if collection.excluded else ""
  return UserError(
    f"no complete runs to compare under {collection.root}: "
    f"{len(collection.excluded)} excluded ("
    + ", ".join(f"{n} {r}" for r, n in counts.items())
    + f"), e.g. {first}"
  )
