"""``disco-eval run``: train fresh agents on a suite and record every run."""

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from disco_eval.cli.common import err, out, parse_set, print_json, split_csv
from disco_eval.cli.progress import sweep_progress

_LAUNCH = "Launchers (local, ray, slurm)"


def register(root: typer.Typer) -> None:
  """Adds the ``run`` command to `root`."""
  root.command("run")(run)


def run(suite: str = typer.Argument(..., help="Suite name (see `disco-eval suites list`)."),
        rule: list[str] = typer.Option(["disco103"], "--rule", "-r",
                                       help="Rule name or PATH.npz; repeat for several."),
        seeds: int = typer.Option(3, help="Number of seeds (0..N-1)."),
        seed_start: int = typer.Option(0, help="First seed."),
        tasks: Optional[str] = typer.Option(None, help="Comma-separated tasks (default: all)."),
        steps: Optional[int] = typer.Option(None, help="Env-step budget per run (default: the protocol's)."),
        protocol: Optional[str] = typer.Option(None, help="Protocol (default: the suite's)."),
        out_dir: Path = typer.Option(Path("results"), "--out", help="Results folder."),
        set_: list[str] = typer.Option([], "--set", help="Override a setting: table.key=value "
                                       "(rule tables: hyperparams, rule, agent, optimizer; loop: train)."),
        checkpoint_every: int = typer.Option(10, help="Chunks of iterations between checkpoints."),
        devices: Optional[int] = typer.Option(
            None, "--devices", help="Local devices each run's environments and learner batch "
            "are split over (default 1; same as --set train.devices=N)."),
        as_json: bool = typer.Option(False, "--json", help="Print the run results as JSON."),
        launcher: str = typer.Option("local", help="Where units run: local, ray or slurm "
                                     "(docs/cluster.md).", rich_help_panel=_LAUNCH),
        seeds_per_unit: int = typer.Option(0, help="Seeds trained together in one unit of "
                                           "work (0: all seeds of a rule and task).",
                                           rich_help_panel=_LAUNCH),
        retries: Optional[int] = typer.Option(None, help="ray/slurm: times a unit whose runs "
                                              "failed or whose worker died is submitted again "
                                              "(default: 2).", rich_help_panel=_LAUNCH),
        gpus_per_unit: Optional[float] = typer.Option(
            None, help="ray/slurm: GPUs per unit (default: ray: 1 if the cluster has GPUs, "
            "else 0; slurm: the profile's, else none).", rich_help_panel=_LAUNCH),
        cpus_per_unit: Optional[int] = typer.Option(None, help="ray/slurm: CPUs per unit "
                                                    "(default: ray: 1).", rich_help_panel=_LAUNCH),
        ray_address: Optional[str] = typer.Option(None, help="ray: the cluster to join "
                                                  "(HOST:6379 or auto; default: a local Ray).",
                                                  rich_help_panel=_LAUNCH),
        slurm_profile: Optional[Path] = typer.Option(None, help="slurm: TOML file of executor "
                                                     "settings (flags win).", rich_help_panel=_LAUNCH),
        slurm_partition: Optional[str] = typer.Option(None, help="slurm: partition.",
                                                       rich_help_panel=_LAUNCH),
        slurm_account: Optional[str] = typer.Option(None, help="slurm: account to charge.",
                                                     rich_help_panel=_LAUNCH),
        slurm_time: Optional[int] = typer.Option(None, help="slurm: time limit per job in "
                                                 "minutes (default: 1440); longer runs are "
                                                 "requeued and resume.", rich_help_panel=_LAUNCH),
        slurm_mem_gb: Optional[int] = typer.Option(None, help="slurm: memory per job in GB.",
                                                    rich_help_panel=_LAUNCH),
        slurm_array_parallelism: Optional[int] = typer.Option(
            None, help="slurm: jobs of the array running at once.", rich_help_panel=_LAUNCH)):
  """Train fresh agents with each rule on a suite's tasks and record every run."""
  # Here, not at the top: they load jax (start-up time of every command).
  from disco_eval import launch, runs
  options = launch.LaunchOptions(
      launcher=launcher, seeds_per_unit=seeds_per_unit, retries=retries,
      gpus_per_unit=gpus_per_unit, cpus_per_unit=cpus_per_unit, ray_address=ray_address,
      devices=devices or 1,
      slurm=launch.SlurmOptions(profile=slurm_profile, partition=slurm_partition,
                                account=slurm_account, time_min=slurm_time,
                                mem_gb=slurm_mem_gb, array_parallelism=slurm_array_parallelism))
  overrides = parse_set(set_)
  if devices is not None:
    overrides += (("train.devices", str(devices)),)
  spec = runs.SweepSpec(
      suite=suite, rules=tuple(rule), seeds=tuple(range(seed_start, seed_start + seeds)),
      tasks=split_csv(tasks), steps=steps, protocol=protocol, out=out_dir,
      overrides=overrides, checkpoint_every=max(1, checkpoint_every))
  with sweep_progress(err if as_json else out) as on_progress:
    results = launch.run(spec, options, on_progress)
  _print_results(suite, results, as_json)
  if any(r.status == "failed" for r in results):
    raise typer.Exit(1)


def _print_results(suite: str, results, as_json: bool) -> None:
  """The table (or JSON) of the sweep's run results, one row per run."""
  rows = [{"rule": r.rule, "task": r.task, "seed": r.seed, "status": r.status,
           "path": str(r.path), "score": (r.summary or {}).get("score"),
           "normalized_score": (r.summary or {}).get("normalized_score"),
           "error": r.error} for r in results]
  if as_json:
    return print_json(rows)
  t = Table(title=f"{suite}: runs")
  for c in ("rule", "task", "seed", "status", "score", "folder"):
    t.add_column(c)
  for r in rows:
    score = "-" if r["score"] is None else f"{r['score']:+.3f}"
    status = {"failed": f"[red]failed[/]: {r['error']}",
              "busy": "[yellow]busy[/]: being written by another process"}.get(
                  r["status"], r["status"])
    t.add_row(r["rule"], r["task"], str(r["seed"]), status, score, r["path"])
  out.print(t)
  busy = sum(r["status"] == "busy" for r in rows)
  if busy:
    err.print(f"{busy} run(s) are being written by another process; run this command "
              "again once it ends to check them.", highlight=False)
