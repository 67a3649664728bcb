"""One self-contained report of a comparison (``disco-eval report``).

:func:`report` collects the runs of one or more results folders
(:mod:`disco_eval.analysis.collect`), compares them
(:func:`disco_eval.analysis.compare.compare_collection`) and writes one file,
HTML (``.html``) or Markdown (``.md``), holding per group of one suite under one
protocol label:

* the protocol as the runs recorded it (their ``config.json``), with the budget
  they trained for, their overrides and the label that names them;
* what each number is: the metric and where the score comes from, the
  normalisation, the budget, the seeds behind each rule, and every interval's
  method, coverage, replicates and seed;
* the tables of ``disco-eval compare`` (rendered by
  :mod:`disco_eval.analysis.render`, the same text), with the group's warnings;
* the plots of ``disco-eval plot`` (:func:`disco_eval.analysis.plots.draw`) as
  PNG images embedded as base64 ``data:`` URIs, in HTML and in Markdown alike,
  so that the one file is the whole report (Markdown viewers that refuse data
  URIs, such as GitHub's, show the alt text instead); a plot that cannot be
  drawn (no task shared by all rules) is named with the reason;

and at the end the excluded runs (failed, diverged, duplicates, ...) and the
warnings that concern every group. Nothing here computes a statistic of its
own.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import io
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from disco_eval import __version__, store
from disco_eval.analysis import at_steps, collect, compare, plots, render, stats
from disco_eval.analysis.results import CompareResult, GroupResult
from disco_eval.errors import UserError

FORMATS = {".html": "html", ".htm": "html", ".md": "md"}
# The plots of every group, in this order; `curves` is left out when scores are
# read from the training curve at a budget (`--at`), `improvement` with one rule.
PLOT_KINDS = ("intervals", "profiles", "improvement", "curves")
# Width of the rendered tables, in characters.
TABLE_WIDTH = 150
PLOT_TITLES = {
  "intervals": "Aggregate metrics with their intervals",
  "profiles": "Performance profiles",
  "improvement": "Probability of improvement",
  "curves": "Sample-efficiency curves (training return)",
}


@dataclasses.dataclass(frozen=True)
class Figure:
  """One plot of a group: its PNG bytes, or why it was not drawn."""

  kind: str
  png: bytes | None
  note: str = ""


@dataclasses.dataclass(frozen=True)
class Section:
  """Everything the report shows of one group."""

  group: GroupResult
  protocol: Mapping[str, str]
  protocol_notes: tuple[str, ...]
  meaning: tuple[str, ...]
  tables: str  # rendered: an HTML fragment, or plain text for Markdown
  figures: tuple[Figure, ...]


def report_format(out: Path) -> str:
  """``html`` or ``md`` from `out`'s suffix; UserError if it cannot be written."""
  fmt = FORMATS.get(out.suffix.lower())
  if fmt is None:
    raise UserError(f"cannot tell the report format from '{out.name}'; end it in .html or .md")
  if out.is_dir():
    raise UserError(f"cannot write {out}: it is a folder; pass --out FILE.{fmt}")
  if not out.parent.is_dir():
    raise UserError(f"cannot write {out}: folder {out.parent} does not exist")
  return fmt


def _console():
  """A console that records what is printed, at a fixed width."""
  from rich.console import Console

  return Console(
    record=True,
    width=TABLE_WIDTH,
    file=io.StringIO(),
    force_terminal=True,
    color_system="truecolor",
  )


def _rendered(result: CompareResult, fmt: str) -> str:
  """`result` as ``disco-eval compare`` prints it: an HTML fragment (inline
  styles) or plain text."""
  console = _console()
  render.render(result, console)
  if fmt == "html":
    return console.export_html(inline_styles=True, code_format="{code}")
  return console.export_text()


