"""Collect run records: scan a results folder into usable and excluded runs.

:func:`collect` scans a results folder (``store.scan_runs``) and sorts every run
folder into usable runs and excluded ones. A run is usable when its status is
``complete`` and its ``summary.json`` holds a finite ``score`` and
``normalized_score``. Every other run is excluded with a reason, and every
report lists it by path, so nothing is averaged silently:

* ``failed``: the run stopped with an error (the error's first line is kept);
* ``diverged``: its loss or parameters became non-finite (the iteration is
  kept); ``include_diverged=True`` counts it at its evaluated score instead,
  when that score is finite;
* ``incomplete``: still running, interrupted, or never started;
* ``missing_config``, ``missing_metrics``, ``empty``, ``unreadable``,
  ``foreign``: a damaged seed folder (``disco_eval.store.damage``): config.json
  or metrics.csv lost, nothing in it, a file that does not parse, or a folder
  that is not a run;
* ``corrupt``: inconsistent files (``RunInfo.problem``), or a complete run
  whose summary lacks its score;
* ``nan``: the score or the normalised score is NaN or infinite;
* ``duplicate``: the same run (one configuration, task and seed) found again
  in a later results folder (:func:`collect` takes several): it is counted
  once, from the first folder given that holds it, and the other copies are
  listed, so that results copied between machines are never double-counted.

Runs are grouped by suite and protocol label (:mod:`disco_eval.analysis
.labels`): a run trained with a step budget other than the protocol's gets the
label ``NAME@STEPS`` (e.g. ``reference@1508``) and forms its own group, since
scores after different budgets are not comparable. Statistics are never
computed across groups. Within a group, runs are one rule's seeds only when
they are one configuration (the fingerprint of their effective settings,
:mod:`disco_eval.config.fingerprint`): runs of one rule name made with
other settings (another learning rate, other weights) are labelled apart,
e.g. ``disco103[lr=0.003]`` (:func:`disco_eval.analysis.labels.variant_labels`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from disco_eval import runtime, store
from disco_eval.analysis import labels, rule_kinds
from disco_eval.config.fingerprint import fingerprint
from disco_eval.errors import UserError

EXCLUSION_REASONS = (
  "failed",
  "diverged",
  "incomplete",
  "missing_config",
  "missing_metrics",
  "empty",
  "unreadable",
  "foreign",
  "corrupt",
  "nan",
  "duplicate",
)


class GroupKey(NamedTuple):
  """Runs that may be compared: one suite under one protocol label."""

  suite: str
  protocol: str


@dataclasses.dataclass(frozen=True)
class Run:
  """A complete run with finite scores.

  ``protocol`` is the protocol's manifest name; ``protocol_label`` adds
  ``@STEPS`` when the run's budget differs from the protocol's. ``rule`` is
  the label of the run's configuration (``rule_name`` alone, or e.g.
  ``disco103[lr=0.003]`` for runs of one rule made with other settings).
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
  # The rule's name as its run folder holds it; ``rule`` is the label of its
  # configuration, the name alone or ``NAME[KEY=VALUE]`` (see _label_variants).
  rule_name: str = ""
  # config.fingerprint.fingerprint of the run's stored config.
  fingerprint: str = ""
  # A diverged run counted at its evaluated score (``include_diverged``).
  diverged: bool = dataclasses.field(default=False, compare=False, hash=False)
  # The budget the run was trained for (``NAME@STEPS``: STEPS; else the protocol's).
  budget: int = dataclasses.field(default=0, compare=False, hash=False)
  # The rule's category and whether the suite is held out for it (analysis.rule_kinds).
  kind: rule_kinds.RuleCategory = dataclasses.field(
    default=rule_kinds.RuleCategory(rule_kinds.NO_MANIFEST, "unknown"), compare=False, hash=False
  )
  # Where the run trained: disco_eval.runtime.backend_label of its config.
  backend: str = dataclasses.field(default="unknown", compare=False, hash=False)
  # Where `score` comes from: None for the final evaluation, else the env
  # steps at which it was read from the training curve (analysis.at_steps).
  read_at: int | None = dataclasses.field(default=None, compare=False, hash=False)

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
  """The runs found under one or more results folders.

  ``all_rules`` holds every rule name found under the folders, before any
  filter, so that plots can give each rule the same colour whatever is shown.
  """

  roots: tuple[Path, ...]
  runs: tuple[Run, ...]
  excluded: tuple[Excluded, ...]
  all_rules: tuple[str, ...]
  # Whether diverged runs are counted at their evaluated score (else excluded).
  include_diverged: bool = False

  @property
  def where(self) -> str:
    """The folders, for messages: ``results`` or ``a, b``."""
    return where(self.roots)

  def diverged_counted(self) -> int:
    """How many diverged runs are counted at their evaluated score."""
    return sum(run.diverged for run in self.runs)

  def counted_text(self) -> str:
    """'N diverged run(s) counted at the evaluated score', or '' if none."""
    n = self.diverged_counted()
    return f"{n} diverged run(s) counted at the evaluated score" if n else ""

  def diverged_note(self) -> str | None:
    """The line that says what was done with diverged runs (None if none)."""
    return diverged_note(self.diverged_counted(), self.excluded, self.include_diverged)

  def groups(self) -> dict[GroupKey, list[Run]]:
    """Usable runs by (suite, protocol label), in sorted order."""
    out: dict[GroupKey, list[Run]] = defaultdict(list)
    for run in self.runs:
      out[run.key].append(run)
    return {key: out[key] for key in sorted(out)}

  def table(self) -> dict[GroupKey, dict[str, dict[str, dict[int, Run]]]]:
    """Usable runs as ``[group][task][rule][seed] -> Run``."""
    return {key: nest_runs(runs) for key, runs in self.groups().items()}


