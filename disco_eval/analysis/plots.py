"""Publication plots of run results, rliable-style (matplotlib, Agg canvas).

Kinds (``plot(kind, ...)``):

* ``intervals``: aggregate metrics (IQM, median, mean, optimality gap) of the
  normalised final scores, one panel per metric, rules on the y axis, with
  stratified-bootstrap confidence intervals (``rliable.plot_utils
  .plot_interval_estimates``).
* ``curves``: sample-efficiency curves, the IQM of the normalised training
  return over environment steps with bootstrap bands. Each point is the
  episode-weighted mean return of the training episodes that ended in the
  window of iterations since the previous point (about 40 points on the env
  steps every run of the rule logged).
* ``profiles``: performance profiles (fraction of runs whose normalised final
  score exceeds tau) with bootstrap bands.
* ``improvement``: probability of improvement P(X > Y) for each pair of rules
  with bootstrap intervals.

Every figure shows one suite under one protocol (pass ``suite``/``protocol``
when the results hold several). The format follows the file suffix (png,
pdf, svg; pdf and svg are vector with embedded, editable text). Colours come
from the Okabe-Ito colour-blind-safe palette, and a rule keeps its colour in
every plot of one results folder: rules are numbered in the sorted order of
all rule names found there. Published baselines from the suite manifest are
dashed grey lines (interval and curve plots: their aggregate point;
profiles: their score distribution), never part of any bootstrap. A caption
under each figure names the interval method, the replicates and seed, the
seeds per rule and any excluded runs, the rules not held out on the suite
(:mod:`disco_eval.analysis.rule_kinds`), and, with ``at``, that the scores
were read from the training curve (:mod:`disco_eval.analysis.at_steps`).
"""

from __future__ import annotations

import dataclasses
import io
import textwrap
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from disco_eval import store
from disco_eval.analysis import at_steps, collect, compare, curves, intervals, render, stats
from disco_eval.analysis import select as choose
from disco_eval.analysis.plot_style import (
  CAPTION_SIZE,
  STYLE,
  published_style,
  rule_colors,
)
from disco_eval.analysis.published import load_manifest, published_matrices
from disco_eval.config import suites
from disco_eval.errors import UserError

KINDS = ("intervals", "curves", "profiles", "improvement")
FORMATS = ("png", "pdf", "svg")
PROFILE_TAUS = 101


# --- inputs ------------------------------------------------------------------------


def check_kind_and_format(kind: str, out: Path) -> str:
  """The output format from `out`'s suffix; UserError for a bad kind/suffix."""
  if kind not in KINDS:
    raise UserError(f"unknown plot kind '{kind}'; valid kinds: {', '.join(KINDS)}")
  fmt = out.suffix.lower().lstrip(".")
  if fmt not in FORMATS:
    raise UserError(
      f"cannot tell the plot format from '{out.name}'; end the "
      f"file name in one of: "
      f"{', '.join('.' + f for f in FORMATS)}"
    )
  return fmt


def single_group(collection: collect.Collection) -> tuple[collect.GroupKey, list[collect.Run]]:
  """The one (suite, protocol) group of `collection`, else a UserError."""
  groups = collection.groups()
  if not groups:
    raise collect.nothing_usable_error(collection)
  if len(groups) > 1:
    names = ", ".join(f"{k.suite}/{k.protocol}" for k in groups)
    raise UserError(
      f"the results hold several suites or protocols ({names}); "
      "a plot shows one: pass --suite and --protocol"
    )
  key = next(iter(groups))
  return key, groups[key]


@dataclasses.dataclass
class Context:
  """What a plot builder needs."""

  collection: collect.Collection
  group: compare.GroupResult
  manifest: suites.SuiteManifest | None
  colors: dict[str, str]
  reps: int
  seed: int
  confidence: float
  warn: Callable[[str], None]

  @property
  def level(self) -> str:
    return f"{round(100 * self.confidence, 1):g}%"

  def ci_text(self, reps: int | None = None) -> str:
    text = f"{self.level} stratified bootstrap CIs ({reps or self.reps:,} reps, seed {self.seed})"
    return text + intervals.caption_note(self.group.aggregate)

  def seeds_text(self) -> str:
    return render.seed_phrase(self.group.seeds)

  def excluded_text(self) -> str:
    counts: dict[str, int] = {}
    for e in self.collection.excluded:
      counts[e.reason] = counts.get(e.reason, 0) + 1
    text = ", ".join(f"{n} {r}" for r, n in counts.items())
    parts = (f"excluded runs (not shown): {text}" if text else "", self.collection.counted_text())
    return "; ".join(p for p in parts if p)


