"""Launchers: the same sweep on a local Ray instance and through the Slurm code
path (submitit's local executor) gives the local launcher's records."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from disco_eval import launch, store
from disco_eval.analysis import compare
from disco_eval.errors import UserError
from disco_eval.launch import base, driver
from disco_eval.runs import RunResult, SweepSpec, Unit, plan_sweep

TINY = (
  ("train.min_buffer", "4"),
  ("train.sample_entries", "4"),
  ("train.chunk", "8"),
  ("agent.torso_hidden", "[32]"),
)


def spec(out: Path, seeds=(0, 1, 2, 3)) -> SweepSpec:
  return SweepSpec(
    suite="catch", rules=("actor_critic",), seeds=tuple(seeds), steps=300, out=out, overrides=TINY
  )


def runs(out: Path) -> dict[int, Path]:
  return {int(p.name[4:]): p for p in sorted(out.glob("catch/catch/actor_critic/seed*"))}


def same_records(a: Path, b: Path) -> None:
  """Two run folders hold the same run (timings and timestamps aside)."""
  assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()
  sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
  sa.pop("train_wall_s"), sb.pop("train_wall_s")
  assert sa == sb
  ca, cb = (json.loads((p / "config.json").read_text()) for p in (a, b))
  ca.pop("created"), cb.pop("created")
  # Where it ran (backend, environment variables) and which command and commit made it are
  # recorded but not part of the run (store.config_match.VOLATILE_CONFIG_KEYS).
  for key in ("runtime", "provenance"):
    ca.pop(key, None), cb.pop(key, None)
  assert ca == cb
  assert json.loads((b / "status.json").read_text())["status"] == "complete"


def table(out: Path) -> list[dict]:
  groups = compare.compare(out, reps=200).to_json()["groups"]
  return [{k: g[k] for k in ("per_task", "aggregate", "matrices", "seeds")} for g in groups]


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory) -> Path:
  """The reference: 4 tiny Catch runs with the local launcher (seeds in one unit)."""
  out = tmp_path_factory.mktemp("local")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("DISCO_EVAL_HOME", str(out.parent / "home-local"))
    results = launch.run(spec(out))
  assert [r.status for r in results] == ["complete"] * 4
  return out


# --- options, profiles and the retry loop (no cluster) ------------------------


def test_flags_that_do_not_fit_the_launcher_are_refused():
  with pytest.raises(UserError, match="--ray-address applies to --launcher ray only"):
    launch.LaunchOptions(ray_address="auto").check()
  with pytest.raises(UserError, match="--retries applies to --launcher ray or slurm"):
    launch.LaunchOptions(retries=3).check()
  with pytest.raises(UserError, match="--slurm-partition applies to --launcher slurm"):
    launch.LaunchOptions("ray", slurm=launch.SlurmOptions(partition="gpu")).check()
  with pytest.raises(UserError, match="unknown launcher 'kube'; use one of local, ray, slurm"):
    launch.LaunchOptions("kube").check()
  with pytest.raises(UserError, match="--seeds-per-unit must be 0"):
    plan_sweep(spec(Path("unused")), seeds_per_unit=-1)


def test_every_launcher_name_maps_to_how_it_runs():
  assert tuple(launch.LAUNCHERS) == base.LAUNCHER_NAMES


def test_a_missing_cluster_package_names_the_extra(monkeypatch, tmp_path):
  # None in sys.modules makes `import NAME` fail as if it were not installed.
  monkeypatch.setitem(sys.modules, "ray", None)
  monkeypatch.setitem(sys.modules, "submitit", None)
  with pytest.raises(UserError, match=r"pip install 'disco-eval\[ray\]'"):
    launch.run(spec(tmp_path / "r"), launch.LaunchOptions("ray"))
  with pytest.raises(UserError, match=r"pip install 'disco-eval\[slurm\]'"):
    launch.run(spec(tmp_path / "r"), launch.LaunchOptions("slurm"))
  assert not (tmp_path / "r").exists()


def test_slurm_profile_then_flags(tmp_path):
  from disco_eval.launch import slurm_jobs

  profile = tmp_path / "gpu.toml"
  profile.write_text(
    'partition = "gpu"\naccount = "lab"\ntime_min = 120\ngpus_per_node = 1\n'
    'setup = ["module load cuda"]\n[sbatch]\nexclude = "node7"\n'
  )
  options = launch.LaunchOptions(
    "slurm", gpus_per_unit=2, slurm=launch.SlurmOptions(profile=profile, partition="short")
  )
  params = slurm_jobs.executor_parameters(options)
  assert params == {
    "slurm_partition": "short",
    "slurm_account": "lab",
    "timeout_min": 120,
    "gpus_per_node": 2,
    "slurm_setup": ["module load cuda"],
    "slurm_additional_parameters": {"exclude": "node7"},
  }
  params = slurm_jobs.executor_parameters(launch.LaunchOptions("slurm"))
  assert params == {"timeout_min": slurm_jobs.DEFAULT_TIME_MIN}
  profile.write_text('partiton = "gpu"\n')
  with pytest.raises(UserError, match="unknown key 'partiton'; known keys: partition"):
    slurm_jobs.executor_parameters(options)
  profile.write_text('time_min = "2h"\n')
  with pytest.raises(UserError, match="'time_min' must be int"):
    slurm_jobs.executor_parameters(options)
  with pytest.raises(UserError, match="whole number"):
    slurm_jobs.executor_parameters(launch.LaunchOptions("slurm", gpus_per_unit=0.5))
  # A data-parallel run asks for its devices' GPUs, and refuses fewer.
  assert (
    slurm_jobs.executor_parameters(launch.LaunchOptions("slurm", devices=2))["gpus_per_node"] == 2
  )
  with pytest.raises(UserError, match="--devices 2 needs 2 GPUs per job"):
    slurm_jobs.executor_parameters(launch.LaunchOptions("slurm", gpus_per_unit=1, devices=2))


class ScriptedBackend:
  """A backend whose units end as scripted: per key, one outcome per submission."""

  def __init__(self, script):
    self.script = script
    self.submitted: list[tuple[int, Unit]] = []
    self.queue: list[int] = []

  def submit(self, units):
    self.submitted += units
    self.queue += [key for key, _ in units]

  def wait(self):
    ended = [(key, self.script[key].pop(0)) for key in self.queue]
    self.queue = []
    return ended

  def cancel(self):
    self.queue = []

  def interrupted(self):
    return None


def test_retries_are_bounded_and_a_dead_unit_is_recorded_failed(tmp_path):
  sweep = spec(tmp_path, seeds=(0, 1, 2))
  a = Unit(0, "actor_critic", "catch", (0, 1))
  b = Unit(0, "actor_critic", "catch", (2,))
  path = lambda seed: store.run_dir(tmp_path, "catch", "catch", "actor_critic", seed)
  result = lambda seed, status: RunResult(
    "actor_critic", "catch", seed, status, path(seed), error="boom" if status == "failed" else None
  )
  # Seed 2's worker died mid-run: its record says "running".
  record = store.RunRecord.open(tmp_path, "catch", "catch", "actor_critic", 2, {"seed": 2})
  with record.lock():
    record.mark_running(100)
  backend = ScriptedBackend(
    {
      # a: seed 1 failed, then it is retried alone and completes
      0: [
        base.Outcome(results=[result(0, "complete"), result(1, "failed")]),
        base.Outcome(results=[result(1, "complete")]),
      ],
      # b: the worker dies every time
      1: [base.Outcome(crash="WorkerCrashedError: node lost")] * 3,
    }
  )
  events = []
  results = driver.collect(sweep, [a, b], backend, 2, events.append)
  assert [(r.seed, r.status) for r in results] == [(0, "complete"), (1, "complete"), (2, "failed")]
  assert [u for _, u in backend.submitted] == [a, b, Unit(0, "actor_critic", "catch", (1,)), b, b]
  assert [(e.kind, e.seeds) for e in events] == [
    ("retry", (1,)),
    ("retry", (2,)),
    ("retry", (2,)),
    ("failed", (2,)),
  ]
  assert (
    "retry 2/2 of actor_critic/catch seeds 2 (WorkerCrashedError: node lost)" in events[2].message
  )
  status = json.loads((path(2) / "status.json").read_text())
  assert status["status"] == "failed" and status["error"] == "WorkerCrashedError: node lost"
  assert results[2].error == "WorkerCrashedError: node lost"


def test_a_user_error_in_a_worker_stops_the_sweep(tmp_path):
  unit = Unit(0, "actor_critic", "catch", (0,))
  backend = ScriptedBackend(
    {0: [base.Outcome(user_error="run x was recorded with a different config")]}
  )
  with pytest.raises(UserError, match="different config"):
    driver.collect(spec(tmp_path), [unit], backend, 2, lambda e: None)


def test_ctrl_c_while_jobs_run_elsewhere_says_how_to_follow_them(tmp_path):
  class Interrupted(ScriptedBackend):
    def wait(self):
      raise KeyboardInterrupt

    def interrupted(self):
      return "stopped waiting; 1 Slurm job(s) keep running"

  with pytest.raises(UserError, match="keep running"):
    driver.collect(
      spec(tmp_path), [Unit(0, "actor_critic", "catch", (0,))], Interrupted({}), 2, lambda e: None
    )
  # Units that stop with the driver: their started runs are marked interrupted, and said so.
  with pytest.raises(driver.ClusterInterrupted, match="marked interrupted; rerun"):
    driver.collect(
      spec(tmp_path),
      [Unit(0, "actor_critic", "catch", (0,))],
      type("Stops", (Interrupted,), {"interrupted": lambda self: None})({}),
      2,
      lambda e: None,
    )


def test_cli_gives_one_line_for_a_flag_of_another_launcher(disco_home, tmp_path):
  def cli(*args):
    res = subprocess.run(
      [
        sys.executable,
        "-m",
        "disco_eval.cli",
        "run",
        "catch",
        "--rule",
        "actor_critic",
        "--out",
        str(tmp_path / "out"),
        *args,
      ],
      capture_output=True,
      text=True,
      timeout=300,
      env=dict(os.environ, DISCO_EVAL_HOME=str(disco_home)),
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    return lines[0]

  assert "--retries applies to --launcher ray or slurm only" in cli("--retries", "1")
  if shutil.which("sbatch") is None:
    assert "needs Slurm's sbatch" in cli("--launcher", "slurm")
  assert not (tmp_path / "out").exists()


# --- a local Ray instance -----------------------------------------------------


@pytest.fixture(scope="module")
def ray_instance():
  """A 2-CPU Ray instance whose files stay in a temporary folder: HOME and
  Ray's temp folder point there, and tokens are off."""
  ray = pytest.importorskip("ray")
  real_home = Path.home()
  before = sorted(p.name for p in real_home.iterdir())
  # Short: Ray's socket paths must stay under 108 characters.
  scratch = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("HOME", str(scratch / "home"))
    mp.setenv("RAY_AUTH_MODE", "disabled")
    mp.setenv("RAY_TMPDIR", str(scratch))
    (scratch / "home").mkdir()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(scratch / "t"))
    try:
      yield ray
    finally:
      ray.shutdown()
  shutil.rmtree(scratch, ignore_errors=True)
  assert sorted(p.name for p in real_home.iterdir()) == before, "Ray wrote into HOME"


