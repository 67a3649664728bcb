"""Collect run records and compare update rules with rliable-style statistics.

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

Runs are grouped by suite and protocol. A protocol is named by its manifest
name; a run trained with a step budget other than the protocol's gets the
label ``NAME@STEPS`` (e.g. ``reference@1508``) and forms its own group, since
scores after different budgets are not comparable. Statistics are never
computed across groups.

:func:`compare` computes, per group:

* a per-task table: per rule, the number of seeds and the mean over seeds of
  the final raw score and of the normalised score, with a Student-t
  confidence interval (``n - 1`` degrees of freedom; none for one seed);
* an aggregate table: per rule, each metric (IQM, median, mean, optimality
  gap) of the ``[seeds, tasks]`` matrix of normalised scores, with
  stratified-bootstrap percentile intervals (``stats.interval_estimates``).
  Only tasks that every rule has enter it, and for each rule only seeds that
  it has on all of those tasks;
* the probability of improvement ``P(X > Y)`` for every ordered pair of rules,
  with a stratified-bootstrap interval;
* published baselines (``[[published]]`` tables of the suite manifest) for the
  group's protocol, shown as separate rows marked "published" and never part
  of any bootstrap over runs made here;
* warnings: fewer than 3 seeds, unequal seed counts, tasks or seeds left out
  of the aggregate, differing training settings, several protocols.

Published baselines are ``[[published]]`` tables of a suite manifest::

  [[published]]
  rule = "PPO (OpenAI)"       # a display name
  task = "coinrun"
  protocol = "easy-200"       # the protocol (label) the score belongs to
  score = 8.6                 # raw final score
  normalized_score = 0.7      # optional; else normalised with the manifest
  seeds = 3                   # optional
  per_seed = [8.1, 8.9, 8.8]  # optional raw final score of each seed
  citation = "Cobbe et al. (2020)"
  note = "read off a figure"  # optional

When a published rule has rows for every task of a group's aggregate, its
aggregate is shown too (marked published): with bootstrap intervals of its
own when every row has ``per_seed`` scores (as many per task) that the
manifest can normalise, else as a point computed from the per-task scores.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from disco_eval import stats, store
from disco_eval.config import suites
from disco_eval.errors import UserError

DEFAULT_METRICS = ("iqm", "median", "mean", "og")
METRIC_LABELS = {"iqm": "IQM", "median": "Median", "mean": "Mean",
                 "og": "Optimality gap"}
PER_TASK_CI = "Student-t"
MIN_SEEDS = 3
EXCLUSION_REASONS = ("failed", "incomplete", "corrupt", "nan")
# Training settings that do not change what a run measures.
_IGNORED_TRAIN_KEYS = ("chunk", "iterations")


# --- collecting runs -----------------------------------------------------------


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
  train: Mapping[str, Any] = dataclasses.field(default_factory=dict,
                                               compare=False, hash=False)
  # The protocol's figures reported beside the score (e.g. Crafter's mean
  # episode reward, NetHack's mean score), by name; NaN where missing.
  beside: Mapping[str, float] = dataclasses.field(default_factory=dict,
                                                  compare=False, hash=False)
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


def _finite(value: Any) -> float | None:
  """`value` as a finite float, else None."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def _protocol_name(info: store.RunInfo) -> str | None:
  """The protocol name from the config, else from the summary."""
  protocol = (info.config or {}).get("protocol")
  if isinstance(protocol, dict) and isinstance(protocol.get("name"), str):
    return protocol["name"]
  if isinstance(protocol, str):
    return protocol
  name = (info.summary or {}).get("protocol")
  return name if isinstance(name, str) else None


def _env_steps(info: store.RunInfo) -> int | None:
  """The run's step budget from the summary, else from the config."""
  for doc in (info.summary or {}, info.config or {}):
    value = doc.get("env_steps")
    if isinstance(value, int) and not isinstance(value, bool):
      return value
  return None


