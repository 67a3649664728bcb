"""``disco-eval run``: train fresh agents on a suite and record every run."""

import contextlib
import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Optional

import typer
from rich.table import Table

from disco_eval.cli import experiment
from disco_eval.cli.common import (
  discard_closed_output,
  err,
  esc,
  one_line,
  out,
  parse_set,
  print_json,
  split_csv,
)
from disco_eval.cli.helptext import Command
from disco_eval.cli.progress import sweep_progress
from disco_eval.errors import EXIT_ALL_BUSY, UserError

EXAMPLES = """Examples:

  disco-eval run catch --seeds 3

  disco-eval run catch --rule disco103 --rule actor_critic --steps 20000 --out results

  disco-eval run procgen --tasks coinrun,starpilot --set optimizer.learning_rate=3e-4

  disco-eval run catch --rule ppo --sweep optimizer.learning_rate=1e-4,3e-4 --seeds 6

  disco-eval run crafter --sweep protocol

  disco-eval run sokoban --launcher slurm --slurm-partition gpu

  disco-eval run --config examples/experiment.toml --track tensorboard
"""

_LAUNCH = "Launchers (local, ray, slurm)"


def register(root: typer.Typer) -> None:
  """Adds the ``run`` command to `root`."""
  root.command("run", cls=Command, epilog=EXAMPLES)(run)


def _opt(help_text: str, *names: str, panel: str | None = None, metavar: str | None = None):
  """A ``typer.Option`` (help on the command's page, in `panel` if given;
  `metavar` names the value it expects, e.g. N or FOLDER)."""
  return typer.Option(*names, help=help_text, rich_help_panel=panel, metavar=metavar)


def _launch(help_text: str, metavar: str | None = None):
  return _opt(help_text, panel=_LAUNCH, metavar=metavar)


SuiteArg = Annotated[
  str, typer.Argument(help="Suite name (see `disco-eval suites list`).", metavar="SUITE")
]
SuiteOrConfigArg = Annotated[
  Optional[str],
  typer.Argument(
    help="Suite name (see `disco-eval suites list`); may come from --config instead.",
    metavar="SUITE",
    show_default=False,
  ),
]
TrackOpt = Annotated[
  list[str],
  _opt(
    "Also log every run to a tracker while it trains: tensorboard (event files in "
    "<run>/tensorboard/) or wandb (offline, in <run>/wandb/); repeat for both.",
    "--track",
    metavar="NAME",
  ),
]
RuleOpt = Annotated[
  list[str],
  _opt(
    "Rule name, PATH.npz (labelled by its file stem), NAME=PATH.npz (labelled NAME) or a "
    "rule manifest PATH.toml (e.g. a plug-in's); repeat for several.",
    "--rule",
    "-r",
    metavar="RULE",
  ),
]
SetOpt = Annotated[
  list[str],
  _opt(
    "Override a setting: table.key=value "
    "(rule tables: hyperparams, rule, agent, optimizer; loop: train).",
    "--set",
    metavar="KEY=VALUE",
  ),
]
SweepOpt = Annotated[
  list[str],
  _opt(
    "Train each value as its own configuration: KEY=V1,V2,... (as --set KEY=V, recorded "
    "under --out/KEY=V); several form a grid; 'protocol': the protocol's tuning grid "
    "(docs/reports.md).",
    "--sweep",
    metavar="KEY=V1,V2",
  ),
]
DevicesOpt = Annotated[
  Optional[int],
  _opt(
    "Local devices each run's environments and learner batch "
    "are split over (default 1; same as --set train.devices=N).",
    "--devices",
    metavar="N",
  ),
]
CheckpointMinutesOpt = Annotated[
  float,
  _opt(
    "Minutes of training between checkpoints (besides every --checkpoint-every chunks).",
    metavar="MINUTES",
  ),
]
RetriesOpt = Annotated[
  Optional[int],
  _launch(
    "ray/slurm: times a unit whose runs failed or whose worker died is "
    "submitted again (default: 2).",
    "N",
  ),
]
GpusOpt = Annotated[
  Optional[float],
  _launch(
    "ray/slurm: GPUs per unit (default: ray: 1 if the cluster has GPUs, "
    "else 0; slurm: the profile's, else none).",
    "N",
  ),
]
SlurmTimeOpt = Annotated[
  Optional[int],
  _launch(
    "slurm: time limit per job in minutes (default: 1440); longer runs are requeued and resume.",
    "MINUTES",
  ),
]