@pytest.mark.slow
def test_ray_sweep_gives_the_local_records_and_table(ray_instance, local_runs, tmp_path):
  out = tmp_path / "ray"
  events = []
  # Two units of two seeds, side by side on the two CPUs.
  results = launch.run(spec(out), launch.LaunchOptions("ray", seeds_per_unit=2), events.append)
  assert [(r.seed, r.status) for r in results] == [(s, "complete") for s in range(4)]
  # The workers' progress reached the driver.
  assert {e.seeds for e in events if e.kind == "chunk"} == {(0, 1), (2, 3)}
  assert {e.seeds for e in events if e.kind == "done"} == {(0, 1), (2, 3)}
  local, remote = runs(local_runs), runs(out)
  assert local.keys() == remote.keys() == {0, 1, 2, 3}
  for seed in local:
    same_records(local[seed], remote[seed])
  assert table(out) == table(local_runs)
  # On the local launcher's folder, Ray skips what is complete.
  again = launch.run(spec(local_runs), launch.LaunchOptions("ray", seeds_per_unit=1))
  assert [(r.seed, r.status) for r in again] == [(s, "skipped") for s in range(4)]


@pytest.mark.slow
def test_ray_unit_that_crashes_is_retried_then_reported(ray_instance, tmp_path):
  # A unit naming a rule the spec does not have raises in the worker.
  from disco_eval.launch.ray_tasks import RayBackend

  sweep = launch.for_workers(spec(tmp_path / "crash"))
  unit = Unit(5, "actor_critic", "catch", (7,))
  events = []
  options = launch.LaunchOptions("ray")
  with RayBackend(sweep, options, events.append) as backend:
    results = driver.collect(sweep, [unit], backend, 1, events.append)
  assert [(r.seed, r.status) for r in results] == [(7, "failed")]
  assert "IndexError" in results[0].error
  assert [e.kind for e in events] == ["retry", "failed"]
  assert ray_instance.is_initialized()  # a Ray it did not start is left running


