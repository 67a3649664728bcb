"""``disco-eval bench``: throughput, learner-step parts and seed scaling."""

from typing import Optional

import typer
from rich.table import Table

from disco_eval.cli.common import esc, out, parse_set, print_json
from disco_eval.cli.helptext import Command


def register(root: typer.Typer) -> None:
  """Adds the ``bench`` command to `root`."""
  root.command("bench", cls=Command)(bench)


def bench(
  suite: str = typer.Argument(
    "catch",
    help="A suite: catch, sokoban (pure JAX), procgen, crafter, nethack (host-stepped).",
    metavar="SUITE",
  ),
  rule: str = typer.Option(
    "disco103", "--rule", "-r", help="Rule name, PATH.npz or PATH.toml.", metavar="RULE"
  ),
  seeds: int = typer.Option(4, help="Seeds for the 1-vs-N scaling measurement.", metavar="N"),
  task: Optional[str] = typer.Option(
    None, help="Task (default: the suite's first).", metavar="TASK"
  ),
  protocol: Optional[str] = typer.Option(
    None, help="Protocol (default: the suite's).", metavar="NAME"
  ),
  chunk: int = typer.Option(4, help="Iterations per timed chunk (pure-JAX suites).", metavar="N"),
  repeats: int = typer.Option(
    3,
    help="Timed repetitions (median reported); host suites: timed iterations per measurement.",
    metavar="N",
  ),
  set_: list[str] = typer.Option(
    [], "--set", help="Override a setting: table.key=value.", metavar="KEY=VALUE"
  ),
  as_json: bool = typer.Option(False, "--json", help="Print JSON."),
  cost: bool = typer.Option(
    False,
    "--cost",
    help="Run nothing: XLA's cost analysis (FLOPs, bytes, memory) of the protocol's learner "
    "and policy steps, compiled for this device, and bytes per env step.",
  ),
):
  """Measure env-only and training throughput, the learner step's parts, and seed scaling."""
  from disco_eval import bench as bench_lib  # here, not at the top: it loads jax

  res = bench_lib.run_bench(
    suite, rule, seeds, protocol, task, parse_set(set_), chunk, repeats, cost=cost
  )
  if as_json:
    return print_json(res)
  if cost:
    t = Table(
      title=esc(
        f"bench --cost: {res['suite']}/{res['task']}, rule {res['rule']}, "
        f"protocol {res['protocol']}"
      ),
      show_header=False,
    )
    for name, value in bench_lib.cost_rows(res):
      t.add_row(esc(name), esc(value))
    return out.print(t)
  t = Table(
    title=esc(
      f"bench: {res['suite']}/{res['task']}, rule {res['rule']}, protocol {res['protocol']}"
    ),
    show_header=False,
  )
  for name, value in bench_lib.report_rows(res):
    t.add_row(esc(name), esc(value))
  out.print(t)
