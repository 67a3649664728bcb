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

from disco_eval.analysis.collect import Excluded
from disco_eval.analysis.compare import METRIC_LABELS
from disco_eval.analysis.published import published_label
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
  return (
    f"suite {group.key.suite} · protocol {group.key.protocol} · "
    f"{steps} env steps · metric: {group.metric}"
  )


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
      "and enter no statistic"
    ),
    caption_justify="left",
  )
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
      cells.append(
        "-"
        if row is None
        else f"{fmt_interval(*row.score)}\n{norm} {fmt_interval(*row.normalized)}"
        + "".join(f"\n{k} {fmt(v)}" for k, v in row.beside.items())
        + f"\nn = {len(row.seeds)}"
      )
    for rule in published:
      pub = next((p for p in group.published if p.task == task and p.rule == rule), None)
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
    ),
    caption_justify="left",
  )
  table.add_column("Rule")
  table.add_column("Seeds", justify="right")
  for m in result.metrics:
    table.add_column(METRIC_LABELS.get(m, m), justify="right")
  for rows, published in ((group.aggregate, False), (group.published_aggregate, True)):
    for rule in dict.fromkeys(r.rule for r in rows):
      cells = {r.metric: r for r in rows if r.rule == rule}
      seeds = next(iter(cells.values())).seeds
      table.add_row(
        _esc(published_label(rule) if published else rule),
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
    ),
    caption_justify="left",
  )
  table.add_column("X")
  table.add_column("Y")
  table.add_column("P(X > Y)", justify="right")
  for row in group.improvement:
    table.add_row(_esc(row.x), _esc(row.y), fmt_interval(row.point, row.lo, row.hi))
  return table


def _excluded_table(excluded: Sequence[Excluded]):
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