def protocol_label(config: Mapping[str, Any] | None, name: str,
                   env_steps: int | None) -> str:
  """``name``, or ``name@STEPS`` when the budget is not the protocol's.

  The budget counts as the protocol's when it is the protocol's
  ``env_steps`` rounded up to whole iterations (``num_envs * rollout_len``).
  """
  protocol = (config or {}).get("protocol")
  budget = protocol.get("env_steps") if isinstance(protocol, dict) else None
  asked = (config or {}).get("budget")
  if isinstance(asked, int) and isinstance(budget, (int, float)):
    # The budget asked for (rules whose iterations differ in size stop at
    # slightly different env steps, and still share a label).
    env_steps = budget if asked == budget else asked
  if env_steps is None or not isinstance(budget, (int, float)):
    return name
  train = (config or {}).get("train") or {}
  try:
    per_iteration = int(train["num_envs"]) * int(train["rollout_len"])
  except (KeyError, TypeError, ValueError):
    per_iteration = 1
  changed = sorted(str(k).split(".", 1)[1] + "=" + str(v)
                   for k, v in ((config or {}).get("overrides") or {}).items()
                   if str(k).startswith("protocol."))
  suffix = "".join(f"+{c}" for c in changed)
  if budget <= env_steps < budget + max(1, per_iteration):
    return name + suffix
  return f"{name}@{env_steps}{suffix}"


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
    return Excluded(info.path, "incomplete", "never started (no status.json)",
                    **where)
  if info.status == "running":
    steps = _status_detail(info.path).get("env_steps")
    at = f" at {steps} env steps" if isinstance(steps, int) else ""
    return Excluded(info.path, "incomplete",
                    f"status is running{at} (still running or interrupted; "
                    "rerun the sweep to resume it)", **where)
  if info.status == "failed":
    error = _first_line(_status_detail(info.path).get("error"))
    return Excluded(info.path, "failed", error, **where)
  summary = info.summary
  if not isinstance(summary, dict) or "score" not in summary:
    return Excluded(info.path, "corrupt", "summary.json lacks a score", **where)
  if "normalized_score" not in summary:
    return Excluded(info.path, "corrupt", "summary.json lacks normalized_score",
                    **where)
  protocol = _protocol_name(info)
  steps = _env_steps(info)
  if protocol is None or steps is None:
    return Excluded(info.path, "corrupt",
                    "config.json and summary.json name no protocol or env_steps",
                    **where)
  score = _finite(summary.get("score"))
  normalized = _finite(summary.get("normalized_score"))
  if score is None:
    return Excluded(info.path, "nan", f"score is {summary.get('score')!r}",
                    **where)
  if normalized is None:
    return Excluded(info.path, "nan",
                    f"normalized_score is {summary.get('normalized_score')!r} "
                    f"(does the suite manifest normalise task {info.task!r}?)",
                    **where)
  train = (info.config or {}).get("train")
  protocol_doc = (info.config or {}).get("protocol")
  names = protocol_doc.get("reported_beside", []) if isinstance(protocol_doc, dict) else []
  beside = {str(n): _finite(summary.get(n)) for n in names if isinstance(n, str)}
  return Run(suite=info.suite, protocol=protocol,
             protocol_label=protocol_label(info.config, protocol, steps),
             task=info.task, rule=info.rule, seed=int(info.seed),
             env_steps=steps, score=score, normalized_score=normalized,
             metric=str(summary.get("metric") or "score"), path=info.path,
             train=dict(train) if isinstance(train, dict) else {},
             beside={k: (float("nan") if v is None else v) for k, v in beside.items()},
             eval_truncated=int(_finite(summary.get("eval_truncated")) or 0))


def _labels(info: store.RunInfo) -> tuple[str | None, str | None]:
  """(protocol name, protocol label) of a scanned run, None where unknown."""
  name = _protocol_name(info)
  if name is None:
    return None, None
  return name, protocol_label(info.config, name, _env_steps(info))


def _selected(info: store.RunInfo, suite: str | None,
              rules: Sequence[str] | None, protocol: str | None) -> bool:
  """Whether a scanned run passes the filters (unknown fields pass)."""
  if suite is not None and info.suite is not None and info.suite != suite:
    return False
  if rules and info.rule is not None and info.rule not in rules:
    return False
  if protocol is not None:
    name, label = _labels(info)
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


def _check_filters(infos: list[store.RunInfo], root: Path, suite: str | None,
                   rules: Sequence[str] | None, protocol: str | None) -> None:
  """UserError naming a filter value that matches no run at all."""
  suites_found = sorted({i.suite for i in infos if i.suite})
  if suite is not None and suite not in suites_found:
    raise UserError(f"no runs of suite '{suite}' under {root}; suites found: "
                    f"{', '.join(suites_found) or 'none'}")
  in_suite = [i for i in infos if suite is None or i.suite in (suite, None)]
  rules_found = sorted({i.rule for i in in_suite if i.rule})
  missing = [r for r in rules or () if r not in rules_found]
  if missing:
    raise UserError(f"no runs of rule '{missing[0]}' under {root}"
                    f"{f' for suite {suite}' if suite else ''}; rules found: "
                    f"{', '.join(rules_found) or 'none'}")
  if protocol is not None:
    found = sorted({p for i in in_suite for p in _labels(i) if p})
    if protocol not in found:
      raise UserError(f"no runs with protocol '{protocol}' under {root}; "
                      f"protocols found: {', '.join(found) or 'none'}")


def collect(root: str | Path, suite: str | None = None,
            rules: Sequence[str] | str | None = None,
            protocol: str | None = None) -> Collection:
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
    raise UserError(f"no runs found under {root}; run `disco-eval run SUITE` "
                    "first")
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


# --- published baselines -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PublishedRow:
  """A published per-task score from a suite manifest (never bootstrapped
  together with runs made here)."""
  rule: str
  task: str
  protocol: str
  score: float
  normalized_score: float | None
  seeds: int | None
  per_seed: tuple[float, ...] | None
  citation: str
  note: str | None
  beside: Mapping[str, float] = dataclasses.field(default_factory=dict)


