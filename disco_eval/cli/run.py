"""``disco-eval run``: train fresh agents on a suite and record every run."""

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from disco_eval.cli.common import err, out, parse_set, print_json, split_csv
from disco_eval.cli.progress import sweep_progress
from disco_eval.errors import UserError

_LAUNCH = "Launchers (local, ray, slurm)"


def register(root: typer.Typer) -> None:
  """Adds the ``run`` command to `root`."""
  root.command("run")(run)


def _opt(help_text: str, *names: str, panel: str | None = None):
  """A ``typer.Option`` (help on the command's page, in `panel` if given)."""
  return typer.Option(*names, help=help_text, rich_help_panel=panel)


def _launch(help_text: str):
  return _opt(help_text, panel=_LAUNCH)


SuiteArg = Annotated[str, typer.Argument(help="Suite name (see `disco-eval suites list`).")]
RuleOpt = Annotated[list[str], _opt("Rule name or PATH.npz; repeat for several.", "--rule", "-r")]
SetOpt = Annotated[
  list[str],
  _opt(
    "Override a setting: table.key=value "
    "(rule tables: hyperparams, rule, agent, optimizer; loop: train).",
    "--set",
  ),
]
DevicesOpt = Annotated[
  Optional[int],
  _opt(
    "Local devices each run's environments and learner batch "
    "are split over (default 1; same as --set train.devices=N).",
    "--devices",
  ),
]
CheckpointMinutesOpt = Annotated[
  float,
  _opt("Minutes of training between checkpoints (besides every --checkpoint-every chunks)."),
]
SeedsPerUnitOpt = Annotated[
  int, _launch("Seeds trained together in one unit of work (0: all seeds of a rule and task).")
]
RetriesOpt = Annotated[
  Optional[int],
  _launch(
    "ray/slurm: times a unit whose runs failed or whose worker died is "
    "submitted again (default: 2)."
  ),
]
GpusOpt = Annotated[
  Optional[float],
  _launch(
    "ray/slurm: GPUs per unit (default: ray: 1 if the cluster has GPUs, "
    "else 0; slurm: the profile's, else none)."
  ),
]
SlurmTimeOpt = Annotated[
  Optional[int],
  _launch(
    "slurm: time limit per job in minutes (default: 1440); longer runs are requeued and resume."
  ),
]


