"""Export run results as one tidy CSV table (long format).

Every row has every column (empty where it does not apply), so
``pandas.read_csv`` loads the file directly. Only usable runs are exported
(complete, with finite scores; see ``disco_eval.analysis.collect``): failed,
incomplete, damaged, corrupt and NaN-score runs are left out, and ``disco-eval
compare`` lists them. Diverged runs are left out too, unless
``include_diverged`` (``--include-diverged``) counts them at their evaluated
score: the `diverged` column marks their rows, and a warning line says which
choice was made.

| column | meaning |
|---|---|
| `suite` | suite name |
| `protocol` | protocol label: the manifest's protocol name, or `NAME@STEPS` for runs trained with another step budget |
| `task` | task name; `*` on aggregate rows (and on published aggregates) |
| `rule` | update rule; on published rows the name given in the suite manifest |
| `seed` | run seed; empty on aggregate and published rows |
| `env_steps` | env steps at the row (`train`); the run's budget (`final`, `aggregate`); empty on published rows |
| `kind` | `train`, `final`, `curve_at`, `aggregate` or `published` (see below) |
| `score` | raw score: mean training return (`train`), final evaluation score (`final`), the training curve's value at `--at STEPS` (`curve_at`), published score or value in `metric` (`published`); empty on aggregates |
| `normalized_score` | `score` normalised with the suite manifest; on aggregate rows and published aggregates, the metric's point estimate |
| `metric` | `avg_return` (`train`); the protocol's metric, e.g. `return` (`final`); `return` (`curve_at`); `iqm`, `median`, `mean` or `og` (aggregates); the published row's metric (per-task `published` rows) |
| `ci_low` | lower bound of the 95% stratified-bootstrap percentile interval (aggregates; published aggregates only when per-seed scores are published) |
| `ci_high` | upper bound of that interval |
| `num_seeds` | seeds behind the row: rows of the score matrix (aggregates), or the number published (`published`, empty if not given) |
| `citation` | source of a `published` row |
| `diverged` | `1` on the rows of a diverged run counted at its evaluated score (only with `--include-diverged`), else `0`; on aggregate rows, the number of such runs behind the row; empty on published rows |
| `category` | the rule's kind: `discovered (learned weights)`, `discovered (closed form)`, `hand-designed`, a custom checkpoint or a rule without a manifest (provenance unknown); `published` on published rows (see `disco_eval.analysis.rule_kinds`) |
| `held_out` | `yes`, `no` (the suite is one the rule was discovered on: not held out), `unknown` (custom checkpoint or no manifest); `published` on published rows |
| `comparable` | on published rows: `yes` when the row has the runs' metric, budget and protocol settings, else `no` (then `note` gives the reason, and the row is in no aggregate); empty elsewhere |
| `note` | `interval: NAME` on aggregate rows (the interval `ci_low`/`ci_high` give: the stratified percentile bootstrap, or over one task the Student-t interval over seeds for `mean` and `og` and none for `iqm`/`median` under 5 seeds; `disco_eval.analysis.intervals`); `read from the training curve at N steps` on `curve_at` rows and their aggregates; `not comparable: REASON`, `read off a figure` and `measured: POLICY, ESTIMATOR, SELECTION` (as the manifest states them) on published rows where so |

Kinds of rows:

* `train`: one per row of a run's ``metrics.csv``; `score` is `avg_return`, the
  mean return of the training episodes that ended in that iteration (empty
  when none ended).
* `final`: one per run; the evaluation score of the final policy
  (``summary.json``) at the run's final env steps.
* `curve_at` (with ``--at STEPS``, instead of `final`): one per run; its
  training curve's value at STEPS (``disco_eval.analysis.at_steps``), noted
  "read from the training curve at STEPS steps".
* `aggregate` (with ``--aggregate``): one per suite, protocol, rule and metric;
  the metric over the ``[seeds, tasks]`` matrix of normalised final scores
  (tasks every rule has) with a 95% stratified-bootstrap percentile interval.
* `published`: one per ``[[published]]`` (and ``[[published_other_metric]]``)
  entry of the suite manifest whose protocol appears in the results (never
  part of any statistic), `comparable` saying whether it measured what the
  runs did; with ``--aggregate`` also the comparable published rules'
  aggregates (task `*`), as ``disco-eval compare`` shows them.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from disco_eval import store
from disco_eval.analysis import at_steps, collect, compare, published, rule_kinds, stats
from disco_eval.analysis import select as choose
from disco_eval.config import suites
from disco_eval.errors import UserError

COLUMNS = (
  "suite",
  "protocol",
  "task",
  "rule",
  "seed",
  "env_steps",
  "kind",
  "score",
  "normalized_score",
  "metric",
  "ci_low",
  "ci_high",
  "num_seeds",
  "citation",
  "diverged",
  "category",
  "held_out",
  "comparable",
  "note",
)
KINDS = ("train", "final", "curve_at", "aggregate", "published")


def _cell(value: Any) -> str:
  """A value as CSV text: floats in round-trip form, None and NaN empty."""
  if value is None:
    return ""
  if isinstance(value, float):
    return repr(value) if math.isfinite(value) else ""
  return str(value)


def _row(**values: Any) -> list[str]:
  """A full row in COLUMNS order (missing columns empty)."""
  unknown = set(values) - set(COLUMNS)
  if unknown:
    raise ValueError(f"unknown export columns: {sorted(unknown)}")
  return [_cell(values.get(c)) for c in COLUMNS]


def _number(value: Any) -> float | None:
  """A metrics cell as a finite float, else None."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def run_rows(run: collect.Run, manifest: suites.SuiteManifest | None) -> Iterator[list[str]]:
  """The `train` rows of one run's metrics.csv, then its `final` row."""
  base = dict(
    suite=run.suite,
    protocol=run.protocol_label,
    task=run.task,
    rule=run.rule,
    seed=run.seed,
    diverged=int(run.diverged),
    category=run.kind.category,
    held_out=run.kind.held_out,
  )
  for row in store.RunRecord(run.path).read_metrics():
    score = _number(row.get("avg_return"))
    normalized = (
      manifest.normalize(run.task, score, run.protocol_label)
      if manifest is not None and score is not None
      else None
    )
    yield _row(
      **base,
      env_steps=row.get("env_steps"),
      kind="train",
      score=score,
      normalized_score=normalized,
      metric="avg_return",
    )
  yield _row(
    **base,
    env_steps=run.env_steps,
    kind="final" if run.read_at is None else "curve_at",
    score=run.score,
    normalized_score=run.normalized_score,
    metric=run.metric,
    note=None if run.read_at is None else at_steps.at_phrase(run.read_at),
  )