def where(roots: Sequence[Path]) -> str:
  """Folders for messages: ``results`` or ``a, b``."""
  return ", ".join(str(r) for r in roots)


def as_roots(root: str | Path | Sequence[str | Path]) -> tuple[Path, ...]:
  """One folder or several as a tuple of Paths, each once (a folder given
  twice, under any spelling, is read once); UserError for none."""
  items = [root] if isinstance(root, (str, Path)) else list(root)
  seen: dict[Path, Path] = {}
  for item in items:
    seen.setdefault(Path(item).resolve(), Path(item))
  if not seen:
    raise UserError("no results folder given; pass one or more FOLDERs")
  return tuple(seen.values())


def drop_duplicates(runs: Sequence[Run]) -> tuple[list[Run], list[Excluded]]:
  """`runs` (in the order of their folders) with each run counted once.

  Two runs are the same run when they have one configuration (fingerprint),
  protocol label, suite, task, rule name and seed: results copied between
  machines, or one run rerun elsewhere. The first copy is kept; the others
  become ``duplicate`` exclusions naming it (and their score when it differs).
  """
  kept: dict[tuple, Run] = {}
  dropped: list[Excluded] = []
  for run in runs:
    same = (run.key, run.task, run.rule_name or run.rule, run.seed, run.fingerprint)
    first = kept.setdefault(same, run)
    if first is run:
      continue
    differs = (
      "" if first.score == run.score else f" (score {run.score:.6g} here, {first.score:.6g} there)"
    )
    dropped.append(
      Excluded(
        run.path,
        "duplicate",
        f"same configuration and seed as {first.path}, which is counted once instead{differs}",
        suite=run.suite,
        task=run.task,
        rule=run.rule,
        seed=run.seed,
      )
    )
  return list(kept.values()), dropped


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


def diverged_note(counted: int, excluded: Sequence[Excluded], include: bool) -> str | None:
  """The line printed beside an aggregate about diverged runs: how many were
  excluded (and how to count them), or counted; None when there are none."""
  left_out = sum(e.reason == "diverged" for e in excluded)
  if include:
    if not counted and not left_out:
      return None
    note = f"{counted} diverged run{'s' if counted != 1 else ''} counted at the evaluated score"
    note += " (--include-diverged)"
    return note + (f"; {left_out} left out: no finite evaluated score" if left_out else "")
  if not left_out:
    return None
  return (
    f"{left_out} diverged run{'s' if left_out != 1 else ''} excluded "
    f"(use --include-diverged to count {'it' if left_out == 1 else 'them'} "
    "at the evaluated score)"
  )