def published_rows(manifest: suites.SuiteManifest
                   ) -> tuple[list[PublishedRow], list[str]]:
  """The ``[[published]]`` rows of a suite manifest, and warnings about
  entries that were ignored because they are malformed."""
  entries = manifest.raw.get("published", [])
  if not isinstance(entries, list):
    return [], [f"suite manifest {manifest.path}: 'published' must be an array "
                "of tables ([[published]]); ignored"]
  rows, warnings = [], []
  for i, entry in enumerate(entries, start=1):
    where = f"suite manifest {manifest.path}: published entry #{i}"
    if not isinstance(entry, dict):
      warnings.append(f"{where} is not a table; ignored")
      continue
    missing = [k for k in ("rule", "task", "protocol", "score", "citation")
               if k not in entry]
    score = _finite(entry.get("score"))
    if missing or score is None:
      what = f"lacks {', '.join(missing)}" if missing else "has no finite score"
      warnings.append(f"{where} {what}; ignored")
      continue
    normalized = _finite(entry.get("normalized_score"))
    if normalized is None:
      normalized = _finite(manifest.normalize(str(entry["task"]), score,
                                              str(entry["protocol"])))
    per_seed = entry.get("per_seed")
    if per_seed is not None:
      values = [_finite(v) for v in per_seed] if isinstance(per_seed, list) else [None]
      if not values or any(v is None for v in values):
        warnings.append(f"{where} has a malformed per_seed list; it is ignored")
        per_seed = None
      else:
        per_seed = tuple(values)
    seeds = entry.get("seeds")
    seeds = int(seeds) if isinstance(seeds, int) and not isinstance(seeds, bool) else (
        len(per_seed) if per_seed else None)
    rows.append(PublishedRow(
        rule=str(entry["rule"]), task=str(entry["task"]),
        protocol=str(entry["protocol"]), score=score,
        normalized_score=normalized, seeds=seeds, per_seed=per_seed,
        citation=str(entry["citation"]),
        note=str(entry["note"]) if entry.get("note") else None,
        beside=_published_beside(manifest, entry)))
  rows += _published_beside_only(manifest)
  return rows, warnings


def _published_beside_only(manifest: suites.SuiteManifest) -> list[PublishedRow]:
  """``[[published_other_metric]]`` entries whose metric the protocol reports
  beside its score (e.g. DiscoRL's mean NetHack scores beside our medians):
  rows with no score (NaN), shown in the per-task table, never aggregated."""
  rows = []
  for entry in manifest.raw.get("published_other_metric", []) or []:
    if not isinstance(entry, dict):
      continue
    value = _finite(entry.get("value"))
    if entry.get("metric") not in _beside_names(manifest, entry) or value is None or "rule" not in entry:
      continue
    seeds = entry.get("seeds")
    rows.append(PublishedRow(
        rule=str(entry["rule"]), task=str(entry.get("task")),
        protocol=str(entry["protocol"]), score=math.nan, normalized_score=None,
        seeds=int(seeds) if isinstance(seeds, int) else None, per_seed=None,
        citation=str(entry.get("citation", "")),
        note=str(entry["note"]) if entry.get("note") else None,
        beside={str(entry["metric"]): value}))
  return rows


def _published_beside(manifest: suites.SuiteManifest, entry: dict) -> dict[str, float]:
  """The figures a published entry gives beside its score, for the names its
  protocol reports beside the score (e.g. Crafter's ``reward``)."""
  return {n: v for n in _beside_names(manifest, entry)
          if (v := _finite(entry.get(n))) is not None}


def _beside_names(manifest: suites.SuiteManifest, entry: dict) -> list[str]:
  """The names the protocol of a published entry reports beside its score."""
  protocol = manifest.protocols.get(str(entry.get("protocol")))
  return list(protocol.get("reported_beside", [])) if protocol is not None else []


def published_label(rule: str) -> str:
  """A published rule's name, marked "(published)" unless it says so."""
  return rule if "published" in rule else f"{rule} (published)"


def load_manifest(suite: str) -> tuple[suites.SuiteManifest | None, str | None]:
  """The suite's manifest, or None and a warning when it cannot be loaded."""
  try:
    return suites.load_suite(suite), None
  except UserError as exc:
    return None, (f"suite manifest of '{suite}' not loaded ({exc}); no "
                  "published baselines shown")


# --- statistics ----------------------------------------------------------------


class Estimate(NamedTuple):
  """A mean over seeds with a confidence interval (NaN bounds if n < 2)."""
  mean: float
  lo: float
  hi: float


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Estimate:
  """Mean of `values` with a Student-t interval (n - 1 degrees of freedom).

  One value gives NaN bounds; identical values give a zero-width interval.
  """
  from scipy import stats as scipy_stats
  x = np.asarray(values, dtype=np.float64)
  mean = float(x.mean())
  if x.size < 2:
    return Estimate(mean, math.nan, math.nan)
  half = float(scipy_stats.t.ppf(0.5 + confidence / 2, x.size - 1)
               * x.std(ddof=1) / math.sqrt(x.size))
  return Estimate(mean, mean - half, mean + half)


def check_settings(metrics: Sequence[str] | str, reps: int,
                   confidence: float) -> tuple[str, ...]:
  """Validated metric names (UserError on bad metrics, reps or confidence)."""
  names = parse_list(metrics) or ()
  valid = ", ".join(stats.metric_names())
  if not names:
    raise UserError(f"no metrics selected; valid metrics: {valid}")
  bad = [m for m in names if m not in stats.metric_names()]
  if bad:
    raise UserError(f"unknown metric '{bad[0]}'; valid metrics: {valid}")
  if (isinstance(reps, bool) or not isinstance(reps, (int, np.integer))
      or reps < 1):
    raise UserError(f"--reps must be a positive integer, got {reps!r}")
  if not 0.0 < confidence < 1.0:
    raise UserError(f"confidence must be between 0 and 1, got {confidence!r}")
  return names