TasksOpt = Annotated[
  Optional[str], _opt("Comma-separated tasks (default: all).", metavar="TASK,...")
]
StepsOpt = Annotated[
  Optional[str],
  _opt("Env-step budget per run: 20000, 1e6, 1M, 50m, 2B (default: the protocol's).", metavar="N"),
]
STEPS_BITS = 40  # --steps at most 2^40 (config.setting.POSITIVE_INT)


def budget(steps: str | int | None) -> int | None:
  """``--steps`` as env steps (None: the protocol's); a one-line UserError
  for text that is not a whole number in [1, 2^40]."""
  from disco_eval.analysis.at_steps import parse_steps

  return None if steps is None else parse_steps(steps, "--steps", STEPS_BITS)


ProtocolOpt = Annotated[Optional[str], _opt("Protocol (default: the suite's).", metavar="NAME")]
CheckpointOpt = Annotated[
  Optional[int],
  _opt(
    "Chunks of iterations between checkpoints (default: 10 on the CPU; none on a GPU/TPU, "
    "which checkpoints by --checkpoint-minutes only).",
    metavar="N",
  ),
]
LauncherOpt = Annotated[
  str, _launch("Where units run: local, ray or slurm (docs/cluster.md).", "NAME")
]
SeedsPerUnitOpt = Annotated[
  int, _launch("Seeds trained together in one unit of work (0: all seeds of a rule and task).", "N")
]
AllowCpuOpt = Annotated[
  bool,
  _opt(
    "Train on the CPU although this machine has a GPU (by default `run` refuses: "
    'JAX without its CUDA build; pip install -e ".[cuda12]").',
    "--allow-cpu",
  ),
]
DeterministicOpt = Annotated[
  bool,
  _opt(
    "Ask XLA for deterministic ops (XLA_FLAGS=--xla_gpu_deterministic_ops=true; "
    "recorded; slower on GPUs, a no-op on the CPU). See docs/gpu.md.",
    "--deterministic",
  ),
]
NoMemoryCheckOpt = Annotated[
  bool,
  _opt(
    "Train without first projecting each unit's memory (by default `run` refuses a unit "
    "that would not fit in this machine's memory; recorded in the experiment file).",
    "--no-memory-check",
  ),
]
RayAddressOpt = Annotated[
  Optional[str],
  _launch("ray: the cluster to join (HOST:6379 or auto; default: a local Ray).", "ADDRESS"),
]


