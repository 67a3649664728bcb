"""``disco-eval analyze bootstrap|traces|probes``: what a Disco-architecture rule has learned
(the paper's Fig. 4; the ablations of Fig. 4e are rule variants, ``--rule disco103:no-yz``).

Errors are ``UserError``s, which the main CLI prints as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from disco_eval.analysis.inside import commands
from disco_eval.cli.helptext import Command, Group

OutOpt = Annotated[
  Path, typer.Option("--out", help="Output file: .csv, .png or .pdf.", metavar="FILE")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the episodes and probes.")]
RunArg = Annotated[Path, typer.Argument(help="A run folder (RESULTS/SUITE/TASK/RULE/seedN).")]


def bootstrap_command(
  rule: Annotated[
    str, typer.Argument(help="Rule of Disco103's architecture (NAME, NAME:VARIANT, PATH.npz).")
  ],
  out: OutOpt,
  run: Annotated[
    Optional[Path],
    typer.Option(
      "--run", help="Trajectories of this run's agent (default: golden inputs).", metavar="RUN_DIR"
    ),
  ] = None,
  golden_glob: Annotated[
    Optional[str],
    typer.Option(
      "--golden",
      help="Golden rule-step files (a glob), when no --run is given "
      f"(default: ${commands.GOLDEN_ENV}).",
      metavar="GLOB",
    ),
  ] = None,
  trajectories: Annotated[
    int, typer.Option("--trajectories", help="Trajectories collected from the run.")
  ] = 4,
  probes: Annotated[int, typer.Option("--probes", help="Gaussian probes per target.")] = 2,
  seed: SeedOpt = 0,
) -> None:
  """Sensitivity of the targets at t to the predictions y, z at t+k, over k (Fig. 4d)."""
  lines = commands.bootstrap(
    rule, run, out, golden_glob, max(1, trajectories), max(1, probes), seed
  )
  for line in lines:
    typer.echo(line)


def traces_command(
  run: RunArg,
  out: OutOpt,
  seed: SeedOpt = 0,
  steps: Annotated[
    int, typer.Option("--steps", help="Most steps to wait for an episode end.")
  ] = 1000,
) -> None:
  """One episode of the run's agent: rewards, policy entropy, predictions (Fig. 4a)."""
  for line in commands.trace(run, out, seed, max(2, steps)):
    typer.echo(line)


def probes_command(
  run: RunArg,
  out: OutOpt,
  seed: SeedOpt = 0,
  envs: Annotated[int, typer.Option("--envs", help="Environments collected.")] = 32,
  steps: Annotated[int, typer.Option("--steps", help="Steps per environment.")] = 200,
  horizon: Annotated[int, typer.Option("--horizon", help="Steps ahead the targets look.")] = 5,
  threshold: Annotated[
    float, typer.Option("--threshold", help="A reward at least this large is 'large'.")
  ] = 1.0,
  train_steps: Annotated[int, typer.Option("--train-steps", help="Steps per probe.")] = 1000,
) -> None:
  """Probe table: y, z, policy, value -> future large reward, future entropy (Fig. 4c)."""
  lines = commands.probe(
    run, out, seed, max(1, envs), max(2, steps), max(1, horizon), threshold, max(1, train_steps)
  )
  for line in lines:
    typer.echo(line)


def register(app: typer.Typer) -> None:
  """Adds ``analyze bootstrap|traces|probes`` to `app`."""
  group = typer.Typer(
    help="Look inside a rule of Disco103's architecture (the paper's Fig. 4).",
    no_args_is_help=True,
    cls=Group,
  )
  group.command("bootstrap", cls=Command)(bootstrap_command)
  group.command("traces", cls=Command)(traces_command)
  group.command("probes", cls=Command)(probes_command)
  app.add_typer(group, name="analyze")
