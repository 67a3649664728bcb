"""The `disco-eval` command line: parse, call, print."""

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from disco_eval.errors import UserError

app = typer.Typer(help="Evaluate discovered RL update rules on held-out suites, "
                       "with honest statistics.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
rules_app = typer.Typer(help="Rule manifests and checkpoints.", no_args_is_help=True)
suites_app = typer.Typer(help="Suite manifests and their protocols.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(suites_app, name="suites")

# Piped output gets a wide console so that tables are not squeezed.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _print_json(obj) -> None:
  sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _split_csv(text: Optional[str]) -> tuple[str, ...]:
  return tuple(t.strip() for t in text.split(",") if t.strip()) if text else ()


# ---------------------------------------------------------------------------
# rules


@rules_app.command("list")
def rules_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
  """List the known rules."""
  from disco_eval import manifests
  from disco_eval.rules import weights
  ms = manifests.list_rule_manifests()
  rows = []
  for m in ms:
    cached = None
    if m.filename:
      p = weights.cached_path(m)
      cached = p.is_file()
    rows.append({"name": m.name, "kind": m.kind, "architecture": m.architecture,
                 "description": m.description, "learned": bool(m.filename),
                 "cached": cached})
  if as_json:
    return _print_json(rows)
  t = Table(title="Rules")
  for c in ("name", "kind", "weights", "description"):
    t.add_column(c)
  for r in rows:
    w = "-" if not r["learned"] else ("cached" if r["cached"] else "not pulled")
    t.add_row(r["name"], r["kind"], w, r["description"])
  out.print(t)


@rules_app.command("show")
def rules_show(name: str, as_json: bool = typer.Option(False, "--json")):
  """Show a rule's manifest: source, checksum, licence and default settings."""
  from disco_eval import manifests
  m = manifests.load_rule_manifest(name)
  info = {"name": m.name, "kind": m.kind, "architecture": m.architecture,
          "description": m.description, "source_url": m.source_url,
          "sha256": m.sha256, "licence": m.licence, "citation": m.citation,
          "manifest": str(m.path), "settings": m.settings(),
          "suite_overrides": m.suites}
  if as_json:
    return _print_json(info)
  t = Table(title=f"Rule {m.name}", show_header=False)
  for k in ("kind", "architecture", "description", "source_url", "sha256",
            "licence", "citation", "manifest"):
    t.add_row(k, str(info[k]))
  for table, vals in info["settings"].items():
    for k, v in vals.items():
      t.add_row(f"{table}.{k}", str(v))
  for suite, vals in m.suites.items():
    for k, v in vals.items():
      t.add_row(f"[{suite}] {k}", str(v))
  out.print(t)


@rules_app.command("pull")
def rules_pull(name: str,
               force: bool = typer.Option(False, help="Download again even if cached."),
               url: Optional[str] = typer.Option(None, help="Download from this URL instead."),
               file: Optional[Path] = typer.Option(
                   None, "--file", help="Import a local copy (checked against the manifest's sha256).")):
  """Download a learned rule's checkpoint into the cache and verify its sha256."""
  from disco_eval import manifests
  from disco_eval.rules import weights
  m = manifests.load_rule_manifest(name)
  if not m.filename:
    raise UserError(f"rule '{name}' is hand-designed: it has no checkpoint to pull")
  if file is not None:
    if not file.is_file():
      raise UserError(f"file not found: {file}")
    url = file.resolve().as_uri()
  path = weights.pull(m, url=url, force=force)
  out.print(f"{m.name}: {path} (sha256 {m.sha256})")


@rules_app.command("verify")
def rules_verify(name: str = typer.Argument(..., help="Rule name or PATH.npz."),
                 golden: list[Path] = typer.Option(..., "--golden", help="Golden rule-step file(s): "
                                                   "--golden F1 F2 ... or --golden F1 --golden F2."),
                 more: Optional[list[Path]] = typer.Argument(None, hidden=True),
                 as_json: bool = typer.Option(False, "--json")):
  """Check the rule against golden rule steps of the reference implementation.

  Prints, per output key, the max absolute and relative error and the bound;
  exits 1 if any key is out of bounds. Consecutive files of one sequence carry
  the meta-state computed here from step to step.
  """
  from disco_eval.rules import verify, weights
  rule = weights.resolve_rule(name)
  if rule.manifest.kind != "disco" or rule.params is None:
    raise UserError(f"rule '{name}' is not a Disco103-architecture checkpoint; "
                    "golden files check the discovered rule")
  results, ok_all = [], True
  for path, checks in verify.check_files(rule.params, list(golden) + list(more or [])):
    ok = all(c.ok for c in checks)
    ok_all &= ok
    results.append({"file": str(path), "ok": ok,
                    "checks": [c.__dict__ for c in checks]})
    if not as_json:
      t = Table(title=f"{path.name}: {'PASS' if ok else 'FAIL'}")
      t.add_column("key", no_wrap=True)
      for c in ("max abs err", "max rel err", "bound"):
        t.add_column(c, justify="right", no_wrap=True)
      t.add_column("bound rule")
      t.add_column("")
      for c in checks:
        t.add_row(c.key, f"{c.max_abs_err:.3g}", f"{c.max_rel_err:.3g}",
                  f"{c.bound:.3g}", c.bound_text,
                  "[green]ok[/]" if c.ok else "[red]OUT OF BOUNDS[/]")
      out.print(t)
  if as_json:
    _print_json({"rule": rule.label, "sha256": rule.sha256, "ok": ok_all,
                 "files": results})
  else:
    n = len(results)
    out.print(f"{rule.label} (sha256 {rule.sha256}): "
              + (f"[green]all {n} file(s) within bounds[/]" if ok_all
                 else "[red]some keys out of bounds[/]"))
  if not ok_all:
    raise typer.Exit(1)


# ---------------------------------------------------------------------------
# suites


@suites_app.command("list")
def suites_list(as_json: bool = typer.Option(False, "--json")):
  """List the known suites."""
  from disco_eval import suites
  ss = suites.list_suites()
  rows = [{"name": s.name, "backend": s.backend, "tasks": list(s.tasks),
           "default_protocol": s.default_protocol,
           "protocols": sorted(s.protocols), "description": s.description}
          for s in ss]
  if as_json:
    return _print_json(rows)
  t = Table(title="Suites")
  for c in ("name", "backend", "tasks", "protocols", "description"):
    t.add_column(c)
  for r in rows:
    t.add_row(r["name"], r["backend"], str(len(r["tasks"])),
              ", ".join(p + (" (default)" if p == r["default_protocol"] else "")
                        for p in r["protocols"]), r["description"])
  out.print(t)


@suites_app.command("show")
def suites_show(name: str, protocol: Optional[str] = typer.Option(None),
                as_json: bool = typer.Option(False, "--json")):
  """Print a suite's tasks and a protocol in full."""
  from disco_eval import suites
  s = suites.load_suite(name)
  p = s.protocol(protocol)
  info = {"name": s.name, "description": s.description, "backend": s.backend,
          "tasks": list(s.tasks), "protocol": p.name,
          "protocol_description": p.description, "settings": p.settings,
          "normalization": {t: s.normalization_for(t, p.name) for t in s.tasks},
          "published": s.raw.get("published", [])}
  if as_json:
    return _print_json(info)
  t = Table(title=f"Suite {s.name}, protocol {p.name}", show_header=False)
  t.add_row("description", s.description)
  t.add_row("backend", s.backend)
  t.add_row("tasks", ", ".join(s.tasks))
  t.add_row("protocol", f"{p.name}: {p.description}")
  for k, v in p.settings.items():
    if k != "normalization":
      t.add_row(f"  {k}", str(v))
  for task, n in info["normalization"].items():
    if n is not None:
      t.add_row(f"normalisation {task}", f"(score - {n['min']}) / ({n['max']} - {n['min']})")
  published = [e for e in info["published"] if e.get("protocol") == p.name]
  if published:
    t.add_row("published rows", f"{len(published)} (shown by `disco-eval compare`, marked published)")
  out.print(t)


# ---------------------------------------------------------------------------
# run


def _parse_set(items: list[str]) -> tuple[tuple[str, str], ...]:
  pairs = []
  for item in items:
    if "=" not in item:
      raise UserError(f"--set expects KEY=VALUE (e.g. optimizer.learning_rate=1e-3), got '{item}'")
    k, v = item.split("=", 1)
    k = k.strip()
    # Accept "RULE.table.key" only as "table.key" for now: one override set for all rules.
    pairs.append((k, v.strip()))
  return tuple(pairs)


_LAUNCH = "Launchers (local, ray, slurm)"


@app.command("run")
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
  from disco_eval import experiment, launch
  options = launch.LaunchOptions(
      launcher=launcher, seeds_per_unit=seeds_per_unit, retries=retries,
      gpus_per_unit=gpus_per_unit, cpus_per_unit=cpus_per_unit, ray_address=ray_address,
      devices=devices or 1,
      slurm=launch.SlurmOptions(profile=slurm_profile, partition=slurm_partition,
                                account=slurm_account, time_min=slurm_time,
                                mem_gb=slurm_mem_gb, array_parallelism=slurm_array_parallelism))
  overrides = _parse_set(set_)
  if devices is not None:
    overrides += (("train.devices", str(devices)),)
  spec = experiment.SweepSpec(
      suite=suite, rules=tuple(rule), seeds=tuple(range(seed_start, seed_start + seeds)),
      tasks=_split_csv(tasks), steps=steps, protocol=protocol, out=out_dir,
      overrides=overrides, checkpoint_every=max(1, checkpoint_every))
  console = err if as_json else out
  with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                TimeRemainingColumn(), console=console, transient=False) as progress:
    lines: dict[tuple, int] = {}
    overall = None
    done: dict[tuple, int] = {}

    def on_progress(p):
      nonlocal overall
      if p.kind == "plan":
        overall = progress.add_task(f"all ({p.message})", total=p.total_steps, info="")
        return
      if p.kind in ("skip", "resume", "failed", "busy", "retry"):
        note = {"skip": "[dim]skip[/] {r}/{t} seed {s}: already complete",
                "resume": "{m}", "failed": "[red]failed[/] {r}/{t} seeds {s}: {m}",
                "busy": "[yellow]busy[/] {r}/{t} seed {s}: {m}",
                "retry": "[yellow]{m}[/]"}[p.kind]
        progress.console.print(note.format(r=p.rule, t=p.task, m=p.message,
                                           s=",".join(map(str, p.seeds))))
      for seed in p.seeds:
        key = (p.rule, p.task, seed)
        if p.kind in ("failed", "busy", "retry"):
          continue
        if key not in lines:
          lines[key] = progress.add_task(f"{p.rule} / {p.task} / seed {seed}",
                                         total=p.total_steps, info="")
        if p.kind == "chunk":
          ret = p.latest_returns.get(seed, float("nan"))
          info = f"{p.steps_per_s / max(1, len(p.seeds)):,.0f} steps/s  return {ret:+.3f}"
          progress.update(lines[key], completed=p.env_steps, info=info)
        else:
          progress.update(lines[key], completed=p.env_steps)
        if overall is not None:
          progress.advance(overall, p.env_steps - done.get(key, 0))
          done[key] = p.env_steps

    results = launch.run(spec, options, on_progress)
  rows = [{"rule": r.rule, "task": r.task, "seed": r.seed, "status": r.status,
           "path": str(r.path), "score": (r.summary or {}).get("score"),
           "normalized_score": (r.summary or {}).get("normalized_score"),
           "error": r.error} for r in results]
  if as_json:
    _print_json(rows)
  else:
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
  if any(r.status == "failed" for r in results):
    raise typer.Exit(1)


@app.command("bench")
def bench(suite: str = typer.Argument("catch", help="A suite: catch, sokoban (pure JAX), "
                                      "procgen, crafter, nethack (host-stepped)."),
          rule: str = typer.Option("disco103", "--rule", "-r", help="Rule name or PATH.npz."),
          seeds: int = typer.Option(4, help="Seeds for the 1-vs-N scaling measurement."),
          task: Optional[str] = typer.Option(None, help="Task (default: the suite's first)."),
          protocol: Optional[str] = typer.Option(None),
          chunk: int = typer.Option(4, help="Iterations per timed chunk (pure-JAX suites)."),
          repeats: int = typer.Option(3, help="Timed repetitions (median reported); host "
                                      "suites: timed iterations per measurement."),
          set_: list[str] = typer.Option([], "--set", help="Override a setting: table.key=value."),
          as_json: bool = typer.Option(False, "--json")):
  """Measure env-only and training throughput, the learner step's parts, and seed scaling."""
  from disco_eval import bench as bench_lib
  res = bench_lib.run_bench(suite, rule, seeds, protocol, task, _parse_set(set_), chunk, repeats)
  if as_json:
    return _print_json(res)
  t = Table(title=f"bench: {res['suite']}/{res['task']}, rule {res['rule']}, protocol "
                  f"{res['protocol']}", show_header=False)
  for name, value in bench_lib.report_rows(res):
    t.add_row(name, value)
  out.print(t)


from disco_eval import cli_data, cli_results  # noqa: E402 - they register on `app`

cli_results.register(app)
cli_data.register(app)


def main() -> None:
  """Console-script entry point: one-line errors, no tracebacks, for UserError."""
  try:
    app()
  except UserError as e:
    err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
    sys.exit(1)


if __name__ == "__main__":
  main()
