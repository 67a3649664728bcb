"""``disco-eval plan``: a sweep's units and projected costs, before it runs."""

from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Optional

import typer
from rich.table import Table

from disco_eval.cli import experiment
from disco_eval.cli.common import esc, out, print_json
from disco_eval.cli.helptext import Command
from disco_eval.cli.run import (
  CheckpointMinutesOpt,
  CheckpointOpt,
  DevicesOpt,
  ProtocolOpt,
  RuleOpt,
  SeedsPerUnitOpt,
  SetOpt,
  StepsOpt,
  SuiteOrConfigArg,
  SweepOpt,
  TasksOpt,
  _opt,
  budget,
  resolved_spec,
  sweep_specs,
)

EXAMPLES = """Examples:

  disco-eval plan catch --seeds 3

  disco-eval plan sokoban --rule disco103 --rule actor_critic --steps 5000000

  disco-eval plan --config examples/experiment.toml
"""


def register(root: typer.Typer) -> None:
  """Adds the ``plan`` command to `root`."""
  root.command("plan", cls=Command, epilog=EXAMPLES)(plan)


def _size(n: float | None) -> str:
  if n is None:
    return "-"
  for unit in ("B", "KB", "MB", "GB", "TB"):
    if n < 1000 or unit == "TB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1000
  return f"{n:.1f} TB"


def _duration(s: float) -> str:
  if s < 120:
    return f"{s:.0f} s"
  if s < 7200:
    return f"{s / 60:.1f} min"
  return f"{s / 3600:.1f} h"


def plan(
  ctx: typer.Context,
  suite: SuiteOrConfigArg = None,
  rule: RuleOpt = ["disco103"],  # noqa: B006 - typer copies list defaults
  seeds: Annotated[int, _opt("Number of seeds (0..N-1).", metavar="N")] = 3,
  seed_start: Annotated[int, _opt("First seed.", metavar="N")] = 0,
  tasks: TasksOpt = None,
  steps: StepsOpt = None,
  protocol: ProtocolOpt = None,
  out_dir: Annotated[Path, _opt("Results folder (as for run).", "--out", metavar="FOLDER")] = Path(
    "results"
  ),
  set_: SetOpt = [],  # noqa: B006 - typer copies list defaults
  config: Annotated[Optional[Path], experiment.ConfigOpt] = None,
  sweep: SweepOpt = [],  # noqa: B006 - typer copies list defaults
  checkpoint_every: CheckpointOpt = None,
  checkpoint_minutes: CheckpointMinutesOpt = 10.0,
  devices: DevicesOpt = None,
  seeds_per_unit: SeedsPerUnitOpt = 0,
  iterations: Annotated[
    int, _opt("Iterations per measured chunk (the projection's sample).", metavar="N")
  ] = 3,
  repeats: Annotated[int, _opt("Measured chunks after the first (median).", metavar="N")] = 2,
  as_json: Annotated[bool, _opt("Print the projection as JSON.", "--json")] = False,
):
  """Print a sweep's units, env steps, and projected wall time, device memory and disk."""
  from disco_eval.runs.projection import project  # here, not at the top: it loads jax

  values = experiment.resolve(ctx, config, {k: v for k, v in locals().items() if k != "ctx"})
  values["steps"] = budget(values["steps"])
  o = SimpleNamespace(**values)
  spec = resolved_spec(o)
  specs = sweep_specs(spec, o.sweep)
  projections = [project(one, o.seeds_per_unit, iterations, repeats) for one in specs]
  if as_json:
    return print_json(projections[0] if len(specs) == 1 else projections)
  for one, res in zip(specs, projections):
    if len(specs) > 1:
      out.print(f"configuration {esc(one.out.name)} (recorded under {esc(one.out)}):")
    _print(res)


def _print(res: dict) -> None:
  t = Table(title=esc(f"plan: {res['suite']} on {res['device']}"))
  for c in ("rule", "task", "seeds", "env steps/run", "env steps", "wall", "device mem", "disk"):
    t.add_column(c)
  for u in res["units"]:
    t.add_row(
      esc(u["rule"]),
      esc(u["task"]),
      ",".join(map(str, u["seeds"])),
      f"{u['env_steps_per_run']:,}",
      f"{u['env_steps']:,}",
      _duration(u["wall_s"]),
      _size(u["device_bytes"]),
      _size(u["disk_bytes"]),
    )
  out.print(t)
  out.print(
    f"{len(res['units'])} units, {res['runs']} runs, {res['env_steps']:,} env steps; "
    f"projected wall {_duration(res['wall_s'])} (units one after another), "
    f"device memory {_size(res['device_bytes'])} (largest unit), disk {_size(res['disk_bytes'])}",
    highlight=False,
  )
  for m in res["measurements"]:
    rate = m["steps_per_iteration"] * m["seeds"] / m["iteration_s"]
    out.print(
      f"measured {esc(m['rule'])}/{esc(m['task'])} x{m['seeds']} seed(s): "
      f"{rate:,.0f} env steps/s, first chunk {m['first_chunk_s']:.1f} s "
      f"(compilation), evaluation {m['eval_s']:.1f} s, state {_size(m['state_bytes'])}",
      highlight=False,
    )