def _protocol(runs: Sequence[collect.Run]) -> tuple[dict[str, str], tuple[str, ...]]:
  """The group's protocol as its runs recorded it (``config.json``), flattened
  to text, and notes: settings that differ between runs, overrides, labels."""
  docs = [store.RunRecord(r.path).config or {} for r in runs]
  tables = [d.get("protocol") if isinstance(d.get("protocol"), dict) else {} for d in docs]
  keys = sorted({k for t in tables for k in t})
  shown, notes = {}, []
  for key in keys:
    values = sorted({repr(t.get(key)) for t in tables})
    shown[key] = str(tables[0].get(key)) if len(values) == 1 else " | ".join(values)
    if len(values) > 1:
      notes.append(f"runs recorded different values of {key}: {', '.join(values)}")
  overrides = sorted({f"{k}={v}" for d in docs for k, v in (d.get("overrides") or {}).items()})
  if overrides:
    notes.append("overrides of the runs (--set): " + ", ".join(overrides))
  labels = sorted({str(d.get("label")) for d in docs if d.get("label")})
  if labels:
    notes.append("run labels: " + ", ".join(labels))
  return shown, tuple(notes)


def _steps(text: str | None) -> str:
  """``58,000`` from ``"58000"`` (other text unchanged, ``?`` when missing)."""
  return f"{int(text):,}" if text and text.isdigit() else (text or "?")


def _budget_line(group: GroupResult, protocol: Mapping[str, str]) -> str:
  """Which budget the scores are at, and how it relates to the protocol's."""
  reached = ", ".join(f"{s:,}" for s in group.env_steps)
  steps = f"{group.budget:,}" if group.budget else "the protocol's"
  line = f"Budget: {steps} env steps per run (runs stopped at {reached} env steps"
  line += ", the first whole iteration at or past the budget)"
  if "@" in group.key.protocol:
    line += (
      f"; the label {group.key.protocol} marks a budget other than the protocol's "
      f"{_steps(protocol.get('env_steps'))} steps: compare it with nothing at another budget"
    )
  if group.read_at is not None:
    line += f"; scores {group.source}"
  return line + "."


def _seeds_line(group: GroupResult) -> str:
  """Which seeds of each rule the aggregate holds."""
  if not group.matrix_seeds:
    return "Seeds: no aggregate (no task is shared by all rules); each per-task cell gives its n."
  return (
    "Seeds: "
    + "; ".join(
      f"{rule} {len(seeds)} (seeds {', '.join(map(str, seeds))})"
      for rule, seeds in group.matrix_seeds.items()
    )
    + " in the aggregate; the per-task table gives each cell's n."
  )


def _meaning(result: CompareResult, group: GroupResult, protocol: Mapping[str, str]) -> list[str]:
  """What each number of the group's tables and plots is."""
  level = f"{round(100 * result.confidence, 1):g}%"
  source = group.source
  described = protocol.get("metric_description")
  lines = [
    f"Score: {group.metric}"
    + (f" ({described})" if described and group.read_at is None else "")
    + f"; taken from the {source}.",
    f"Normalised score ({group.norm_label}): (score - min) / (max - min) with the suite "
    "manifest's per-task constants; the aggregates and plots use it.",
    _budget_line(group, protocol),
    _seeds_line(group),
    f"Per-task cells: mean over seeds with a {level} Student-t interval (n - 1 degrees of "
    "freedom; none for one seed).",
    f"Aggregates (IQM, median, mean, optimality gap) of the [seeds, tasks] matrix of "
    f"normalised scores over the {len(group.aggregate_tasks)} task(s) every rule has, with "
    f"{render.ci_caption(result)} (percentile intervals; seeds resampled within each task).",
  ]
  if group.improvement:
    lines.append(
      "P(X > Y): the chance that a run of X scores higher than a run of Y on a random task "
      f"(ties count one half), with the same bootstrap ({level})."
    )
  if group.published:
    lines.append(
      "Published rows come from the suite manifest, are never bootstrapped with the runs made "
      "here, and enter no statistic unless they have the runs' metric, budget and protocol."
    )
  return lines


def _figures(
  collection: collect.Collection,
  key: collect.GroupKey,
  runs: Sequence[collect.Run],
  result: CompareResult,
  rules: Sequence[str] | None,
  curves: bool,
) -> tuple[Figure, ...]:
  """The group's plots as PNG bytes (the warnings they raise are the tables')."""
  out = []
  rule_count = len({r.rule for r in runs})
  for kind in PLOT_KINDS:
    if kind == "curves" and not curves:
      continue
    if kind == "improvement" and rule_count < 2:
      continue
    try:
      png = plots.draw(
        kind, collection, key, runs, "png", result.reps, result.seed, result.confidence, rules,
        lambda message: None,
      )  # fmt: skip
      out.append(Figure(kind, png))
    except UserError as exc:
      out.append(Figure(kind, None, f"not drawn: {exc}"))
  return tuple(out)