def run(
  ctx: typer.Context,
  suite: SuiteOrConfigArg = None,
  rule: RuleOpt = ["disco103"],  # noqa: B006 - typer copies list defaults
  seeds: Annotated[int, _opt("Number of seeds (0..N-1).", metavar="N")] = 3,
  seed_start: Annotated[int, _opt("First seed.", metavar="N")] = 0,
  tasks: TasksOpt = None,
  steps: StepsOpt = None,
  protocol: ProtocolOpt = None,
  out_dir: Annotated[Path, _opt("Results folder.", "--out", metavar="FOLDER")] = Path("results"),
  set_: SetOpt = [],  # noqa: B006 - typer copies list defaults
  config: Annotated[Optional[Path], experiment.ConfigOpt] = None,
  track: TrackOpt = [],  # noqa: B006 - typer copies list defaults
  sweep: SweepOpt = [],  # noqa: B006 - typer copies list defaults
  checkpoint_every: CheckpointOpt = None,
  checkpoint_minutes: CheckpointMinutesOpt = 10.0,
  devices: DevicesOpt = None,
  allow_cpu: AllowCpuOpt = False,
  deterministic: DeterministicOpt = False,
  no_memory_check: NoMemoryCheckOpt = False,
  as_json: Annotated[bool, _opt("Print the run results as JSON.", "--json")] = False,
  launcher: LauncherOpt = "local",
  seeds_per_unit: SeedsPerUnitOpt = 0,
  retries: RetriesOpt = None,
  gpus_per_unit: GpusOpt = None,
  cpus_per_unit: Annotated[
    Optional[int], _launch("ray/slurm: CPUs per unit (default: ray: 1).", "N")
  ] = None,
  ray_address: RayAddressOpt = None,
  slurm_profile: Annotated[
    Optional[Path], _launch("slurm: TOML file of executor settings (flags win).", "FILE")
  ] = None,
  slurm_partition: Annotated[Optional[str], _launch("slurm: partition.", "NAME")] = None,
  slurm_account: Annotated[Optional[str], _launch("slurm: account to charge.", "NAME")] = None,
  slurm_time: SlurmTimeOpt = None,
  slurm_mem_gb: Annotated[Optional[int], _launch("slurm: memory per job in GB.", "GB")] = None,
  slurm_array_parallelism: Annotated[
    Optional[int], _launch("slurm: jobs of the array running at once.", "N")
  ] = None,
):
  """Train fresh agents with each rule on a suite's tasks and record every run."""
  values = experiment.resolve(ctx, config, {k: v for k, v in locals().items() if k != "ctx"})
  values["steps"] = budget(values["steps"])
  o = SimpleNamespace(**values)
  kinds = check_trackers(o.track)
  _prepare_machine(o.deterministic, o.allow_cpu, o.launcher)
  options = _launch_options(o)
  spec = resolved_spec(o)
  console = err if as_json else out
  if o.no_memory_check:
    spec = dataclasses.replace(spec, memory_check=False)
    err.print("memory check skipped (--no-memory-check)", highlight=False)

  saved = []

  def save_experiment() -> None:  # once the sweep is planned: bad input writes nothing
    if not saved:  # once for all configurations of a --sweep grid
      saved.append(experiment.save_resolved(values))
      console.print(f"experiment file: {esc(saved[0])}", highlight=False)

  results = []
  for one in sweep_specs(spec, o.sweep):
    results += _launch_sweep(one, options, console, kinds, save_experiment)
  _print_results(o.suite, results, as_json)
  if any(r.status == "failed" for r in results):
    raise typer.Exit(1)
  _exit_if_all_busy(results)


def _launch_options(o):
  """The LaunchOptions of `run`'s resolved options `o`."""
  from disco_eval import launch  # here, not at the top: it loads jax

  return launch.LaunchOptions(
    launcher=o.launcher,
    seeds_per_unit=o.seeds_per_unit,
    retries=o.retries,
    gpus_per_unit=o.gpus_per_unit,
    cpus_per_unit=o.cpus_per_unit,
    ray_address=o.ray_address,
    devices=o.devices or 1,
    slurm=launch.SlurmOptions(
      profile=o.slurm_profile,
      partition=o.slurm_partition,
      account=o.slurm_account,
      time_min=o.slurm_time,
      mem_gb=o.slurm_mem_gb,
      array_parallelism=o.slurm_array_parallelism,
    ),
  )


def check_trackers(kinds: list[str]) -> tuple[str, ...]:
  """The trackers asked for, checked before anything runs (one-line errors)."""
  if not kinds:
    return ()
  from disco_eval.track import check_available

  return check_available(kinds)


def sweep_spec(
  suite,
  rule,
  seeds,
  seed_start,
  tasks,
  steps,
  protocol,
  out_dir,
  set_,
  devices,
  checkpoint_every,
  checkpoint_minutes,
):
  """The SweepSpec of `run`'s (and `plan`'s) options; ``--devices N`` is
  ``--set train.devices=N``."""
  _check_options(seeds, tasks)
  from disco_eval import runs  # here, not at the top: it loads jax

  overrides = parse_set(set_)
  if devices is not None:
    overrides += (("train.devices", str(devices)),)
  return runs.SweepSpec(
    suite=suite,
    rules=tuple(rule),
    seeds=tuple(range(seed_start, seed_start + seeds)),
    tasks=split_csv(tasks),
    steps=steps,
    protocol=protocol,
    out=out_dir,
    overrides=overrides,
    checkpoint_every=checkpoint_every,
    checkpoint_minutes=checkpoint_minutes,
  )


def resolved_spec(o):
  """The SweepSpec of `run`'s or `plan`'s resolved options `o` (command line and
  experiment file)."""
  return sweep_spec(
    o.suite,
    o.rule,
    o.seeds,
    o.seed_start,
    o.tasks,
    o.steps,
    o.protocol,
    o.out_dir,
    o.set_,
    o.devices,
    o.checkpoint_every,
    o.checkpoint_minutes,
  )