def published_csv_rows(group: compare.GroupResult) -> Iterator[list[str]]:
  """The per-task `published` rows of a group (comparable or not)."""
  for pub in group.published:
    value = pub.score if math.isfinite(pub.score) else pub.beside.get(pub.metric)
    notes = [f"read off a {pub.read_off}" if pub.read_off else ""]
    notes.append("" if pub.comparable else f"not comparable: {pub.reason}")
    measured = [x for x in (pub.policy, pub.estimator, pub.selection) if x]
    notes.append(f"measured: {', '.join(measured)}" if measured else "")
    yield _row(
      suite=group.key.suite,
      protocol=pub.protocol,
      task=pub.task,
      rule=pub.rule,
      env_steps=pub.env_steps or None,
      kind="published",
      score=value,
      normalized_score=pub.normalized_score,
      metric=pub.metric,
      num_seeds=pub.seeds,
      citation=pub.citation,
      category=rule_kinds.PUBLISHED.category,
      held_out=rule_kinds.PUBLISHED.held_out,
      comparable="yes" if pub.comparable else "no",
      note="; ".join(n for n in notes if n) or None,
    )


def aggregate_csv_rows(
  group: compare.GroupResult, citations: dict[str, str], diverged: dict[str, int] | None = None
) -> Iterator[list[str]]:
  """The `aggregate` rows of a group, then its published aggregates
  (`diverged`: the diverged runs counted, per rule)."""
  steps = group.env_steps[0] if len(group.env_steps) == 1 else None
  note = None if group.read_at is None else at_steps.at_phrase(group.read_at)
  for row in group.aggregate:
    kind = group.kinds.get(row.rule)
    yield _row(
      category=kind.category if kind else None,
      held_out=kind.held_out if kind else None,
      note="; ".join(n for n in (note, f"interval: {row.interval}") if n),
      suite=group.key.suite,
      protocol=group.key.protocol,
      task="*",
      rule=row.rule,
      env_steps=steps,
      kind="aggregate",
      normalized_score=row.point,
      metric=row.metric,
      ci_low=row.lo,
      ci_high=row.hi,
      num_seeds=row.seeds,
      diverged=(diverged or {}).get(row.rule, 0),
    )
  for row in group.published_aggregate:
    yield _row(
      suite=group.key.suite,
      protocol=group.key.protocol,
      task="*",
      rule=row.rule,
      kind="published",
      normalized_score=row.point,
      metric=row.metric,
      ci_low=row.lo,
      ci_high=row.hi,
      num_seeds=row.seeds or None,
      citation=citations.get(row.rule),
      category=rule_kinds.PUBLISHED.category,
      held_out=rule_kinds.PUBLISHED.held_out,
      comparable="yes",
      env_steps=group.budget,
    )