def sections(
  collection: collect.Collection,
  result: CompareResult,
  fmt: str,
  rules: Sequence[str] | None = None,
) -> list[Section]:
  """One :class:`Section` per group of `result` (`collection`: its runs)."""
  groups = collection.groups()
  out = []
  for group in result.groups:
    runs = groups[group.key]
    protocol, notes = _protocol(runs)
    alone = dataclasses.replace(
      result, groups=[group], excluded=[], warnings=[], diverged_note=None
    )
    out.append(
      Section(
        group,
        protocol,
        notes,
        tuple(_meaning(result, group, protocol)),
        _rendered(alone, fmt),
        _figures(collection, group.key, runs, result, rules, group.read_at is None),
      )
    )
  return out


def _png_uri(png: bytes) -> str:
  return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _counts(result: CompareResult, collection: collect.Collection) -> str:
  """``12 runs in the statistics; 3 excluded (2 failed, 1 duplicate)``."""
  reasons: dict[str, int] = {}
  for e in result.excluded:
    reasons[e.reason] = reasons.get(e.reason, 0) + 1
  text = f"{len(collection.runs)} run(s) in the statistics; {len(result.excluded)} excluded"
  return text + (f" ({', '.join(f'{n} {r}' for r, n in reasons.items())})" if reasons else "")


def _header(result: CompareResult, collection: collect.Collection) -> list[str]:
  """Lines under the title: folders, counts, settings, version."""
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  return [
    "Results folders: " + collection.where,
    _counts(result, collection),
    f"Intervals: {render.ci_caption(result)}; metrics: {', '.join(result.metrics)}",
    "Diverged runs: "
    + ("counted at the evaluated score" if result.include_diverged else "excluded"),
    f"Written by disco-eval {__version__} on {now}",
  ]


_CSS = """body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;
color:#222}pre.tables{font-family:Menlo,Consolas,monospace;font-size:12px;line-height:1.25;
overflow-x:auto;background:#fafafa;padding:.8em;border:1px solid #ddd}
table.protocol{border-collapse:collapse}table.protocol td{border:1px solid #ccc;padding:2px 8px;
font-family:monospace}figure{margin:1em 0}figure img{max-width:min(100%,1100px);border:1px solid #eee}
figcaption{font-size:90%;color:#555}"""


def _html(result: CompareResult, collection: collect.Collection, parts: Sequence[Section]) -> str:
  """The report as one HTML document."""
  e = html.escape
  body = ["<h1>disco-eval report</h1>", "<ul class='header'>"]
  body += [f"<li>{e(line)}</li>" for line in _header(result, collection)]
  body.append("</ul>\n<nav><h2>Contents</h2><ol>")
  for i, part in enumerate(parts):
    body.append(f"<li><a href='#group-{i}'>{e(_title(part.group))}</a></li>")
  body.append("<li><a href='#exclusions'>Warnings and excluded runs</a></li></ol></nav>")
  for i, part in enumerate(parts):
    body.append(f"<section id='group-{i}'><h2>{e(_title(part.group))}</h2>")
    body.append("<h3>Protocol</h3><table class='protocol'>")
    body += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in part.protocol.items()]
    body.append("</table>")
    body += [f"<p>{e(note)}</p>" for note in part.protocol_notes]
    body.append("<h3>What each number is</h3><ul>")
    body += [f"<li>{e(line)}</li>" for line in part.meaning]
    body.append("</ul><h3>Tables</h3>")
    body.append(f"<pre class='tables'>{part.tables}</pre><h3>Plots</h3>")
    for fig in part.figures:
      title = e(PLOT_TITLES[fig.kind])
      if fig.png is None:
        body.append(f"<p>{title}: {e(fig.note)}</p>")
        continue
      body.append(
        f"<figure><img alt='{title}' src='{_png_uri(fig.png)}'>"
        f"<figcaption>{title} (disco-eval plot {fig.kind})</figcaption></figure>"
      )
    body.append("</section>")
  body.append("<section id='exclusions'><h2>Warnings and excluded runs</h2>")
  closing = _closing(result, "html")
  body.append(f"<pre class='tables'>{closing}</pre>" if closing else "<p>None.</p>")
  body.append("</section>")
  return (
    "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
    f"<title>disco-eval report: {e(collection.where)}</title>\n<style>{_CSS}</style>\n"
    "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
  )


