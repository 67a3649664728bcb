"""Command-line commands for results: ``compare``, ``export csv``, ``plot`` and ``report``.

Thin wrappers: parse the options, call ``compare``, ``export``, ``plots`` or ``report``,
print. Errors are ``UserError``s, which the main CLI prints as
``error: MESSAGE`` (exit status 1). Warnings go to stderr, so that
``compare --json`` and ``export csv`` without ``--out`` print only their
output on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from disco_eval.analysis import compare, export, plots, render, report, stats
from disco_eval.analysis import select as choose
from disco_eval.cli import workflow
from disco_eval.cli.common import wide_console
from disco_eval.cli.helptext import Command, Group
from disco_eval.store.schema import versioned

DEFAULT_DIR = Path("results")

COMPARE_EXAMPLES = """Examples:

  disco-eval compare results

  disco-eval compare results --suite procgen --rules disco103,actor_critic

  disco-eval compare results --metrics iqm,median --json > compare.json

  disco-eval compare results --suite crafter --at 1M

  disco-eval compare results-gpu1 results-gpu2

  disco-eval compare results --select optimizer.learning_rate --select-seeds 0-2 --report-seeds 3-5
"""
EXPORT_EXAMPLES = """Examples:

  disco-eval export csv results --out runs.csv

  disco-eval export csv results --suite catch --aggregate > catch.csv
"""
PLOT_EXAMPLES = """Examples:

  disco-eval plot intervals results --out iqm.pdf

  disco-eval plot curves results --suite catch --out curves.png

  disco-eval plot improvement results --rules disco103,actor_critic --out improvement.svg
"""

REPORT_EXAMPLES = """Examples:

  disco-eval report results --out report.html

  disco-eval report results-gpu1 results-gpu2 --suite catch --out catch.md