# --- figure helpers ------------------------------------------------------------------


def _figure(width: float, height: float, ncols: int = 1):
  """A constrained-layout figure on an Agg canvas and its axes."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, ncols, squeeze=False)[0]
  return fig, list(axes)


def _caption(fig, parts: Sequence[str]) -> None:
  """A caption under the figure (call it last).

  The figure grows by the caption's height and the constrained layout is
  confined to the area above it, so nothing overlaps and nothing is drawn
  outside the figure.
  """
  text = "; ".join(p for p in parts if p) + "."
  width, height = fig.get_size_inches()
  chars = max(40, int(width * 72 / (CAPTION_SIZE * 0.56)))
  wrapped = textwrap.fill(text, chars)
  caption_in = (wrapped.count("\n") + 1) * CAPTION_SIZE * 1.3 / 72 + 0.15
  fig.set_size_inches(width, height + caption_in)
  frac = caption_in / (height + caption_in)
  fig.get_layout_engine().set(rect=(0, frac, 1, 1 - frac))
  fig.text(
    0.012,
    frac - 0.05 / (height + caption_in),
    wrapped,
    ha="left",
    va="top",
    fontsize=CAPTION_SIZE,
    color="#333333",
  )


def _save(fig, fmt: str) -> bytes:
  """The figure's bytes in `fmt`, with reproducible metadata."""
  metadata = {
    "pdf": {"CreationDate": None, "Creator": "disco-eval"},
    "svg": {"Date": None, "Creator": "disco-eval"},
    "png": {"Software": "disco-eval"},
  }[fmt]
  buffer = io.BytesIO()
  fig.savefig(buffer, format=fmt, bbox_inches="tight", pad_inches=0.08, metadata=metadata)
  return buffer.getvalue()


def _metric_axis_label(metric: str, group: compare.GroupResult) -> str:
  """``IQM`` over ``normalised return (PROTOCOL)``."""
  name = compare.METRIC_LABELS.get(metric, metric)
  detail = textwrap.fill(f"normalised {group.metric} ({group.key.protocol})", 36)
  return f"{name}\n{detail}"


def _whence(group: compare.GroupResult) -> str:
  """``of the final policy``, or ``read from the training curve at N steps``."""
  return "of the final policy" if group.read_at is None else group.source


def _protocol_text(group: compare.GroupResult) -> str:
  """``protocol reference, 58,000 env steps``."""
  steps = ", ".join(f"{s:,}" for s in group.env_steps)
  return f"protocol {group.key.protocol}, {steps} env steps"


def _legend_right(ax) -> None:
  """A frameless legend to the right of `ax` (the layout makes room)."""
  handles, labels = ax.get_legend_handles_labels()
  if handles:
    labels = [textwrap.fill(label, 26, subsequent_indent="  ") for label in labels]
    ax.legend(
      handles,
      labels,
      loc="upper left",
      bbox_to_anchor=(1.02, 1.0),
      borderaxespad=0.0,
      frameon=False,
    )


# --- intervals -------------------------------------------------------------------------