def _diverged_detail(info: store.RunInfo) -> str:
  """Where a diverged run was first seen non-finite, and its evaluated score."""
  found = (info.summary or {}).get("diverged") or _status_detail(info.path).get("diverged") or {}
  at = (
    f" at iteration {found.get('iteration')} ({found.get('env_steps')} env steps)"
    if isinstance(found, dict) and found
    else ""
  )
  score = finite((info.summary or {}).get("score"))
  shown = "not finite" if score is None else f"{score:.6g}"
  return f"loss or parameters non-finite{at}; evaluated score {shown}"


def _incomplete(info: store.RunInfo, where: dict) -> Excluded:
  """The exclusion of a running or interrupted run; one whose writer is gone
  (its pid on this host no longer exists) died without a status; one written
  on another host is named as such (its pid cannot be checked from here)."""
  steps = _status_detail(info.path).get("env_steps")
  at = f" at {steps} env steps" if isinstance(steps, int) else ""
  elsewhere = store.writer_elsewhere(info.path) if info.status == "running" else None
  if info.status == "running" and store.writer_gone(info.path):
    detail = f"died without a status (killed? out of memory?){at}; rerun the sweep to resume it"
  elif elsewhere is not None:
    detail = (
      f"running on {elsewhere}: cannot check from here{at} (it may run or have died; "
      "look on that host, and rerun the sweep there, or here once it is gone, to resume it)"
    )
  else:
    detail = (
      f"status is {info.status}{at} (still running or interrupted; rerun the sweep to resume it)"
    )
  return Excluded(info.path, "incomplete", detail, **where)


def _classify(
  info: store.RunInfo, include_diverged: bool = False, cache: dict | None = None
) -> Run | Excluded:
  """A usable Run, or an Excluded with its reason (diverged runs are usable
  only with `include_diverged` and a finite evaluated score; `cache`: rule
  manifests read so far)."""
  where = dict(suite=info.suite, task=info.task, rule=info.rule, seed=info.seed)
  problem = info.problem
  if problem:
    return Excluded(info.path, info.reason or "corrupt", problem, **where)
  if info.status == "diverged":
    summary = info.summary or {}
    usable = finite(summary.get("score")) is not None
    usable = usable and finite(summary.get("normalized_score")) is not None
    if not (include_diverged and usable):
      return Excluded(info.path, "diverged", _diverged_detail(info), **where)
  if info.status is None:
    return Excluded(info.path, "incomplete", "never started (no status.json)", **where)
  if info.status in ("running", "interrupted"):
    return _incomplete(info, where)
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
  label = labels.run_label(info.config, protocol, steps)
  return Run(
    suite=info.suite,
    protocol=protocol,
    protocol_label=label,
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
    diverged=info.status == "diverged",
    budget=labels.run_budget(label, info.config, steps),
    kind=rule_kinds.rule_kind((info.config or {}).get("rule"), info.suite, cache),
    backend=runtime.backend_label(info.config),
  )


def _label_variants(runs: list[Run], configs: Mapping[Path, Any]) -> list[Run]:
  """`runs` labelled by configuration: within one group (suite and protocol
  label), runs of one rule name whose fingerprints differ get distinct labels
  (:func:`disco_eval.analysis.labels.variant_labels`)."""
  prints = [fingerprint(configs.get(r.path)) for r in runs]
  by_rule: dict[tuple[GroupKey, str], dict[str, Mapping[str, Any]]] = defaultdict(dict)
  for run, fp in zip(runs, prints):
    by_rule[run.key, run.rule].setdefault(fp, configs.get(run.path) or {})
  named = {key: labels.variant_labels(key[1], found) for key, found in by_rule.items()}
  return [
    dataclasses.replace(r, rule=named[r.key, r.rule][fp], rule_name=r.rule, fingerprint=fp)
    for r, fp in zip(runs, prints)
  ]