def sweep_specs(spec, sweep: list[str]) -> list:
  """`spec` once per configuration of the ``--sweep`` grid (``[spec]`` without one)."""
  if not sweep:
    return [spec]
  from disco_eval.config import suites
  from disco_eval.runs import sweep_grid

  manifest = suites.load_suite(spec.suite)
  protocol = spec.protocol or manifest.default_protocol
  return sweep_grid.expand(spec, sweep_grid.parse_sweeps(sweep, manifest.raw, protocol))


def _check_options(seeds: int, tasks: str | None) -> None:
  """One-line UserErrors for options no sweep can run (the rest of the
  sweep's numbers are checked by config.validate.check_sweep)."""
  if seeds < 1:  # before the seeds become an empty range, which would read "0"
    raise UserError(f"--seeds = {seeds} is out of range: an integer >= 1 (set with --seeds N)")
  if tasks is not None and not split_csv(tasks):
    raise UserError(
      "--tasks names no task; pass task names (e.g. --tasks catch) or leave the option out "
      "for all of the suite's tasks"
    )


def _prepare_machine(deterministic: bool, allow_cpu: bool, launcher: str) -> None:
  """Deterministic XLA ops if asked (before anything starts JAX's backend:
  XLA reads its flags once), then, for local runs, the refusal to train on
  the CPU of a GPU box (cluster workers run on other machines)."""
  from disco_eval import runtime

  runtime.apply_determinism(deterministic)
  if launcher == "local":
    runtime.check_backend(allow_cpu)


def _exit_if_all_busy(results) -> None:
  """Exit status EXIT_ALL_BUSY, with a line saying so, when nothing could run
  because every run is being written by another process."""
  if results and all(r.status == "busy" for r in results):
    err.print(
      f"nothing ran: all {len(results)} run(s) are being written by another process "
      f"(exit status {EXIT_ALL_BUSY}); run this command again once it ends",
      markup=False,
      highlight=False,
      soft_wrap=True,
    )
    raise typer.Exit(EXIT_ALL_BUSY)


def _when_planned(on_progress, then):
  """`on_progress`, calling `then` first at the sweep's "plan" event."""
  done = []

  def wrapped(event):
    if event.kind == "plan" and not done:
      done.append(True)
      then()
    on_progress(event)

  return wrapped


def _launch_sweep(spec, options, console, trackers: tuple[str, ...] = (), on_plan=None):
  """The sweep's results (`trackers`: ``--track``; `on_plan`: called once the
  sweep is planned, i.e. its options were checked). A local sweep stops at a safe point on SIGINT or
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
        if on_plan is not None:
          on_progress = _when_planned(on_progress, on_plan)
        if not trackers:
          return launch.run(spec, options, on_progress)
        from disco_eval.track.live import LiveTracker

        tracker = LiveTracker(spec.out, spec.suite, trackers, on_progress)
        try:
          return launch.run(spec, options, tracker)
        finally:
          for line in tracker.close():
            err.print(esc(line), highlight=False, soft_wrap=True)
    except stop.Interrupted as e:
      err.print(esc(e.message), highlight=False, soft_wrap=True)
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
    try:
      return print_json(rows)
    except OSError:
      return discard_closed_output(sys.stdout)
  t = Table(title=f"{esc(suite)}: runs")
  for c in ("rule", "task", "seed", "status", "score", "folder"):
    t.add_column(c)
  for r in rows:
    score = "-" if r["score"] is None else f"{r['score']:+.3f}"
    status = {
      "failed": f"[red]failed[/]: {esc(one_line(r['error']))} (whole error: status.json)",
      "busy": "[yellow]busy[/]: being written by another process",
    }.get(r["status"], esc(r["status"]))
    t.add_row(esc(r["rule"]), esc(r["task"]), str(r["seed"]), status, score, esc(r["path"]))
  try:
    out.print(t)
  except OSError:  # stdout's reader went away (`| head`): the records hold it all
    discard_closed_output(out.file)
  busy = sum(r["status"] == "busy" for r in rows)
  if busy and busy < len(rows):
    err.print(
      f"{busy} run(s) are being written by another process; run this command "
      "again once it ends to check them.",
      highlight=False,
    )