def build_intervals(ctx: Context):
  """One panel per metric: point and CI bar per rule (rliable style)."""
  group = ctx.group
  metrics = list(dict.fromkeys(r.metric for r in group.aggregate))
  rules = [r for r in group.rules if r in group.matrices]
  published = list(dict.fromkeys(r.rule for r in group.published_aggregate))
  height = 1.0 + 0.45 * len(rules) + (0.35 if published else 0)
  fig, axes = _figure(3.0 * len(metrics) + 1.4, max(2.6, height), len(metrics))
  ys = np.arange(len(rules))[::-1]
  for i, (ax, metric) in enumerate(zip(axes, metrics)):
    rows = {r.rule: r for r in group.aggregate if r.metric == metric}
    for y, rule in zip(ys, rules):
      row = rows[rule]
      ax.barh(
        y,
        row.hi - row.lo,
        left=row.lo,
        height=0.6,
        color=ctx.colors[rule],
        alpha=0.8,
        edgecolor="none",
      )
      ax.vlines(row.point, y - 0.3, y + 0.3, color="black", linewidth=2)
    for j, rule in enumerate(published):
      row = next(r for r in group.published_aggregate if r.rule == rule and r.metric == metric)
      ax.axvline(
        row.point, label=f"{rule} (published)" if ax is axes[-1] else None, **published_style(j)
      )
    ax.set_yticks(ys, rules if i == 0 else [""] * len(rules))
    ax.set_ylim(-0.6, len(rules) - 0.4)
    ax.set_xlabel(_metric_axis_label(metric, group))
    ax.grid(axis="y", visible=False)
    ax.tick_params(axis="y", length=0)
    ax.xaxis.set_major_locator(_max_ticks(4))
    ax.margins(x=0.08)
  _legend_right(axes[-1])
  fig.suptitle(
    f"Aggregate normalised {group.metric} {_whence(group)} "
    f"over {len(group.aggregate_tasks)} task(s) — suite "
    f"{group.key.suite}, {_protocol_text(group)}"
  )
  _caption(
    fig,
    [
      f"Bars: {ctx.ci_text()}; black ticks: point estimates",
      ctx.seeds_text(),
      "optimality gap: lower is better",
      "published baselines (dashed) come from the suite manifest "
      "and are not bootstrapped with runs made here"
      if published
      else "",
      ctx.excluded_text(),
      *render.label_notes(ctx.group),
    ],
  )
  return fig


def _max_ticks(n: int):
  from matplotlib.ticker import MaxNLocator

  return MaxNLocator(nbins=n)


# --- curves ---------------------------------------------------------------------------


def build_curves(ctx: Context):
  """IQM of normalised training return over env steps, with CI bands."""
  from matplotlib.ticker import EngFormatter

  group = ctx.group
  by_rule = curves.normalised_curves(ctx.group, ctx.manifest, ctx.collection.runs, ctx.warn)
  bands = {}
  for rule, (grid, values) in by_rule.items():
    bands[rule] = (
      grid,
      stats.sample_efficiency_curves({rule: values}, "iqm", ctx.reps, ctx.confidence, ctx.seed)[
        rule
      ],
    )
  fig, (ax,) = _figure(7.6, 4.2)
  for rule, (grid, band) in bands.items():
    color = ctx.colors[rule]
    ax.plot(grid, band.point, color=color, linewidth=2, label=rule)
    ax.fill_between(grid, band.lo, band.hi, color=color, alpha=0.2, linewidth=0)
  pub = published_matrices(group.comparable_published, group.aggregate_tasks, ctx.manifest)
  published = {r: float(stats.iqm(m)) for r, (m, _) in pub.items()}
  for j, (rule, value) in enumerate(published.items()):
    ax.axhline(value, label=f"{rule} (published, final)", **published_style(j))
  ax.xaxis.set_major_formatter(EngFormatter(sep=""))
  ax.set_xlabel(f"Environment steps (protocol {group.key.protocol})")
  ax.set_ylabel(f"IQM of normalised training {group.metric}")
  fig.suptitle(f"Sample efficiency — suite {group.key.suite}")
  _legend_right(ax)
  _caption(
    fig,
    [
      f"Shaded: {ctx.ci_text()}",
      f"IQM over {len(group.aggregate_tasks)} task(s) x seeds of "
      "the mean return of training episodes ending in each window",
      ctx.seeds_text(),
      "dashed: published final scores (IQM over tasks), not bootstrapped with runs made here"
      if published
      else "",
      ctx.excluded_text(),
      *render.label_notes(ctx.group),
    ],
  )
  return fig


# --- profiles --------------------------------------------------------------------------


def profile_taus(matrices: Mapping[str, np.ndarray], count: int = PROFILE_TAUS) -> np.ndarray:
  """Thresholds from min(0, lowest score) to max(1, highest score)."""
  values = np.concatenate([m.ravel() for m in matrices.values()])
  lo = min(0.0, float(values.min()))
  hi = max(1.0, float(values.max()))
  return np.linspace(lo, hi, count)