def _keep_labels(runs: list[Run], rules: Sequence[str] | None, root: str) -> list[Run]:
  """`runs` whose rule name or label is one of `rules` (a name keeps all its
  variants, a label such as ``disco103[lr=0.003]`` only that one); a
  UserError for a label that no run has."""
  if not rules or not any("[" in r for r in rules):
    return runs
  found = sorted({r.rule for r in runs})
  missing = [r for r in rules if "[" in r and r not in found]
  if missing:
    raise UserError(
      f"no runs labelled '{missing[0]}' under {root}; labels found: {', '.join(found) or 'none'}"
    )
  return [r for r in runs if r.rule in rules or r.rule_name in rules]


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
  """``"a,b"`` (or a sequence of names) as a tuple of names; None if empty.
  Commas inside brackets belong to a label (``disco103[lr=0.003,train.x=4]``)."""
  if text is None:
    return None
  items = re.split(r",(?![^\[]*\])", text) if isinstance(text, str) else list(text)
  names = tuple(dict.fromkeys(n.strip() for n in items if n and n.strip()))
  return names or None


def _check_filters(
  infos: list[store.RunInfo],
  root: str,
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
  root: str | Path | Sequence[str | Path],
  suite: str | None = None,
  rules: Sequence[str] | str | None = None,
  protocol: str | None = None,
  include_diverged: bool = False,
) -> Collection:
  """Scans `root` and sorts its runs into usable and excluded ones.

  Args:
    root: the results folder, or several (results of several machines): runs
      are gathered from all, and a run found in more than one is counted
      once, from the first folder given (:func:`drop_duplicates`).
    suite: keep only this suite.
    rules: keep only these rules (names, or ``"a,b"``): a name keeps all
      its runs, a label of runs made with other settings
      (``disco103[lr=0.003]``) only those.
    protocol: keep only this protocol (a name, or a label ``NAME@STEPS``).
    include_diverged: count diverged runs at their evaluated score (those
      with a finite one) instead of excluding them.

  Returns:
    A :class:`Collection`. Runs whose suite, rule or protocol is unknown
    (corrupt files) pass every filter, so that they are listed as excluded.

  Raises:
    UserError: no runs under one of the folders, or a filter value matches none.
  """
  roots = as_roots(root)
  infos = []
  for folder in roots:  # a folder without runs is a mistyped or wrong one: never skipped
    found = store.scan_runs(folder)
    if not found:
      raise UserError(f"no runs found under {folder}; run `disco-eval run SUITE` first")
    infos += found
  root = where(roots)
  rules = parse_list(rules)
  names = tuple(dict.fromkeys(r.split("[", 1)[0] for r in rules)) if rules else None
  _check_filters(infos, root, suite, names, protocol)
  runs: list[Run] = []
  excluded: list[Excluded] = []
  cache: dict = {}
  for info in infos:
    if not _selected(info, suite, names, protocol):
      continue
    item = _classify(info, include_diverged, cache)
    (runs if isinstance(item, Run) else excluded).append(item)
  runs, duplicates = drop_duplicates(_label_variants(runs, {i.path: i.config for i in infos}))
  runs = _keep_labels(runs, rules, root)
  all_rules = tuple(sorted({i.rule for i in infos if i.rule} | {r.rule for r in runs}))
  return Collection(roots, tuple(runs), tuple(excluded + duplicates), all_rules, include_diverged)


def nothing_usable_error(collection: Collection) -> UserError:
  """The error for a folder whose selected runs are all excluded."""
  counts = defaultdict(int)
  for e in collection.excluded:
    counts[e.reason] += 1
  first = collection.excluded[0].describe() if collection.excluded else ""
  note = collection.diverged_note()
  return UserError(
    f"no complete runs to compare under {collection.where}: "
    f"{len(collection.excluded)} excluded ("
    + ", ".join(f"{n} {r}" for r, n in counts.items())
    + f"), e.g. {first}"
    + (f"; {note}" if note and not collection.include_diverged else "")
  )
