"""``disco-eval bench``: throughput, learner-step parts and seed scaling."""

from typing import Optional

import typer
from rich.table import Table

from disco_eval.cli.common import out, parse_set, print_json


def register(root: typer.Typer) -> None:
  """Adds the ``bench`` command to `root`."""
  root.command("bench")(bench)


def bench(
  suite: str = typer.Argument(
    "catch", help="A suite: catch, sokoban (pure JAX), procgen, crafter, nethack (host-stepped)."
  ),
  rule: str = typer.Option("disco103", "--rule", "-r", help="Rule name or PATH.npz."),
  seeds: int = typer.Option(4, help="Seeds for the 1-vs-N scaling measurement."),
  task: Optional[str] = typer.Option(None, help="Task (default: the suite's first)."),
  protocol: Optional[str] = typer.Option(None),
  chunk: int = typer.Option(4, help="Iterations per timed chunk (pure-JAX suites)."),
  repeats: int = typer.Option(
    3, help="Timed repetitions (median reported); host suites: timed iterations per measurement."
  ),
  set_: list[str] = typer.Option([], "--set", help="Override a setting: table.key=value."),
  as_json: bool = typer.Option(False, "--json"),
):
  """Measure env-only and training throughput, the learner step's parts, and seed scaling."""
  from disco_eval import bench as bench_lib  # here, not at the top: it loads jax

  res = bench_lib.run_bench(suite, rule, seeds, protocol, task, parse_set(set_), chunk, repeats)
  if as_json:
    return print_json(res)
  t = Table(
    title=f"bench: {res['suite']}/{res['task']}, rule {res['rule']}, protocol {res['protocol']}",
    show_header=False,
  )
  for name, value in bench_lib.report_rows(res):
    t.add_row(name, value)
  out.print(t)