@dataclasses.dataclass(frozen=True)
class TaskRow:
  """Per-task statistics of one rule over its seeds."""
  task: str
  rule: str
  seeds: tuple[int, ...]
  score: Estimate
  normalized: Estimate
  beside: Mapping[str, float] = dataclasses.field(default_factory=dict)  # mean over seeds


@dataclasses.dataclass(frozen=True)
class AggregateRow:
  """One aggregate metric of one rule, with its bootstrap interval.

  For published rows ``lo``/``hi`` are NaN when only a point is available.
  """
  rule: str
  metric: str
  point: float
  lo: float
  hi: float
  seeds: int
  published: bool = False


@dataclasses.dataclass(frozen=True)
class ImprovementRow:
  """P(X > Y) with its bootstrap interval."""
  x: str
  y: str
  point: float
  lo: float
  hi: float


@dataclasses.dataclass
class GroupResult:
  """Everything :func:`compare` reports for one suite and protocol."""
  key: GroupKey
  protocol_name: str
  env_steps: tuple[int, ...]
  metric: str
  rules: tuple[str, ...]
  tasks: tuple[str, ...]
  aggregate_tasks: tuple[str, ...]
  seeds: dict[str, int]
  per_task: list[TaskRow]
  aggregate: list[AggregateRow]
  improvement: list[ImprovementRow]
  published: list[PublishedRow]
  published_aggregate: list[AggregateRow]
  matrices: dict[str, np.ndarray]
  matrix_seeds: dict[str, tuple[int, ...]]
  warnings: list[str]
  # What the normalised score is called (a suite without normalisation, e.g.
  # NetHack's single task, aggregates raw scores and says so).
  norm_label: str = "normalised"


@dataclasses.dataclass
class CompareResult:
  """The result of :func:`compare`: one :class:`GroupResult` per suite and
  protocol, the excluded runs, and warnings that concern all groups."""
  root: Path
  metrics: tuple[str, ...]
  reps: int
  seed: int
  confidence: float
  groups: list[GroupResult]
  excluded: list[Excluded]
  warnings: list[str]

  def to_json(self) -> dict:
    """A JSON-able dict (NaN and infinities become null)."""
    return _jsonable({
        "root": self.root,
        "settings": {
            "metrics": list(self.metrics), "reps": self.reps, "seed": self.seed,
            "confidence": self.confidence,
            "aggregate_ci": "stratified bootstrap, percentile",
            "per_task_ci": f"{PER_TASK_CI} over seeds (n-1 degrees of freedom)",
        },
        "groups": [_group_json(g) for g in self.groups],
        "excluded": [dataclasses.asdict(e) for e in self.excluded],
        "warnings": self.warnings,
    })


def _group_json(group: GroupResult) -> dict:
  """JSON form of a group (matrices as lists of rows, seeds labelled)."""
  doc = {
      "suite": group.key.suite, "protocol": group.key.protocol,
      "protocol_name": group.protocol_name, "env_steps": list(group.env_steps),
      "metric": group.metric, "rules": list(group.rules),
      "tasks": list(group.tasks), "aggregate_tasks": list(group.aggregate_tasks),
      "seeds": group.seeds,
      "per_task": [
          {"task": r.task, "rule": r.rule, "seeds": list(r.seeds),
           "num_seeds": len(r.seeds), "score": r.score._asdict(),
           "normalized_score": r.normalized._asdict(),
           "beside": dict(r.beside)} for r in group.per_task],
      "aggregate": [dataclasses.asdict(r) for r in group.aggregate],
      "probability_of_improvement": [dataclasses.asdict(r)
                                     for r in group.improvement],
      "published": [dict(dataclasses.asdict(r), published=True)
                    for r in group.published],
      "published_aggregate": [dataclasses.asdict(r)
                              for r in group.published_aggregate],
      "matrices": {rule: {"seeds": list(group.matrix_seeds[rule]),
                          "tasks": list(group.aggregate_tasks),
                          "normalized_scores": m.tolist()}
                   for rule, m in group.matrices.items()},
      "warnings": group.warnings,
      "normalized_label": group.norm_label,
  }
  return doc


def _jsonable(value: Any) -> Any:
  """`value` with NaN/inf -> None, paths -> str, tuples -> lists, numpy ->
  Python."""
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, np.generic):
    return _jsonable(value.item())
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, Path):
    return str(value)
  return value


def _ordered_rules(present: Iterable[str], order: Sequence[str] | None
                   ) -> tuple[str, ...]:
  """Rules in the order asked for (``--rules``), else sorted."""
  present = set(present)
  if order:
    return tuple(r for r in order if r in present)
  return tuple(sorted(present))


def _ordered_tasks(present: Iterable[str],
                   manifest: suites.SuiteManifest | None) -> tuple[str, ...]:
  """Tasks in manifest order, unknown ones sorted after them."""
  present = set(present)
  known = [t for t in (manifest.tasks if manifest else ()) if t in present]
  return tuple(known + sorted(present - set(known)))


