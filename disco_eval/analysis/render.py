"""Rich tables of a comparison (``disco-eval compare``).

:func:`render` prints a :class:`~disco_eval.analysis.compare.CompareResult`:
per group a per-task table, an aggregate table and a probability-of-improvement
table, with their captions and warnings, then the excluded runs. Every piece of
user text (rule, task and path names, warnings) is escaped, so that rich never
reads it as markup.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from disco_eval.analysis import intervals, rule_kinds
from disco_eval.analysis.collect import Excluded
from disco_eval.analysis.compare import METRIC_LABELS
from disco_eval.analysis.published import budget_phrase_short
from disco_eval.analysis.results import PER_TASK_CI, CompareResult, GroupResult


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
  return (
    f"{round(100 * result.confidence, 1):g}% stratified bootstrap CI, "
    f"{result.reps:,} reps, seed {result.seed}"
  )


def seed_phrase(seeds: Mapping[str, int]) -> str:
  """``5 seeds per rule`` or ``seeds per rule: a 5, b 3``."""
  counts = set(seeds.values())
  if len(counts) == 1:
    n = counts.pop()
    return f"{n} seed{'s' if n != 1 else ''} per rule"
  return "seeds per rule: " + ", ".join(f"{r} {n}" for r, n in seeds.items())


def _group_title(group: GroupResult) -> str:
  steps = ", ".join(f"{s:,}" for s in group.env_steps)
  where = group.source if group.read_at is not None else f"{steps} env steps"
  return (
    f"suite {group.key.suite} · protocol {group.key.protocol} · {where} · metric: {group.metric}"
  )


def label_notes(group: GroupResult) -> list[str]:
  """The lines every table and caption of a group carries: where the scores
  come from (when read from the training curve), which published values were
  read off a figure, and which rules are not held out on the suite (or of
  unknown provenance)."""
  notes = [f"scores {group.source}"] if group.read_at is not None else []
  figure = sorted({p.rule for p in group.comparable_published if p.read_off == "figure"})
  if figure:
    notes.append(f"published values read off a figure: {', '.join(figure)}")
  return notes + rule_kinds.footnotes(group.kinds, group.key.suite) + list(group.notes)


def _rule_header(group: GroupResult, rule: str) -> str:
  """A rule's column header: its label, and "not held out" where so."""
  marker = group.kinds[rule].marker if rule in group.kinds else ""
  return _esc(rule) + (f"\n({marker})" if marker else "")


def _rules_table(group: GroupResult):
  """One row per rule: its category, whether the suite is held out for it,
  and the environments it was discovered on."""
  from rich.table import Table

  suite = group.key.suite
  table = Table(
    title=f"Rules — {suite}",
    caption="held out: the suite is not among the environments the rule was discovered on "
    "(its manifest's discovered_on); near: held out, but a near relative of one (its "
    "manifest's discovered_near); unknown: a custom checkpoint or a rule without a manifest",
    caption_justify="left",
  )
  for name in ("Rule", "Kind", f"Held out on {suite}", "Discovered on", "Backend"):
    table.add_column(_esc(name))
  for rule, kind in group.kinds.items():
    shown = {"no": "no (not held out)"}.get(kind.held_out, kind.held_out)
    found = _esc(", ".join(kind.discovered_on) or "—")
    table.add_row(
      _esc(rule), kind.category, shown, found, _esc(group.backends.get(rule, "unknown"))
    )
  return table


def _not_comparable_table(group: GroupResult):
  """Published rows that measured something else than the runs, and why."""
  from rich.table import Table

  table = Table(
    title=f"Published rows not comparable with these runs — {group.key.suite}",
    caption="not comparable: another policy, estimator, selection on the evaluation, metric, "
    "budget or protocol setting; in no statistic",
    caption_justify="left",
    title_style="bold yellow",
  )
  for name in ("Published", "Task", "Value", "Metric", "Budget", "Reason", "Source"):
    table.add_column(name, overflow="fold")
  for pub in (p for p in group.published if not p.comparable):
    value = pub.score if math.isfinite(pub.score) else next(iter(pub.beside.values()), None)
    table.add_row(
      _esc(pub.label),
      _esc(pub.task),
      fmt(value),
      _esc(pub.metric),
      budget_phrase_short(pub.env_steps),
      _esc(f"not comparable: {pub.reason}"),
      _esc(pub.citation),
    )
  return table


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
    title=f"Per-task final scores — {group.key.suite}, protocol {group.key.protocol}",
    caption=(
      f"each cell: {group.metric}, then {group.norm_label} "
      f"score ({norm}); mean over seeds [{level} {PER_TASK_CI} CI, n−1 "
      "dof]"
      + (
        f", then {', '.join(beside)} (mean over seeds, reported beside the score)" if beside else ""
      )
      + "; n = seeds; published columns come from the suite manifest "
      "and enter no statistic" + "".join(f"; {_esc(n)}" for n in label_notes(group))
    ),
    caption_justify="left",
  )
  table.add_column("Task")
  rules = [r for r in group.rules]
  comparable = group.comparable_published
  published = sorted({p.rule for p in comparable})
  for rule in rules:
    table.add_column(_rule_header(group, rule), justify="right")
  for rule in published:
    label = next(p.label for p in comparable if p.rule == rule)
    table.add_column(_esc(label), justify="right", style="italic dim")
  for task in group.tasks:
    cells = [_esc(task)]
    for rule in rules:
      row = next((r for r in group.per_task if r.task == task and r.rule == rule), None)
      cells.append(
        "-"
        if row is None
        else f"{fmt_interval(*row.score)}\n{norm} {fmt_interval(*row.normalized)}"
        + "".join(f"\n{k} {fmt(v)}" for k, v in row.beside.items())
        + f"\nn = {len(row.seeds)}"
      )
    for rule in published:
      pub = next((p for p in comparable if p.task == task and p.rule == rule), None)
      cells.append(
        "-"
        if pub is None
        else (
          f"{fmt(pub.score)}\n{norm} {fmt(pub.normalized_score)}"
          if math.isfinite(pub.score)
          else f"({group.metric} not published)"
        )
        + "".join(f"\n{k} {fmt(v)}" for k, v in pub.beside.items())
        + f"\nn = {pub.seeds if pub.seeds else '?'}"
      )
    table.add_row(*cells)
  return table