def build_profiles(ctx: Context):
  """Performance profiles (score distributions) with CI bands."""
  group = ctx.group
  if not group.matrices:
    raise UserError("no task is shared by all rules; nothing to profile")
  pub = published_matrices(group.comparable_published, group.aggregate_tasks, ctx.manifest)
  taus = profile_taus({**group.matrices, **{r: m for r, (m, _) in pub.items()}})
  bands = stats.performance_profile(group.matrices, taus, ctx.reps, ctx.confidence, ctx.seed)
  fig, (ax,) = _figure(7.6, 4.2)
  for rule in (r for r in group.rules if r in bands):
    band = bands[rule]
    color = ctx.colors[rule]
    ax.plot(taus, band.point, color=color, linewidth=2, label=rule)
    ax.fill_between(taus, band.lo, band.hi, color=color, alpha=0.2, linewidth=0)
  for j, (rule, (matrix, per_seed)) in enumerate(pub.items()):
    what = "per seed" if per_seed else "per task"
    ax.plot(
      taus,
      stats.run_score_distribution(matrix, taus),
      label=f"{rule} (published, {what})",
      **published_style(j),
    )
  ax.set_xlabel(f"Normalised {group.metric} {_whence(group)}, τ\n({_protocol_text(group)})")
  ax.set_ylabel("Fraction of runs with score > τ")
  ax.set_ylim(-0.02, 1.02)
  fig.suptitle(f"Performance profiles — suite {group.key.suite}")
  _legend_right(ax)
  _caption(
    fig,
    [
      f"Shaded: {ctx.ci_text()}",
      f"final scores on {len(group.aggregate_tasks)} task(s)",
      ctx.seeds_text(),
      "dashed: published scores from the suite manifest, not bootstrapped" if pub else "",
      ctx.excluded_text(),
      *render.label_notes(ctx.group),
    ],
  )
  return fig


# --- probability of improvement ---------------------------------------------------------


def build_improvement(ctx: Context):
  """P(X > Y) with CIs for each pair of rules (X before Y in rule order)."""
  group = ctx.group
  order = {r: i for i, r in enumerate(group.rules)}
  rows = [r for r in group.improvement if order[r.x] < order[r.y]]
  if not rows:
    raise UserError(
      "a probability-of-improvement plot needs at least two rules with runs on a shared task"
    )
  fig, (ax,) = _figure(6.4, 1.2 + 0.5 * len(rows))
  ys = np.arange(len(rows))[::-1]
  for y, row in zip(ys, rows):
    ax.barh(
      y,
      row.hi - row.lo,
      left=row.lo,
      height=0.6,
      color=ctx.colors[row.x],
      alpha=0.8,
      edgecolor="none",
    )
    ax.vlines(row.point, y - 0.3, y + 0.3, color="black", linewidth=2)
  ax.axvline(0.5, color="#444444", linestyle=(0, (4, 3)), linewidth=1)
  ax.set_xlim(-0.03, 1.03)
  ax.set_ylim(-0.6, len(rows) - 0.4)
  ax.set_yticks(ys, [r.x for r in rows])
  ax.tick_params(axis="y", length=0)
  ax.grid(axis="y", visible=False)
  right = ax.twinx()
  right.set_ylim(ax.get_ylim())
  right.set_yticks(ys, [r.y for r in rows])
  right.tick_params(axis="y", length=0)
  right.grid(False)
  for side in ("top", "right", "left"):
    right.spines[side].set_visible(False)
  ax.set_xlabel(
    f"P(X > Y) on normalised {group.metric}: X (left) beats Y (right)\n({_protocol_text(group)})"
  )
  fig.suptitle(f"Probability of improvement — suite {group.key.suite}")
  _caption(
    fig,
    [
      f"Bars: {ctx.ci_text()}; black ticks: point estimates",
      "P(X > Y) is the chance that a run of X scores higher than a "
      "run of Y on a random task (ties count one half)",
      ctx.seeds_text(),
      ctx.excluded_text(),
      *render.label_notes(ctx.group),
    ],
  )
  return fig


BUILDERS = {
  "intervals": build_intervals,
  "curves": build_curves,
  "profiles": build_profiles,
  "improvement": build_improvement,
}


# --- entry point ---------------------------------------------------------------------


def _check_out(kind: str, out: Path) -> str:
  """The format of plot file `out`; a UserError if it cannot be written."""
  fmt = check_kind_and_format(kind, out)
  if out.is_dir():
    raise UserError(f"cannot write {out}: it is a folder; pass --out FILE.{fmt} (a file name)")
  if not out.parent.is_dir():
    raise UserError(f"cannot write {out}: folder {out.parent} does not exist")
  return fmt