def _aggregate_matrices(nested: Mapping[str, Mapping[str, Mapping[int, Run]]],
                        rules: Sequence[str], tasks: Sequence[str],
                        warnings: list[str]
                        ) -> tuple[tuple[str, ...], dict[str, np.ndarray],
                                   dict[str, tuple[int, ...]]]:
  """``[seeds, tasks]`` matrices of normalised scores over the tasks all
  rules share, each rule keeping the seeds it has on all of them."""
  common = tuple(t for t in tasks if all(nested[t].get(r) for r in rules))
  dropped = [t for t in tasks if t not in common]
  if dropped:
    lacking = {t: [r for r in rules if not nested[t].get(r)] for t in dropped}
    warnings.append(
        "tasks left out of the aggregate because not every rule has them: "
        + "; ".join(f"{t} (no runs of {', '.join(rs)})" for t, rs in lacking.items()))
  if not common:
    warnings.append("no task is shared by all rules: no aggregate and no "
                    "probability of improvement")
    return common, {}, {}
  matrices, seeds_of = {}, {}
  for rule in rules:
    seed_sets = [set(nested[t][rule]) for t in common]
    seeds = tuple(sorted(set.intersection(*seed_sets)))
    left_out = sorted({(t, s) for t in common for s in nested[t][rule]
                       if s not in seeds})
    if left_out:
      warnings.append(
          f"rule {rule}: runs left out of the aggregate because their seed "
          "lacks a usable run on another task: "
          + ", ".join(f"{t}/seed{s}" for t, s in left_out))
    if not seeds:
      warnings.append(f"rule {rule}: no seed has usable runs on all aggregate "
                      "tasks; rule left out of the aggregate")
      continue
    matrices[rule] = np.array(
        [[nested[t][rule][s].normalized_score for t in common] for s in seeds])
    seeds_of[rule] = seeds
  return common, matrices, seeds_of


def _seed_warnings(per_task: Sequence[TaskRow], seeds: Mapping[str, int],
                   rules: Sequence[str]) -> list[str]:
  """Warnings about too few seeds and unequal seed counts."""
  out = []
  for rule in rules:
    counts = [len(r.seeds) for r in per_task if r.rule == rule]
    if counts and min(counts) < MIN_SEEDS:
      worst = [r.task for r in per_task if r.rule == rule
               and len(r.seeds) == min(counts)]
      out.append(f"rule {rule}: fewer than {MIN_SEEDS} seeds ({min(counts)} on "
                 f"{', '.join(worst)}); intervals from so few seeds are "
                 "unreliable, run more seeds")
  if len(set(seeds.values())) > 1:
    out.append("unequal numbers of seeds between rules in the aggregate ("
               + ", ".join(f"{r} {n}" for r, n in seeds.items())
               + "); each rule's interval uses its own seeds")
  return out


def _train_warning(runs: Sequence[Run]) -> str | None:
  """A warning when runs of one group used different training settings."""
  values: dict[str, set[str]] = defaultdict(set)
  for run in runs:
    for key, value in run.train.items():
      if key not in _IGNORED_TRAIN_KEYS:
        values[key].add(repr(value))
  differing = sorted(k for k, v in values.items() if len(v) > 1)
  if not differing:
    return None
  return ("runs in this group used different training settings ("
          + ", ".join(f"train.{k}: {' vs '.join(sorted(values[k]))}"
                      for k in differing)
          + "); their scores may not be comparable")


def published_matrices(rows: Sequence[PublishedRow], tasks: Sequence[str],
                       manifest: suites.SuiteManifest | None
                       ) -> dict[str, tuple[np.ndarray, bool]]:
  """Normalised score matrices of published rules covering all `tasks`.

  Returns ``{rule: (matrix, per_seed)}``: a ``[seeds, tasks]`` matrix of
  normalised per-seed scores (``per_seed`` True) when every task's row has
  ``per_seed`` scores, as many per task, that the manifest can normalise;
  else a ``[1, tasks]`` matrix of the published per-task normalised scores
  (``per_seed`` False). Rules lacking a task, or a normalised score for one,
  are left out.
  """
  out: dict[str, tuple[np.ndarray, bool]] = {}
  by_rule: dict[str, dict[str, PublishedRow]] = defaultdict(dict)
  for row in rows:
    by_rule[row.rule].setdefault(row.task, row)
  for rule, per_task in by_rule.items():
    if not tasks or any(t not in per_task for t in tasks):
      continue
    chosen = [per_task[t] for t in tasks]
    lengths = {len(r.per_seed) if r.per_seed else 0 for r in chosen}
    if manifest is not None and len(lengths) == 1 and 0 not in lengths:
      columns = [[manifest.normalize(r.task, v, r.protocol) for v in r.per_seed]
                 for r in chosen]
      matrix = np.array(columns, dtype=np.float64).T
      if np.isfinite(matrix).all():
        out[rule] = (matrix, True)
        continue
    points = [r.normalized_score for r in chosen]
    if all(p is not None for p in points):
      out[rule] = (np.array([points], dtype=np.float64), False)
  return out


def _published_aggregate(rows: Sequence[PublishedRow], tasks: Sequence[str],
                         manifest: suites.SuiteManifest | None,
                         metrics: Sequence[str], reps: int, seed: int,
                         confidence: float) -> list[AggregateRow]:
  """Aggregates of published rules that cover every aggregate task: with
  bootstrap intervals from per-seed scores, else points only."""
  out: list[AggregateRow] = []
  for rule, (matrix, per_seed) in published_matrices(rows, tasks,
                                                     manifest).items():
    if per_seed:
      est = stats.interval_estimates({rule: matrix}, metrics, reps, confidence,
                                     seed)[rule]
      out += [AggregateRow(rule, m, est[m].point, est[m].lo, est[m].hi,
                           matrix.shape[0], published=True) for m in metrics]
    else:
      out += [AggregateRow(rule, m, float(stats.get_metric(m)(matrix)),
                           math.nan, math.nan, 0, published=True)
              for m in metrics]
  return out