def _aggregate_table(result: CompareResult, group: GroupResult):
  from rich.table import Table

  table = Table(
    title=f"Aggregate {group.norm_label} scores over {len(group.aggregate_tasks)} "
    f"task(s) — {group.key.suite}, protocol {group.key.protocol}",
    caption=(
      f"{_esc(seed_phrase(group.seeds))} · {ci_caption(result)} · protocol "
      f"{group.key.protocol} · metric: {group.norm_label} {group.metric} · "
      "optimality gap: lower is better"
      + (
        " · published rows: from the manifest, not bootstrapped with runs made here"
        if group.published_aggregate
        else ""
      )
      + (
        " (— = point only, from per-task scores)"
        if any(not r.seeds for r in group.published_aggregate)
        else ""
      )
      + _diverged_caption(result)
      + "".join(f" · {_esc(n)}" for n in label_notes(group))
      + "".join(
        f" · {m} interval: {_esc(i)}"
        for m, i in dict.fromkeys(
          (r.metric, r.interval) for r in group.aggregate if r.interval != intervals.BOOTSTRAP
        )
      )
    ),
    caption_justify="left",
  )
  table.add_column("Rule")
  table.add_column("Kind")
  table.add_column("Held out")
  table.add_column("Seeds", justify="right")
  for m in result.metrics:
    table.add_column(METRIC_LABELS.get(m, m), justify="right")
  labels = {p.rule: p.label for p in group.comparable_published}
  for rows, published in ((group.aggregate, False), (group.published_aggregate, True)):
    for rule in dict.fromkeys(r.rule for r in rows):
      cells = {r.metric: r for r in rows if r.rule == rule}
      seeds = next(iter(cells.values())).seeds
      kind = rule_kinds.PUBLISHED if published else group.kinds.get(rule, rule_kinds.PUBLISHED)
      table.add_row(
        _esc(labels.get(rule, rule) if published else rule),
        kind.category,
        kind.held_out,
        str(seeds) if seeds else "?",
        *(fmt_interval(cells[m].point, cells[m].lo, cells[m].hi) for m in result.metrics),
        style="italic dim" if published else None,
      )
  return table


def _improvement_table(result: CompareResult, group: GroupResult):
  from rich.table import Table

  table = Table(
    title=f"Probability of improvement — {group.key.suite}, protocol {group.key.protocol}",
    caption=(
      f"P(X > Y): chance that a run of X beats a run of Y on a "
      f"random task · {_esc(seed_phrase(group.seeds))} · "
      f"{ci_caption(result)} · metric: {group.norm_label} {group.metric}"
      + "".join(f" · {_esc(n)}" for n in label_notes(group))
    ),
    caption_justify="left",
  )
  table.add_column("X")
  table.add_column("Y")
  table.add_column("P(X > Y)", justify="right")
  for row in group.improvement:
    table.add_row(_esc(row.x), _esc(row.y), fmt_interval(row.point, row.lo, row.hi))
  return table


def _diverged_caption(result: CompareResult) -> str:
  """The aggregate caption's words on diverged runs ('' when there are none)."""
  if result.include_diverged:
    if not result.diverged_counted:
      return ""
    return f" · diverged runs counted at the evaluated score ({result.diverged_counted})"
  left_out = sum(e.reason == "diverged" for e in result.excluded)
  return f" · diverged runs excluded ({left_out})" if left_out else ""


def _excluded_table(excluded: Sequence[Excluded]):
  """The excluded runs, one row each: reason, folder and detail (diverged
  runs, damaged and foreign seed folders included)."""
  from rich.table import Table

  table = Table(title="Excluded runs (not in any statistic)", title_style="bold yellow")
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
    console.rule(f"[bold]{_esc(_group_title(group))}")
    console.print(_rules_table(group))
    console.print(_per_task_table(result, group))
    if any(not p.comparable for p in group.published):
      console.print(_not_comparable_table(group))
    if group.aggregate:
      console.print(_aggregate_table(result, group))
    if group.improvement:
      console.print(_improvement_table(result, group))
    for warning in group.warnings:
      console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
  if result.excluded:
    console.print(_excluded_table(result.excluded))
  if result.diverged_note:
    console.print(f"note: {escape(result.diverged_note)}", highlight=False)
  for warning in result.warnings:
    if not warning.startswith("excluded "):
      console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
