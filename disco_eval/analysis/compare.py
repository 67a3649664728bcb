"""Compare update rules with rliable-style statistics, per suite and protocol.

:func:`compare` collects the runs under a results folder (see
:mod:`disco_eval.analysis.collect`) and computes, per group of one suite under
one protocol label (statistics are never computed across groups):

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
* published baselines (``[[published]]`` tables of the suite manifest, see
  :mod:`disco_eval.analysis.published`) for the group's protocol, shown as
  separate rows marked "published" and never part of any bootstrap over runs
  made here; a row of another policy, estimator or selection on the
  evaluation (:mod:`disco_eval.analysis.evaluation`), metric, budget or protocol setting than the
  runs' is marked "not comparable" with the reason and enters no aggregate;
* each rule's kind and whether the suite is held out for it
  (:mod:`disco_eval.analysis.rule_kinds`);
* warnings: fewer than 3 seeds, unequal seed counts, tasks or seeds left out
  of the aggregate, runs of one rule made with different settings (reported
  apart, as ``disco103[lr=0.003]``; see :mod:`disco_eval.analysis.collect`),
  differing training settings, several protocols.

When a published rule has rows for every task of a group's aggregate, its
aggregate is shown too (marked published): with bootstrap intervals of its
own when every row has ``per_seed`` scores (as many per task) that the
manifest can normalise, else as a point computed from the per-task scores.

The results are the dataclasses below; :meth:`CompareResult.to_json` is what
``disco-eval compare --json`` prints.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from disco_eval.analysis import at_steps, evaluation, intervals, labels, stats
from disco_eval.analysis import select as choose
from disco_eval.analysis.collect import (
  Collection,
  GroupKey,
  Run,
  collect,
  nest_runs,
  nothing_usable_error,
  parse_list,
)
from disco_eval.analysis.published import (
  PublishedRow,
  comparability,
  load_manifest,
  norm_label,
  published_matrices,
  published_rows,
)
from disco_eval.analysis.results import (
  AggregateRow,
  CompareResult,
  GroupResult,
  ImprovementRow,
  TaskRow,
)
from disco_eval.config import suites
from disco_eval.errors import UserError

DEFAULT_METRICS = ("iqm", "median", "mean", "og")
METRIC_LABELS = {"iqm": "IQM", "median": "Median", "mean": "Mean", "og": "Optimality gap"}
MIN_SEEDS = 3


# --- settings and results ------------------------------------------------------


def check_settings(metrics: Sequence[str] | str, reps: int, confidence: float) -> tuple[str, ...]:
  """Validated metric names (UserError on bad metrics, reps or confidence)."""
  names = parse_list(metrics) or ()
  valid = ", ".join(stats.metric_names())
  if not names:
    raise UserError(f"no metrics selected; valid metrics: {valid}")
  bad = [m for m in names if m not in stats.metric_names()]
  if bad:
    raise UserError(f"unknown metric '{bad[0]}'; valid metrics: {valid}")
  if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
    raise UserError(f"--reps must be a positive integer, got {reps!r}")
  if not 0.0 < confidence < 1.0:
    raise UserError(f"confidence must be between 0 and 1, got {confidence!r}")
  return names


# --- analysis of one group -----------------------------------------------------


def _ordered_rules(runs: Iterable[Run], order: Sequence[str] | None) -> tuple[str, ...]:
  """Rule labels in the order of their names asked for (``--rules``), else
  sorted; the variants of one name (``disco103[lr=0.003]``) sorted after it."""
  names = {r.rule: r.rule_name or r.rule for r in runs}
  wanted = list(order or ())

  def place(label: str) -> tuple[int, str, str]:
    for asked in (label, names[label]):
      if asked in wanted:
        return wanted.index(asked), names[label], label
    return len(wanted), names[label], label

  kept = [label for label, name in names.items() if not wanted or {label, name} & set(wanted)]
  return tuple(sorted(kept, key=place))


def _ordered_tasks(
  present: Iterable[str], manifest: suites.SuiteManifest | None
) -> tuple[str, ...]:
  """Tasks in manifest order, unknown ones sorted after them."""
  present = set(present)
  known = [t for t in (manifest.tasks if manifest else ()) if t in present]
  return tuple(known + sorted(present - set(known)))


def _aggregate_matrices(
  nested: Mapping[str, Mapping[str, Mapping[int, Run]]],
  rules: Sequence[str],
  tasks: Sequence[str],
  warnings: list[str],
) -> tuple[tuple[str, ...], dict[str, np.ndarray], dict[str, tuple[int, ...]]]:
  """``[seeds, tasks]`` matrices of normalised scores over the tasks all
  rules share, each rule keeping the seeds it has on all of them."""
  common = tuple(t for t in tasks if all(nested[t].get(r) for r in rules))
  dropped = [t for t in tasks if t not in common]
  if dropped:
    lacking = {t: [r for r in rules if not nested[t].get(r)] for t in dropped}
    warnings.append(
      "tasks left out of the aggregate because not every rule has them: "
      + "; ".join(f"{t} (no runs of {', '.join(rs)})" for t, rs in lacking.items())
    )
  if not common:
    warnings.append(
      "no task is shared by all rules: no aggregate and no probability of improvement"
    )
    return common, {}, {}
  matrices, seeds_of = {}, {}
  for rule in rules:
    seed_sets = [set(nested[t][rule]) for t in common]
    seeds = tuple(sorted(set.intersection(*seed_sets)))
    left_out = sorted({(t, s) for t in common for s in nested[t][rule] if s not in seeds})
    if left_out:
      warnings.append(
        f"rule {rule}: runs left out of the aggregate because their seed "
        "lacks a usable run on another task: " + ", ".join(f"{t}/seed{s}" for t, s in left_out)
      )
    if not seeds:
      warnings.append(
        f"rule {rule}: no seed has usable runs on all aggregate "
        "tasks; rule left out of the aggregate"
      )
      continue
    matrices[rule] = np.array(
      [[nested[t][rule][s].normalized_score for t in common] for s in seeds]
    )
    seeds_of[rule] = seeds
  return common, matrices, seeds_of


def _seed_warnings(
  per_task: Sequence[TaskRow], seeds: Mapping[str, int], rules: Sequence[str]
) -> list[str]:
  """Warnings about too few seeds and unequal seed counts."""
  out = []
  for rule in rules:
    counts = [len(r.seeds) for r in per_task if r.rule == rule]
    if counts and min(counts) < MIN_SEEDS:
      worst = [r.task for r in per_task if r.rule == rule and len(r.seeds) == min(counts)]
      out.append(
        f"rule {rule}: fewer than {MIN_SEEDS} seeds ({min(counts)} on "
        f"{', '.join(worst)}); intervals from so few seeds are "
        "unreliable, run more seeds"
      )
  if len(set(seeds.values())) > 1:
    out.append(
      "unequal numbers of seeds between rules in the aggregate ("
      + ", ".join(f"{r} {n}" for r, n in seeds.items())
      + "); each rule's interval uses its own seeds"
    )
  return out


def _train_warning(runs: Sequence[Run]) -> str | None:
  """A warning when runs of one group used different training settings."""
  values: dict[str, set[str]] = defaultdict(set)
  for run in runs:
    for key, value in run.train.items():
      if key not in labels.IGNORED_TRAIN_KEYS:
        values[key].add(repr(value))
  differing = sorted(k for k, v in values.items() if len(v) > 1)
  if not differing:
    return None
  return (
    "runs in this group used different training settings ("
    + ", ".join(f"train.{k}: {' vs '.join(sorted(values[k]))}" for k in differing)
    + "); their scores may not be comparable"
  )


def _published_aggregate(
  rows: Sequence[PublishedRow],
  tasks: Sequence[str],
  manifest: suites.SuiteManifest | None,
  metrics: Sequence[str],
  reps: int,
  seed: int,
  confidence: float,
) -> list[AggregateRow]:
  """Aggregates of published rules that cover every aggregate task: with
  bootstrap intervals from per-seed scores, else points only."""
  out: list[AggregateRow] = []
  for rule, (matrix, per_seed) in published_matrices(rows, tasks, manifest).items():
    if per_seed:
      est = stats.interval_estimates({rule: matrix}, metrics, reps, confidence, seed)[rule]
      out += [
        AggregateRow(rule, m, est[m].point, est[m].lo, est[m].hi, matrix.shape[0], published=True)
        for m in metrics
      ]
    else:
      out += [
        AggregateRow(
          rule, m, float(stats.get_metric(m)(matrix)), math.nan, math.nan, 0, published=True
        )
        for m in metrics
      ]
  return out


def _per_task_rows(
  nested: Mapping[str, Mapping[str, Mapping[int, Run]]],
  tasks: Sequence[str],
  rules: Sequence[str],
  confidence: float,
) -> list[TaskRow]:
  """One row per (task, rule) with runs: Student-t intervals over seeds."""
  per_task = []
  for task in tasks:
    for rule in rules:
      by_seed = nested[task].get(rule)
      if not by_seed:
        continue
      chosen = [by_seed[s] for s in sorted(by_seed)]
      per_task.append(
        TaskRow(
          task,
          rule,
          tuple(sorted(by_seed)),
          stats.t_interval([r.score for r in chosen], confidence),
          stats.t_interval([r.normalized_score for r in chosen], confidence),
          _mean_beside(chosen),
        )
      )
  return per_task


def _variant_warnings(runs: Sequence[Run]) -> list[str]:
  """A warning per rule name whose runs were made with different settings
  (reported apart, under the labels that name the differences)."""
  seeds: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
  for run in runs:
    seeds[run.rule_name or run.rule][run.rule].add(run.seed)
  return [
    f"runs of rule {name} were made with different settings, reported apart and "
    "never pooled as seeds of one rule: "
    + "; ".join(
      f"{label} ({len(found[label])} seed{'s' if len(found[label]) != 1 else ''})"
      for label in sorted(found)
    )
    for name, found in sorted(seeds.items())
    if len(found) > 1
  ]


def _run_warnings(runs: Sequence[Run]) -> list[str]:
  """Warnings about runs of one rule made with different settings, differing
  training settings, evaluation episodes cut at eval_max_steps, and
  differing final env steps within a group."""
  warnings = _variant_warnings(runs)
  train_warning = _train_warning(runs)
  if train_warning:
    warnings.append(train_warning)
  cut = [r for r in runs if r.eval_truncated]
  if cut:
    warnings.append(
      f"{len(cut)} run(s) scored evaluation episodes cut at eval_max_steps "
      f"({sum(r.eval_truncated for r in cut)} episodes in all; e.g. {cut[0].path})"
    )
  steps = tuple(sorted({r.env_steps for r in runs}))
  if len(steps) > 1:
    warnings.append(
      f"runs in this group stopped at different env_steps ({', '.join(map(str, steps))})"
    )
  return warnings


def _aggregate_rows(
  matrices: Mapping[str, np.ndarray],
  seeds: Mapping[str, int],
  metrics: Sequence[str],
  reps: int,
  seed: int,
  confidence: float,
) -> list[AggregateRow]:
  """Each metric of each rule's ``[seeds, tasks]`` matrix, with its
  stratified-bootstrap interval."""
  if not matrices:
    return []
  estimates = stats.interval_estimates(matrices, metrics, reps, confidence, seed)
  rows = [
    AggregateRow(rule, m, est[m].point, est[m].lo, est[m].hi, seeds[rule])
    for rule, est in estimates.items()
    for m in metrics
  ]
  return intervals.one_task_rows(rows, matrices, confidence)


def _improvement_rows(
  matrices: Mapping[str, np.ndarray], reps: int, seed: int, confidence: float
) -> list[ImprovementRow]:
  """P(X > Y) with its interval for every ordered pair of rules."""
  pairs = []
  for x, y in itertools.permutations(matrices, 2):
    est = stats.probability_of_improvement_interval(
      matrices[x], matrices[y], reps, confidence, seed
    )
    pairs.append(ImprovementRow(x, y, est.point, est.lo, est.hi))
  return pairs


def _group_published(
  key: GroupKey,
  runs: Sequence[Run],
  tasks: Sequence[str],
  manifest: suites.SuiteManifest | None,
  warnings: list[str],
  budget: int | None,
) -> list[PublishedRow]:
  """The published rows of the group's protocol and tasks, each marked
  comparable or not with the runs (same metric, budget and protocol
  settings, :func:`~disco_eval.analysis.published.comparability`); appends
  warnings about malformed entries and rows that are not comparable."""
  if manifest is None:
    return []
  entries, bad = published_rows(manifest)
  warnings += bad
  base = labels.base_protocol(key.protocol)
  measure = evaluation.group_measure(manifest, key.protocol)
  metrics = sorted({r.metric for r in runs})
  beside = sorted({n for r in runs for n in r.beside})
  out = []
  for row in entries:
    if row.task not in tasks or labels.base_protocol(row.protocol) != base:
      continue
    reason = comparability(
      row, key.protocol, beside if math.isnan(row.score) else metrics, budget, measure
    )
    out.append(dataclasses.replace(row, comparable=reason is None, reason=reason))
  off = [r for r in out if not r.comparable]
  if off:
    warnings.append(
      f"{len(off)} published row(s) not comparable with the runs '{key.protocol}', shown "
      f"apart and in no aggregate (e.g. {off[0].rule} on {off[0].task}: {off[0].reason})"
    )
  return out


def analyse_group(
  key: GroupKey,
  runs: Sequence[Run],
  manifest: suites.SuiteManifest | None,
  metrics: Sequence[str],
  reps: int,
  seed: int,
  confidence: float,
  rule_order: Sequence[str] | None = None,
  improvement: bool = True,
  aggregate: bool = True,
) -> GroupResult:
  """Per-task, aggregate and pairwise statistics of one group of runs.

  `aggregate` and `improvement` turn the bootstrap intervals of the
  aggregate table (and published aggregates) and of the probability of
  improvement on or off; matrices, per-task rows and warnings are always
  computed. Runs read from their training curve (``Run.read_at``, see
  :mod:`disco_eval.analysis.at_steps`) are compared at that budget.
  """
  nested = nest_runs(runs)
  rules = _ordered_rules(runs, rule_order)
  tasks = _ordered_tasks(nested, manifest)
  warnings: list[str] = []
  per_task = _per_task_rows(nested, tasks, rules, confidence)
  common, matrices, matrix_seeds = _aggregate_matrices(nested, rules, tasks, warnings)
  seeds = {r: m.shape[0] for r, m in matrices.items()}
  warnings += _seed_warnings(per_task, seeds, rules)
  warnings += intervals.one_task_warnings(matrices)
  warnings += _run_warnings(runs)
  aggregate_rows = (
    _aggregate_rows(matrices, seeds, metrics, reps, seed, confidence) if aggregate else []
  )
  pairs = _improvement_rows(matrices, reps, seed, confidence) if improvement else []
  read_at = runs[0].read_at
  budget = read_at or runs[0].budget or None
  published = _group_published(key, runs, tasks, manifest, warnings, budget)
  comparable = [p for p in published if p.comparable]
  metric = sorted({r.metric for r in runs})
  return GroupResult(
    key=key,
    protocol_name=runs[0].protocol,
    env_steps=tuple(sorted({r.env_steps for r in runs})),
    metric=", ".join(metric),
    rules=rules,
    tasks=tasks,
    aggregate_tasks=common,
    seeds=seeds,
    per_task=per_task,
    aggregate=aggregate_rows,
    improvement=pairs,
    published=published,
    published_aggregate=_published_aggregate(
      comparable, common, manifest, metrics, reps, seed, confidence
    )
    if aggregate
    else [],
    matrices=matrices,
    matrix_seeds=matrix_seeds,
    warnings=warnings,
    norm_label=norm_label(manifest),
    kinds={rule: next(r.kind for r in runs if r.rule == rule) for rule in rules},
    backends={
      rule: ", ".join(sorted({r.backend for r in runs if r.rule == rule})) for rule in rules
    },
    read_at=read_at,
    budget=budget,
    measure=evaluation.group_measure(manifest, key.protocol),
  )


def _mean_beside(chosen: Sequence[Run]) -> dict[str, float]:
  """Mean over seeds of each figure reported beside the score (NaN if any
  seed lacks it: never a silent mean over fewer seeds)."""
  names = dict.fromkeys(n for r in chosen for n in r.beside)
  return {n: float(np.mean([r.beside.get(n, float("nan")) for r in chosen])) for n in names}


def protocol_warning(keys: Iterable[GroupKey]) -> str | None:
  """A warning when one suite holds runs under several protocols."""
  by_suite: dict[str, list[str]] = defaultdict(list)
  for key in keys:
    by_suite[key.suite].append(key.protocol)
  mixed = {s: p for s, p in by_suite.items() if len(p) > 1}
  if not mixed:
    return None
  return (
    "several protocols found ("
    + "; ".join(f"{s}: {', '.join(p)}" for s, p in mixed.items())
    + "); each is reported separately and never aggregated across "
    "protocols (pass --protocol to pick one)"
  )


def compare_collection(
  collection: Collection,
  metrics: Sequence[str] | str = DEFAULT_METRICS,
  reps: int = stats.DEFAULT_REPS,
  seed: int = 0,
  confidence: float = stats.DEFAULT_CONFIDENCE,
  rule_order: Sequence[str] | None = None,
  improvement: bool = True,
  aggregate: bool = True,
  at: int | None = None,
) -> CompareResult:
  """:func:`compare` on an already collected set of runs.

  `improvement` and `aggregate` switch those bootstraps off when a caller
  does not need them (see :func:`analyse_group`); `at` reads every run's
  training curve at that many env steps instead of its final score.
  """
  metrics = check_settings(metrics, reps, confidence)
  if not collection.runs:
    raise nothing_usable_error(collection)
  if at is not None:
    collection = at_steps.collection_at(collection, at)
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
  results = [
    analyse_group(
      key,
      runs,
      manifests[key.suite],
      metrics,
      reps,
      seed,
      confidence,
      rule_order,
      improvement,
      aggregate,
    )
    for key, runs in groups.items()
  ]
  return CompareResult(
    collection.roots,
    metrics,
    reps,
    seed,
    confidence,
    results,
    list(collection.excluded),
    warnings,
    collection.include_diverged,
    collection.diverged_counted(),
    collection.diverged_note(),
  )


def compare(
  root: str | Path | Sequence[str | Path],
  suite: str | None = None,
  rules: Sequence[str] | str | None = None,
  metrics: Sequence[str] | str = DEFAULT_METRICS,
  reps: int = stats.DEFAULT_REPS,
  seed: int = 0,
  confidence: float = stats.DEFAULT_CONFIDENCE,
  protocol: str | None = None,
  include_diverged: bool = False,
  at: int | str | None = None,
  select: str | None = None,
  select_seeds: str | None = None,
  report_seeds: str | None = None,
) -> CompareResult:
  """Compares the rules of the runs under `root`, per suite and protocol.

  Args:
    root: the results folder, or several (a run found in more than one is
      counted once: ``collect.drop_duplicates``).
    suite: keep only this suite.
    rules: keep only these rules, in this order (names or ``"a,b"``).
    metrics: aggregate metrics (names from ``stats.metric_names()``).
    reps: bootstrap replicates for the aggregate and improvement intervals.
    seed: seed of the bootstrap generators.
    confidence: coverage of every interval.
    protocol: keep only this protocol (name or ``NAME@STEPS`` label).
    include_diverged: count diverged runs at their evaluated score (else
      they are excluded, and listed as such).
    at: read each run's training curve at this budget (env steps, or text
      such as ``1M``; :mod:`disco_eval.analysis.at_steps`) instead of its
      final evaluation score.
    select: keep one value of this setting per rule and group
      (:mod:`disco_eval.analysis.select`), chosen on `select_seeds` and
      reported on `report_seeds` (``0-2`` or ``0,1,4``).
    select_seeds: the seeds the selection is made on (default: the reported seeds).
    report_seeds: the seeds reported (default: the selection seeds; both
      default to every seed found).

  Returns:
    A :class:`CompareResult`; see the module docstring.

  Raises:
    UserError: no runs, a filter that matches nothing, bad settings, or no
      usable run left.
  """
  rules = parse_list(rules)
  check_settings(metrics, reps, confidence)
  at = at_steps.parse_steps(at) if at is not None else None
  collection = collect(
    root, suite=suite, rules=rules, protocol=protocol, include_diverged=include_diverged
  )
  opts = choose.options(select, select_seeds, report_seeds)
  collection, chosen = choose.apply_options(collection, opts)
  result = compare_collection(collection, metrics, reps, seed, confidence, rule_order=rules, at=at)
  result.selections = chosen
  for group in result.groups:
    group.notes += choose.group_notes(chosen, group.key.suite, group.key.protocol)
  return result