def _collect(
  kind: str,
  root: str | Path | Sequence[str | Path],
  at: int | str | None,
  select: choose.SelectOptions | None,
  **filters,
) -> tuple[collect.Collection, list[choose.Selection]]:
  """The runs a plot shows (read from their training curves at `at` when given;
  one value of a swept setting per rule with `select`), and the selections made."""
  if at is not None and kind == "curves":
    raise UserError("--at reads one point of each curve; `plot curves` draws all of it: drop --at")
  return choose.apply_options(at_steps.collect_at(root, at, **filters), select)


def plot(
  kind: str,
  root: str | Path | Sequence[str | Path],
  out: str | Path,
  suite: str | None = None,
  rules: Sequence[str] | str | None = None,
  reps: int = stats.DEFAULT_REPS,
  seed: int = 0,
  protocol: str | None = None,
  confidence: float = stats.DEFAULT_CONFIDENCE,
  warn: Callable[[str], None] | None = None,
  include_diverged: bool = False,
  at: int | str | None = None,
  select: choose.SelectOptions | None = None,
) -> Path:
  """Draws one plot of the runs under `root` and writes it to `out`.

  Args:
    kind: one of :data:`KINDS`.
    root: the results folder, or several (a run found twice is counted once).
    out: the output file; its suffix (png, pdf, svg) picks the format. It is
      written atomically; its folder must exist.
    suite, rules, protocol: filters, as for ``collect.collect``; the
      selection must hold one suite and protocol. `rules` also sets the order.
    reps, seed, confidence: bootstrap replicates and seed; coverage of intervals and bands.
    warn: called with each warning (excluded runs, dropped points, ...),
      and with the line saying what was done with diverged runs.
    include_diverged: count diverged runs at their evaluated score (else excluded).
    at: read the training curves at this budget, not final scores (not for ``curves``).
    select: ``compare --select`` (labels and caption say how it selected).

  Returns `out` as a Path. Raises UserError for a bad kind or suffix, no runs,
  several groups, nothing to plot, or an `out` that cannot be written.
  """
  fmt = _check_out(kind, out := Path(out))
  warn = warn or (lambda message: None)
  rules = collect.parse_list(rules)
  compare.check_settings(compare.DEFAULT_METRICS, reps, confidence)
  filters = dict(suite=suite, rules=rules, protocol=protocol, include_diverged=include_diverged)
  collection, chosen = _collect(kind, root, at, select, **filters)
  key, runs = single_group(collection)
  for message in [e.describe() for e in collection.excluded] + [collection.diverged_note()]:
    if message:
      warn(message)
  notes = choose.group_notes(chosen, key.suite, key.protocol)
  data = draw(kind, collection, key, runs, fmt, reps, seed, confidence, rules, warn, notes)
  store.write_atomic(out, data)
  return out


def draw(
  kind: str,
  collection: collect.Collection,
  key: collect.GroupKey,
  runs: Sequence[collect.Run],
  fmt: str,
  reps: int,
  seed: int,
  confidence: float,
  rules: Sequence[str] | None,
  warn: Callable[[str], None],
  notes: Sequence[str] = (),
) -> bytes:
  """The file (`fmt`: png, pdf, svg) of one plot of the group `key` (its `runs`, from
  `collection`; `notes`: lines added to its caption, e.g. how a value was selected);
  UserError when no task is shared by all rules."""
  import matplotlib as mpl

  manifest, problem = load_manifest(key.suite)
  if problem:
    warn(problem)
  group = compare.analyse_group(
    key,
    runs,
    manifest,
    compare.DEFAULT_METRICS,
    reps,
    seed,
    confidence,
    rule_order=rules,
    improvement=kind == "improvement",
    aggregate=kind == "intervals",
  )
  group.notes += list(notes)
  for message in group.warnings:
    warn(message)
  if not group.matrices:
    raise UserError(
      f"nothing to plot for {key.suite}/{key.protocol}: no task is shared by all selected rules"
    )
  ctx = Context(
    collection, group, manifest, rule_colors(collection.all_rules), reps, seed, confidence, warn
  )
  with mpl.rc_context(STYLE):
    fig = BUILDERS[kind](ctx)
    return _save(fig, fmt)