def export_csv(
  root: str | Path | Sequence[str | Path],
  out: str | Path | None = None,
  suite: str | None = None,
  rules: Sequence[str] | str | None = None,
  aggregate: bool = False,
  reps: int = stats.DEFAULT_REPS,
  seed: int = 0,
  protocol: str | None = None,
  metrics: Sequence[str] | str = compare.DEFAULT_METRICS,
  confidence: float = stats.DEFAULT_CONFIDENCE,
  warn: Callable[[str], None] | None = None,
  include_diverged: bool = False,
  at: int | str | None = None,
  select: choose.SelectOptions | None = None,
) -> str:
  """The runs under `root` as a tidy CSV (columns: see the module docstring).

  Args:
    root: the results folder, or several (a run found twice is counted once).
    out: write the CSV here (atomically) when given.
    suite, rules, protocol: filters, as for ``collect.collect``.
    aggregate: add `aggregate` rows (and published aggregates).
    reps, seed, metrics, confidence: bootstrap settings of aggregate rows.
    warn: called with each warning (excluded runs, missing manifests, ...),
      and with the line saying what was done with diverged runs.
    include_diverged: count diverged runs at their evaluated score.
    at: read each run's training curve at this budget (``curve_at`` rows
      instead of ``final`` ones; :mod:`disco_eval.analysis.at_steps`).
    select: keep one value of a swept setting per rule (``compare --select``;
      the kept runs' `rule` label says how it was selected).

  Returns:
    The CSV text (also when written to `out`).

  Raises:
    UserError: no runs, a filter that matches nothing, no usable run, or
      `out` cannot be written.
  """
  if out is not None:
    _check_out(Path(out))
  rules = collect.parse_list(rules)
  collection = at_steps.collect_at(
    root, at, suite=suite, rules=rules, protocol=protocol, include_diverged=include_diverged
  )
  collection, chosen = choose.apply_options(collection, select)
  for line in choose.lines(chosen):
    (warn or (lambda m: None))(line)
  result = compare.compare_collection(
    collection,
    metrics,
    reps,
    seed,
    confidence,
    rule_order=rules,
    improvement=False,
    aggregate=aggregate,
  )
  if warn is not None:
    for warning in result.warnings + [w for g in result.groups for w in g.warnings]:
      warn(warning)
    if result.diverged_note:
      warn(result.diverged_note)
  manifests = {g.key.suite: published.load_manifest(g.key.suite)[0] for g in result.groups}
  buffer = io.StringIO(newline="")
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(COLUMNS)
  for key, runs in collection.groups().items():
    for run in sorted(runs, key=lambda r: (r.task, r.rule, r.seed)):
      writer.writerows(run_rows(run, manifests[key.suite]))
  for group in result.groups:
    writer.writerows(published_csv_rows(group))
    if aggregate:
      citations = {p.rule: p.citation for p in group.comparable_published}
      counted = [r.rule for r in collection.groups()[group.key] if r.diverged]
      writer.writerows(aggregate_csv_rows(group, citations, Counter(counted)))
  text = buffer.getvalue()
  if out is not None:
    store.write_atomic(Path(out), text.encode("utf-8"))
  return text


def _check_out(out: Path) -> None:
  """UserError unless `out` can be a file written here (checked before any work)."""
  if out.is_dir():
    raise UserError(
      f"cannot write {out}: it is a folder; pass --out FILE.csv (e.g. {out}/runs.csv)"
    )
  if not out.parent.is_dir():
    raise UserError(f"cannot write {out}: folder {out.parent} does not exist")