def run(
  suite: SuiteArg,
  rule: RuleOpt = ["disco103"],  # noqa: B006 - typer copies list defaults
  seeds: Annotated[int, _opt("Number of seeds (0..N-1).")] = 3,
  seed_start: Annotated[int, _opt("First seed.")] = 0,
  tasks: Annotated[Optional[str], _opt("Comma-separated tasks (default: all).")] = None,
  steps: Annotated[
    Optional[int], _opt("Env-step budget per run (default: the protocol's).")
  ] = None,
  protocol: Annotated[Optional[str], _opt("Protocol (default: the suite's).")] = None,
  out_dir: Annotated[Path, _opt("Results folder.", "--out")] = Path("results"),
  set_: SetOpt = [],  # noqa: B006 - typer copies list defaults
  checkpoint_every: Annotated[int, _opt("Chunks of iterations between checkpoints.")] = 10,
  checkpoint_minutes: CheckpointMinutesOpt = 10.0,
  devices: DevicesOpt = None,
  as_json: Annotated[bool, _opt("Print the run results as JSON.", "--json")] = False,
  launcher: Annotated[
    str, _launch("Where units run: local, ray or slurm (docs/cluster.md).")
  ] = "local",
  seeds_per_unit: SeedsPerUnitOpt = 0,
  retries: RetriesOpt = None,
  gpus_per_unit: GpusOpt = None,
  cpus_per_unit: Annotated[
    Optional[int], _launch("ray/slurm: CPUs per unit (default: ray: 1).")
  ] = None,
  ray_address: Annotated[
    Optional[str], _launch("ray: the cluster to join (HOST:6379 or auto; default: a local Ray).")
  ] = None,
  slurm_profile: Annotated[
    Optional[Path], _launch("slurm: TOML file of executor settings (flags win).")
  ] = None,
  slurm_partition: Annotated[Optional[str], _launch("slurm: partition.")] = None,
  slurm_account: Annotated[Optional[str], _launch("slurm: account to charge.")] = None,
  slurm_time: SlurmTimeOpt = None,
  slurm_mem_gb: Annotated[Optional[int], _launch("slurm: memory per job in GB.")] = None,
  slurm_array_parallelism: Annotated[
    Optional[int], _launch("slurm: jobs of the array running at once.")
  ] = None,
):
  """Train fresh agents with each rule on a suite's tasks and record every run."""
  # Here, not at the top: they load jax (start-up time of every command).
  from disco_eval import launch, runs

  options = launch.LaunchOptions(
    launcher=launcher,
    seeds_per_unit=seeds_per_unit,
    retries=retries,
    gpus_per_unit=gpus_per_unit,
    cpus_per_unit=cpus_per_unit,
    ray_address=ray_address,
    devices=devices or 1,
    slurm=launch.SlurmOptions(
      profile=slurm_profile,
      partition=slurm_partition,
      account=slurm_account,
      time_min=slurm_time,
      mem_gb=slurm_mem_gb,
      array_parallelism=slurm_array_parallelism,
    ),
  )
  overrides = parse_set(set_)
  if devices is not None:
    overrides += (("train.devices", str(devices)),)
  spec = runs.SweepSpec(
    suite=suite,
    rules=tuple(rule),
    seeds=tuple(range(seed_start, seed_start + seeds)),
    tasks=split_csv(tasks),
    steps=steps,
    protocol=protocol,
    out=out_dir,
    overrides=overrides,
    checkpoint_every=max(1, checkpoint_every),
    checkpoint_minutes=checkpoint_minutes,
  )
  results = _launch_sweep(spec, options, err if as_json else out)
  _print_results(suite, results, as_json)
  if any(r.status == "failed" for r in results):
    raise typer.Exit(1)


def _launch_sweep(spec, options, console):
  """The sweep's results. A local sweep stops at a safe point on SIGINT or
  SIGTERM: one line, then exit 128 + the signal (130, 143); the runs resume
  when the same command runs again. (Cluster launchers handle Ctrl-C in their
  driver: its workers are not in this process.)"""
  from disco_eval import launch
  from disco_eval.runs import stop

  if not spec.checkpoint_minutes >= 0:  # (NaN too)
    raise UserError(f"--checkpoint-minutes must be >= 0, got {spec.checkpoint_minutes}")
  local = options.launcher == "local"
  with stop.handling() if local else contextlib.nullcontext():
    try:
      with sweep_progress(console) as on_progress:
        return launch.run(spec, options, on_progress)
    except stop.Interrupted as e:
      err.print(escape(e.message), highlight=False, soft_wrap=True)
      raise typer.Exit(e.exit_code) from None


def _print_results(suite: str, results, as_json: bool) -> None:
  """The table (or JSON) of the sweep's run results, one row per run."""
  rows = [
    {
      "rule": r.rule,
      "task": r.task,
      "seed": r.seed,
      "status": r.status,
      "path": str(r.path),
      "score": (r.summary or {}).get("score"),
      "normalized_score": (r.summary or {}).get("normalized_score"),
      "error": r.error,
    }
    for r in results
  ]
  if as_json:
    return print_json(rows)
  t = Table(title=f"{suite}: runs")
  for c in ("rule", "task", "seed", "status", "score", "folder"):
    t.add_column(c)
  for r in rows:
    score = "-" if r["score"] is None else f"{r['score']:+.3f}"
    status = {
      "failed": f"[red]failed[/]: {r['error']}",
      "busy": "[yellow]busy[/]: being written by another process",
    }.get(r["status"], r["status"])
    t.add_row(r["rule"], r["task"], str(r["seed"]), status, score, r["path"])
  out.print(t)
  busy = sum(r["status"] == "busy" for r in rows)
  if busy:
    err.print(
      f"{busy} run(s) are being written by another process; run this command "
      "again once it ends to check them.",
      highlight=False,
    )