def analyse_group(key: GroupKey, runs: Sequence[Run],
                  manifest: suites.SuiteManifest | None,
                  metrics: Sequence[str], reps: int, seed: int,
                  confidence: float, rule_order: Sequence[str] | None = None,
                  improvement: bool = True,
                  aggregate: bool = True) -> GroupResult:
  """Per-task, aggregate and pairwise statistics of one group of runs.

  `aggregate` and `improvement` turn the bootstrap intervals of the
  aggregate table (and published aggregates) and of the probability of
  improvement on or off; matrices, per-task rows and warnings are always
  computed.
  """
  nested = nest_runs(runs)
  rules = _ordered_rules({r.rule for r in runs}, rule_order)
  tasks = _ordered_tasks(nested, manifest)
  warnings: list[str] = []
  per_task = []
  for task in tasks:
    for rule in rules:
      by_seed = nested[task].get(rule)
      if not by_seed:
        continue
      chosen = [by_seed[s] for s in sorted(by_seed)]
      per_task.append(TaskRow(
          task, rule, tuple(sorted(by_seed)),
          t_interval([r.score for r in chosen], confidence),
          t_interval([r.normalized_score for r in chosen], confidence),
          _mean_beside(chosen)))
  common, matrices, matrix_seeds = _aggregate_matrices(nested, rules, tasks,
                                                       warnings)
  seeds = {r: m.shape[0] for r, m in matrices.items()}
  warnings += _seed_warnings(per_task, seeds, rules)
  train_warning = _train_warning(runs)
  if train_warning:
    warnings.append(train_warning)
  cut = [r for r in runs if r.eval_truncated]
  if cut:
    warnings.append(f"{len(cut)} run(s) scored evaluation episodes cut at eval_max_steps "
                    f"({sum(r.eval_truncated for r in cut)} episodes in all; e.g. {cut[0].path})")
  steps = tuple(sorted({r.env_steps for r in runs}))
  if len(steps) > 1:
    warnings.append(f"runs in this group stopped at different env_steps "
                    f"({', '.join(map(str, steps))})")
  aggregate_rows = []
  if matrices and aggregate:
    estimates = stats.interval_estimates(matrices, metrics, reps, confidence,
                                         seed)
    aggregate_rows = [
        AggregateRow(rule, m, est[m].point, est[m].lo, est[m].hi, seeds[rule])
        for rule, est in estimates.items() for m in metrics]
  pairs = []
  if improvement:
    for x, y in itertools.permutations(matrices, 2):
      est = stats.probability_of_improvement_interval(
          matrices[x], matrices[y], reps, confidence, seed)
      pairs.append(ImprovementRow(x, y, est.point, est.lo, est.hi))
  published: list[PublishedRow] = []
  if manifest is not None:
    entries, bad = published_rows(manifest)
    warnings += bad
    # Published rows of the protocol (by name): runs with a smaller budget or
    # changed evaluation (``name@STEPS``) still see them, with a warning.
    published = [r for r in entries if r.protocol == key.protocol and r.task in tasks]
    if not published:
      published = [r for r in entries
                   if r.protocol == runs[0].protocol and r.task in tasks]
    if published and published[0].protocol != key.protocol:
      warnings.append(f"published rows are for protocol '{runs[0].protocol}' as published "
                      f"({_budget_phrase(manifest, runs[0].protocol)}); these runs are "
                      f"'{key.protocol}', not comparable with them")
  metric = sorted({r.metric for r in runs})
  return GroupResult(
      key=key, protocol_name=runs[0].protocol, env_steps=steps,
      metric=", ".join(metric), rules=rules, tasks=tasks,
      aggregate_tasks=common, seeds=seeds, per_task=per_task,
      aggregate=aggregate_rows, improvement=pairs, published=published,
      published_aggregate=_published_aggregate(
          published, common, manifest, metrics, reps, seed, confidence)
      if aggregate else [],
      matrices=matrices, matrix_seeds=matrix_seeds, warnings=warnings,
      norm_label=_norm_label(manifest))


def _mean_beside(chosen: Sequence[Run]) -> dict[str, float]:
  """Mean over seeds of each figure reported beside the score (NaN if any
  seed lacks it: never a silent mean over fewer seeds)."""
  names = dict.fromkeys(n for r in chosen for n in r.beside)
  return {n: float(np.mean([r.beside.get(n, float("nan")) for r in chosen]))
          for n in names}


def _norm_label(manifest: suites.SuiteManifest | None) -> str:
  if manifest is None:
    return "normalised"
  return str(manifest.raw.get("normalized_label", "normalised"))


def _budget_phrase(manifest: suites.SuiteManifest, protocol: str) -> str:
  p = manifest.protocols.get(protocol)
  steps = p.get("env_steps") if p is not None else None
  return f"{int(steps):,} env steps" if isinstance(steps, (int, float)) else "its budget"