"""

DirArg = Annotated[
  Optional[list[Path]],
  typer.Argument(
    help="Results folders (the --out of `disco-eval run`; default: results). Several folders "
    "(results of several machines) are read together; a run found in more than one (same "
    "configuration and seed) is counted once, from the first folder given, and the other "
    "copies are listed as excluded duplicates.",
    metavar="FOLDER",
    show_default=False,
  ),
]
SuiteOpt = Annotated[
  Optional[str], typer.Option("--suite", help="Only this suite.", metavar="SUITE")
]
RulesOpt = Annotated[
  Optional[str],
  typer.Option(
    "--rules", help="Only these rules, comma-separated (also their order).", metavar="RULE,..."
  ),
]
ProtocolOpt = Annotated[
  Optional[str],
  typer.Option(
    "--protocol",
    help="Only this protocol (a name, or NAME@STEPS for runs with another step budget).",
    metavar="NAME",
  ),
]
RepsOpt = Annotated[int, typer.Option("--reps", min=1, help="Bootstrap replicates.", metavar="N")]
SeedOpt = Annotated[
  int, typer.Option("--seed", help="Seed of the bootstrap generators.", metavar="N")
]
DivergedOpt = Annotated[
  bool,
  typer.Option(
    "--include-diverged",
    help="Count diverged runs (non-finite loss or parameters) at their evaluated score; "
    "by default they are excluded and listed.",
  ),
]


AtOpt = Annotated[
  Optional[str],
  typer.Option(
    "--at",
    help="Read each run's training curve at this budget instead of its final score "
    "(1000000, 1e6, 1M, 50M): the episode-weighted mean training return of the last 5% "
    "of the first STEPS env steps; a run that never reached STEPS is refused.",
    metavar="STEPS",
  ),
]


SelectOpt = Annotated[
  Optional[str],
  typer.Option(
    "--select",
    help="Keep, per rule and suite, the value of this swept setting (e.g. "
    "optimizer.learning_rate) with the best IQM on --select-seeds; the label says how.",
    metavar="KEY",
  ),
]
SelectSeedsOpt = Annotated[
  Optional[str],
  typer.Option("--select-seeds", help="Seeds to select on (0-2, 0,1,4).", metavar="SEEDS"),
]
ReportSeedsOpt = Annotated[
  Optional[str],
  typer.Option(
    "--report-seeds",
    help="Seeds to report (default: the selection seeds: optimistic, and labelled so).",
    metavar="SEEDS",
  ),
]


def _warn(message: str) -> None:
  """Prints a warning on stderr."""
  typer.echo(f"warning: {message}", err=True)


def compare_command(
  root: DirArg = None,
  suite: SuiteOpt = None,
  rules: RulesOpt = None,
  metrics: Annotated[
    str,
    typer.Option(
      "--metrics",
      help="Aggregate metrics, comma-separated: " + ", ".join(stats.metric_names()) + ".",
      metavar="METRIC,...",
    ),
  ] = ",".join(compare.DEFAULT_METRICS),
  reps: RepsOpt = stats.DEFAULT_REPS,
  seed: SeedOpt = 0,
  protocol: ProtocolOpt = None,
  as_json: Annotated[
    bool, typer.Option("--json", help="Print the result as JSON (only JSON on stdout).")
  ] = False,
  include_diverged: DivergedOpt = False,
  at: AtOpt = None,
  select: SelectOpt = None,
  select_seeds: SelectSeedsOpt = None,
  report_seeds: ReportSeedsOpt = None,
) -> None:
  """Compare rules per task and in aggregate (IQM etc. with 95% CIs)."""
  result = compare.compare(
    root or [DEFAULT_DIR],
    suite=suite,
    rules=rules,
    metrics=metrics,
    reps=reps,
    seed=seed,
    protocol=protocol,
    include_diverged=include_diverged,
    at=at,
    select=select,
    select_seeds=select_seeds,
    report_seeds=report_seeds,
  )
  if as_json:
    typer.echo(json.dumps(versioned(result.to_json()), indent=2, allow_nan=False))
    return
  render.render(result, wide_console())


def export_csv_command(
  root: DirArg = None,
  out: Annotated[
    Optional[Path],
    typer.Option("--out", help="Write the CSV to this file (default: stdout).", metavar="FILE"),
  ] = None,
  aggregate: Annotated[
    bool,
    typer.Option(
      "--aggregate",
      help="Add aggregate rows (IQM, median, mean, optimality gap with bootstrap CIs).",
    ),
  ] = False,
  suite: SuiteOpt = None,
  rules: RulesOpt = None,
  reps: RepsOpt = stats.DEFAULT_REPS,
  seed: SeedOpt = 0,
  protocol: ProtocolOpt = None,
  include_diverged: DivergedOpt = False,
  at: AtOpt = None,
  select: SelectOpt = None,
  select_seeds: SelectSeedsOpt = None,
  report_seeds: ReportSeedsOpt = None,
) -> None:
  """Export runs as one tidy CSV (training curves, final scores, published)."""
  text = export.export_csv(
    root or [DEFAULT_DIR],
    out=out,
    suite=suite,
    rules=rules,
    aggregate=aggregate,
    reps=reps,
    seed=seed,
    protocol=protocol,
    warn=_warn,
    include_diverged=include_diverged,
    at=at,
    select=choose.options(select, select_seeds, report_seeds),
  )
  if out is None:
    typer.echo(text, nl=False)
  else:
    typer.echo(f"wrote {out}", err=True)


def plot_command(
  kind: Annotated[
    str, typer.Argument(help="Plot kind: " + ", ".join(plots.KINDS) + ".", metavar="KIND")
  ],
  root: DirArg = None,
  out: Annotated[
    Path,
    typer.Option(
      "--out",
      help="Output file; the suffix picks the format: " + ", ".join(plots.FORMATS) + ".",
      metavar="FILE",
    ),
  ] = ...,
  suite: SuiteOpt = None,
  rules: RulesOpt = None,
  reps: RepsOpt = stats.DEFAULT_REPS,
  seed: SeedOpt = 0,
  protocol: ProtocolOpt = None,
  include_diverged: DivergedOpt = False,
  at: AtOpt = None,
  select: SelectOpt = None,
  select_seeds: SelectSeedsOpt = None,
  report_seeds: ReportSeedsOpt = None,
) -> None:
  """Draw a publication plot (intervals, curves, profiles, improvement)."""
  path = plots.plot(
    kind,
    root or [DEFAULT_DIR],
    out,
    suite=suite,
    rules=rules,
    reps=reps,
    seed=seed,
    protocol=protocol,
    warn=_warn,
    include_diverged=include_diverged,
    at=at,
    select=choose.options(select, select_seeds, report_seeds),
  )
  typer.echo(f"wrote {path}", err=True)


def report_command(
  root: DirArg = None,
  out: Annotated[
    Path,
    typer.Option(
      "--out",
      help="The report file: .html (plots embedded as base64 PNG) or .md (plots embedded as "
      "data: URIs).",
      metavar="FILE",
    ),
  ] = ...,
  suite: SuiteOpt = None,
  rules: RulesOpt = None,
  metrics: Annotated[
    str,
    typer.Option(
      "--metrics",
      help="Aggregate metrics, comma-separated: " + ", ".join(stats.metric_names()) + ".",
      metavar="METRIC,...",
    ),
  ] = ",".join(compare.DEFAULT_METRICS),
  reps: RepsOpt = stats.DEFAULT_REPS,
  seed: SeedOpt = 0,
  protocol: ProtocolOpt = None,
  include_diverged: DivergedOpt = False,
  at: AtOpt = None,
) -> None:
  """Write one self-contained report: protocol, tables, plots, warnings, exclusions."""
  path = report.report(
    root or [DEFAULT_DIR],
    out,
    suite=suite,
    rules=rules,
    metrics=metrics,
    reps=reps,
    seed=seed,
    protocol=protocol,
    include_diverged=include_diverged,
    at=at,
    warn=_warn,
  )
  typer.echo(f"wrote {path}", err=True)


def register(app: typer.Typer) -> None:
  """Adds ``compare``, ``export csv``, ``plot`` and ``report`` to `app`."""
  app.command("compare", cls=Command, epilog=COMPARE_EXAMPLES)(compare_command)
  export_app = typer.Typer(
    help="Export results for papers and notebooks.",
    no_args_is_help=True,
    cls=Group,
    epilog=EXPORT_EXAMPLES,
  )
  export_app.command("csv", cls=Command, epilog=EXPORT_EXAMPLES)(export_csv_command)
  export_app.command("tensorboard", cls=Command, epilog=workflow.TENSORBOARD_EXAMPLES)(
    workflow.export_tensorboard_command
  )
  app.add_typer(export_app, name="export")
  app.command("plot", cls=Command, epilog=PLOT_EXAMPLES)(plot_command)
  app.command("report", cls=Command, epilog=REPORT_EXAMPLES)(report_command)