def _markdown(
  result: CompareResult, collection: collect.Collection, parts: Sequence[Section]
) -> str:
  """The report as one Markdown document (plots as data URIs)."""
  lines = ["# disco-eval report", ""]
  lines += [f"- {line}" for line in _header(result, collection)]
  for part in parts:
    lines += ["", f"## {_title(part.group)}", "", "### Protocol", "", "| setting | value |"]
    lines.append("|---|---|")
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in part.protocol.items()]
    lines += [""] + [f"{note}  " for note in part.protocol_notes]
    lines += ["", "### What each number is", ""] + [f"- {line}" for line in part.meaning]
    lines += ["", "### Tables", "", "```text", part.tables.rstrip("\n"), "```", "", "### Plots"]
    for fig in part.figures:
      title = PLOT_TITLES[fig.kind]
      lines.append("")
      if fig.png is None:
        lines.append(f"{title}: {fig.note}")
      else:
        lines.append(f"![{title} (disco-eval plot {fig.kind})]({_png_uri(fig.png)})")
  lines += ["", "## Warnings and excluded runs", ""]
  closing = _closing(result, "md")
  lines += ["```text", closing.rstrip("\n"), "```"] if closing else ["None."]
  return "\n".join(lines) + "\n"


def _cell(text: Any) -> str:
  """Text for a Markdown table cell."""
  return str(text).replace("|", "\\|").replace("\n", " ")


def _title(group: GroupResult) -> str:
  return f"suite {group.key.suite} · protocol {group.key.protocol}"


def _closing(result: CompareResult, fmt: str) -> str:
  """The excluded runs, the diverged-runs note and the warnings of every group
  ('' when there are none)."""
  if not (result.excluded or result.diverged_note or result.warnings):
    return ""
  return _rendered(dataclasses.replace(result, groups=[]), fmt)


def report(
  root: str | Path | Sequence[str | Path],
  out: str | Path,
  suite: str | None = None,
  rules: Sequence[str] | str | None = None,
  metrics: Sequence[str] | str = compare.DEFAULT_METRICS,
  reps: int = stats.DEFAULT_REPS,
  seed: int = 0,
  protocol: str | None = None,
  include_diverged: bool = False,
  at: int | str | None = None,
  warn: Callable[[str], None] | None = None,
) -> Path:
  """Writes the report of the runs under `root` to `out` (atomically).

  Args:
    root: the results folder, or several (a run found twice is counted once).
    out: ``.html`` or ``.md`` file; its folder must exist.
    suite, rules, protocol, metrics, reps, seed, include_diverged, at: as for
      :func:`disco_eval.analysis.compare.compare`.
    warn: called with each warning (also written into the report).

  Returns:
    `out` as a Path.

  Raises:
    UserError: as ``compare``, or `out` is not a writable .html/.md file.
  """
  out = Path(out)
  fmt = report_format(out)
  rules = collect.parse_list(rules)
  compare.check_settings(metrics, reps, stats.DEFAULT_CONFIDENCE)
  collection = at_steps.collect_at(
    root, at, suite=suite, rules=rules, protocol=protocol, include_diverged=include_diverged
  )
  result = compare.compare_collection(collection, metrics, reps, seed, rule_order=rules)
  if warn is not None:
    for warning in result.warnings + [w for g in result.groups for w in g.warnings]:
      warn(warning)
  parts = sections(collection, result, fmt, rules)
  text = (_html if fmt == "html" else _markdown)(result, collection, parts)
  store.write_atomic(out, text.encode("utf-8"))
  return out