def protocol_warning(keys: Iterable[GroupKey]) -> str | None:
  """A warning when one suite holds runs under several protocols."""
  by_suite: dict[str, list[str]] = defaultdict(list)
  for key in keys:
    by_suite[key.suite].append(key.protocol)
  mixed = {s: p for s, p in by_suite.items() if len(p) > 1}
  if not mixed:
    return None
  return ("several protocols found ("
          + "; ".join(f"{s}: {', '.join(p)}" for s, p in mixed.items())
          + "); each is reported separately and never aggregated across "
          "protocols (pass --protocol to pick one)")


def nothing_usable_error(collection: Collection) -> UserError:
  """The error for a folder whose selected runs are all excluded."""
  counts = defaultdict(int)
  for e in collection.excluded:
    counts[e.reason] += 1
  first = collection.excluded[0].describe() if collection.excluded else ""
  return UserError(
      f"no complete runs to compare under {collection.root}: "
      f"{len(collection.excluded)} excluded ("
      + ", ".join(f"{n} {r}" for r, n in counts.items()) + f"), e.g. {first}")


def compare_collection(collection: Collection,
                       metrics: Sequence[str] | str = DEFAULT_METRICS,
                       reps: int = stats.DEFAULT_REPS, seed: int = 0,
                       confidence: float = stats.DEFAULT_CONFIDENCE,
                       rule_order: Sequence[str] | None = None,
                       improvement: bool = True,
                       aggregate: bool = True) -> CompareResult:
  """:func:`compare` on an already collected set of runs.

  `improvement` and `aggregate` switch those bootstraps off when a caller
  does not need them (see :func:`analyse_group`).
  """
  metrics = check_settings(metrics, reps, confidence)
  if not collection.runs:
    raise nothing_usable_error(collection)
  groups = collection.groups()
  warnings = [e.describe() for e in collection.excluded]
  mixed = protocol_warning(groups)
  if mixed:
    warnings.append(mixed)
  manifests: dict[str, suites.SuiteManifest | None] = {}
  for key in groups:
    if key.suite not in manifests:
      manifests[key.suite], problem = load_manifest(key.suite)
      if problem:
        warnings.append(problem)
  results = [analyse_group(key, runs, manifests[key.suite], metrics, reps,
                           seed, confidence, rule_order, improvement,
                           aggregate)
             for key, runs in groups.items()]
  return CompareResult(collection.root, metrics, reps, seed, confidence,
                       results, list(collection.excluded), warnings)


def compare(root: str | Path, suite: str | None = None,
            rules: Sequence[str] | str | None = None,
            metrics: Sequence[str] | str = DEFAULT_METRICS,
            reps: int = stats.DEFAULT_REPS, seed: int = 0,
            confidence: float = stats.DEFAULT_CONFIDENCE,
            protocol: str | None = None) -> CompareResult:
  """Compares the rules of the runs under `root`, per suite and protocol.

  Args:
    root: the results folder.
    suite: keep only this suite.
    rules: keep only these rules, in this order (names or ``"a,b"``).
    metrics: aggregate metrics (names from ``stats.metric_names()``).
    reps: bootstrap replicates for the aggregate and improvement intervals.
    seed: seed of the bootstrap generators.
    confidence: coverage of every interval.
    protocol: keep only this protocol (name or ``NAME@STEPS`` label).

  Returns:
    A :class:`CompareResult`; see the module docstring.

  Raises:
    UserError: no runs, a filter that matches nothing, bad settings, or no
      usable run left.
  """
  rules = parse_list(rules)
  check_settings(metrics, reps, confidence)
  collection = collect(root, suite=suite, rules=rules, protocol=protocol)
  return compare_collection(collection, metrics, reps, seed, confidence,
                            rule_order=rules)


# --- rendering -------------------------------------------------------------------


def fmt(value: float | None, digits: int = 3) -> str:
  """A number for tables: fixed decimals, or 4 significant digits when big."""
  if value is None or not math.isfinite(value):
    return "—"
  if abs(value) >= 1000:
    return f"{value:.4g}"
  return f"{value:.{digits}f}"


def fmt_interval(point: float | None, lo: float | None, hi: float | None) -> str:
  """``point [lo, hi]``, or the point alone when there are no bounds."""
  if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
    return fmt(point)
  return f"{fmt(point)} [{fmt(lo)}, {fmt(hi)}]"


def ci_caption(result: CompareResult) -> str:
  """``95% stratified bootstrap CI, 50,000 reps, seed 0``."""
  return (f"{round(100 * result.confidence, 1):g}% stratified bootstrap CI, "
          f"{result.reps:,} reps, seed {result.seed}")


def seed_phrase(seeds: Mapping[str, int]) -> str:
  """``5 seeds per rule`` or ``seeds per rule: a 5, b 3``."""
  counts = set(seeds.values())
  if len(counts) == 1:
    n = counts.pop()
    return f"{n} seed{'s' if n != 1 else ''} per rule"
  return "seeds per rule: " + ", ".join(f"{r} {n}" for r, n in seeds.items())


def _group_title(group: GroupResult) -> str:
  steps = ", ".join(f"{s:,}" for s in group.env_steps)
  return (f"suite {group.key.suite} · protocol {group.key.protocol} · "
          f"{steps} env steps · metric: {group.metric}")


def _esc(text: str) -> str:
  """`text` with rich markup escaped."""
  from rich.markup import escape
  return escape(text)