# --- Slurm, through submitit's local executor ---------------------------------


@pytest.mark.slow
def test_slurm_path_runs_units_leaves_busy_runs_alone_and_requeues(local_runs, tmp_path):
  pytest.importorskip("submitit")
  from disco_eval.launch.slurm_jobs import SlurmBackend

  out = tmp_path / "slurm"
  options = launch.LaunchOptions(
    "slurm", seeds_per_unit=1, slurm=launch.SlurmOptions(cluster="local", poll_s=0.5, time_min=10)
  )
  sweep = spec(out, seeds=(0, 1))
  # Another process writes seed 1 (this one holds its lock): it must be left alone.
  config = json.loads((runs(local_runs)[1] / "config.json").read_text())
  busy = store.RunRecord.open(out, "catch", "catch", "actor_critic", 1, config)
  events = []
  with busy.lock():
    results = launch.run(sweep, options, events.append)
    assert [(r.seed, r.status) for r in results] == [(0, "complete"), (1, "busy")]
    assert "being written by another process" in results[1].error
    assert not (busy.path / "metrics.csv").exists()
  assert ("busy", (1,)) in [(e.kind, e.seeds) for e in events]

  # Released: the same sweep skips seed 0 and runs seed 1, whose job is
  # preempted (SIGUSR2, as Slurm signals) as soon as it runs: submitit
  # requeues it and the requeued job finishes the run.
  sweep = launch.for_workers(sweep)
  preempted = []

  def preempt(event):
    if event.kind == "chunk" and event.seeds == (1,) and not preempted:
      pid = json.loads((busy.path / "status.json").read_text())["pid"]
      os.kill(pid, signal.SIGUSR2)
      preempted.append(pid)

  with SlurmBackend(sweep, options, preempt) as backend:
    results = driver.collect(sweep, plan_sweep(sweep, 1).units, backend, 0, preempt)
  assert preempted
  # (Seed 1 reads "skipped" in the unlikely case that the signal came after
  # the run was complete, before the job ended; its record is checked below.)
  assert [(r.seed, r.status) for r in results] in (
    [(0, "skipped"), (1, "complete")],
    [(0, "skipped"), (1, "skipped")],
  )
  logs = "".join(p.read_text() for p in (out / ".slurm").glob("*/*_log.*"))
  assert "Requeued job" in logs, "the preempted job was not requeued"
  local = runs(local_runs)
  for seed, path in runs(out).items():
    same_records(local[seed], path)