def _per_task_table(result: CompareResult, group: GroupResult):
  """One row per task, one column per rule (published rules last, marked).

  Each cell: the raw final score and the normalised score, each as the mean
  over seeds with its interval, and the number of seeds.
  """
  from rich.table import Table
  level = f"{round(100 * result.confidence, 1):g}%"
  norm = "norm" if group.norm_label == "normalised" else group.norm_label.split()[0]
  beside = sorted({k for r in group.per_task for k in r.beside})
  table = Table(
      title=f"Per-task final scores — {group.key.suite}, protocol "
            f"{group.key.protocol}",
      caption=(f"each cell: {group.metric}, then {group.norm_label} "
               f"score ({norm}); mean over seeds [{level} {PER_TASK_CI} CI, n−1 "
               "dof]"
               + (f", then {', '.join(beside)} (mean over seeds, reported beside "
                  "the score)" if beside else "")
               + "; n = seeds; published columns come from the suite manifest "
               "and enter no statistic"),
      caption_justify="left")
  table.add_column("Task")
  rules = [r for r in group.rules]
  published = sorted({p.rule for p in group.published})
  for rule in rules:
    table.add_column(_esc(rule), justify="right")
  for rule in published:
    table.add_column(_esc(published_label(rule)), justify="right", style="italic dim")
  for task in group.tasks:
    cells = [_esc(task)]
    for rule in rules:
      row = next((r for r in group.per_task if r.task == task and r.rule == rule), None)
      cells.append("-" if row is None else
                   f"{fmt_interval(*row.score)}\n{norm} {fmt_interval(*row.normalized)}"
                   + "".join(f"\n{k} {fmt(v)}" for k, v in row.beside.items())
                   + f"\nn = {len(row.seeds)}")
    for rule in published:
      pub = next((p for p in group.published if p.task == task and p.rule == rule), None)
      cells.append("-" if pub is None else
                   (f"{fmt(pub.score)}\n{norm} {fmt(pub.normalized_score)}"
                    if math.isfinite(pub.score) else f"({group.metric} not published)")
                   + "".join(f"\n{k} {fmt(v)}" for k, v in pub.beside.items())
                   + f"\nn = {pub.seeds if pub.seeds else '?'}")
    table.add_row(*cells)
  return table


def _aggregate_table(result: CompareResult, group: GroupResult):
  from rich.table import Table
  table = Table(
      title=f"Aggregate {group.norm_label} scores over {len(group.aggregate_tasks)} "
            f"task(s) — {group.key.suite}, protocol {group.key.protocol}",
      caption=(f"{seed_phrase(group.seeds)} · {ci_caption(result)} · protocol "
               f"{group.key.protocol} · metric: {group.norm_label} {group.metric} · "
               "optimality gap: lower is better"
               + (" · published rows: from the manifest, not bootstrapped "
                  "with runs made here" if group.published_aggregate else "")
               + (" (— = point only, from per-task scores)"
                  if any(not r.seeds for r in group.published_aggregate)
                  else "")),
      caption_justify="left")
  table.add_column("Rule")
  table.add_column("Seeds", justify="right")
  for m in result.metrics:
    table.add_column(METRIC_LABELS.get(m, m), justify="right")
  for rows, published in ((group.aggregate, False),
                          (group.published_aggregate, True)):
    for rule in dict.fromkeys(r.rule for r in rows):
      cells = {r.metric: r for r in rows if r.rule == rule}
      seeds = next(iter(cells.values())).seeds
      table.add_row(_esc(published_label(rule) if published else rule),
                    str(seeds) if seeds else "?",
                    *(fmt_interval(cells[m].point, cells[m].lo, cells[m].hi)
                      for m in result.metrics),
                    style="italic dim" if published else None)
  return table


def _improvement_table(result: CompareResult, group: GroupResult):
  from rich.table import Table
  table = Table(
      title=f"Probability of improvement — {group.key.suite}, protocol "
            f"{group.key.protocol}",
      caption=(f"P(X > Y): chance that a run of X beats a run of Y on a "
               f"random task · {seed_phrase(group.seeds)} · "
               f"{ci_caption(result)} · metric: {group.norm_label} {group.metric}"),
      caption_justify="left")
  table.add_column("X")
  table.add_column("Y")
  table.add_column("P(X > Y)", justify="right")
  for row in group.improvement:
    table.add_row(_esc(row.x), _esc(row.y),
                  fmt_interval(row.point, row.lo, row.hi))
  return table


def _excluded_table(excluded: Sequence[Excluded]):
  from rich.table import Table
  table = Table(title="Excluded runs (not in any statistic)",
                title_style="bold yellow")
  table.add_column("Reason")
  table.add_column("Run folder", overflow="fold")
  table.add_column("Detail", overflow="fold")
  for e in excluded:
    table.add_row(e.reason, _esc(str(e.path)), _esc(e.detail))
  return table


def render(result: CompareResult, console) -> None:
  """Prints a :class:`CompareResult` as rich tables on `console`."""
  from rich.markup import escape
  for group in result.groups:
    console.rule(f"[bold]{_group_title(group)}")
    console.print(_per_task_table(result, group))
    if group.aggregate:
      console.print(_aggregate_table(result, group))
    if group.improvement:
      console.print(_improvement_table(result, group))
    for warning in group.warnings:
      console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
  if result.excluded:
    console.print(_excluded_table(result.excluded))
  for warning in result.warnings:
    if not warning.startswith("excluded "):
      console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
