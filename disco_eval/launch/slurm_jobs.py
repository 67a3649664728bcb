"""The Slurm launcher: the units as a job array, through submitit.

Executor settings come from ``--slurm-profile FILE`` (TOML, keys below) and
flags, flags winning. Each job runs one unit; it is checkpointable, so that
when Slurm preempts it or its time limit comes, submitit requeues it and the
requeued job resumes the runs from their checkpoints. Logs and submitit's
files go to ``OUT/.slurm/JOBID/``. The driver watches the jobs and, as they
write them, the runs' records (status.json, metrics.csv) for the progress
display; Ctrl-C leaves the jobs running and says how to follow them.

Profile keys::

  partition = "gpu"          account = "my-lab"        qos = "normal"
  constraint = "a100"        time_min = 720            mem_gb = 64
  gpus_per_node = 1          cpus_per_task = 8         array_parallelism = 32
  setup = ["module load cuda", "source ~/venv/bin/activate"]  # run before each job
  [sbatch]                   # any other #SBATCH option, e.g. exclude = "node7"
"""

import os
import shutil
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import Callable

import submitit

from disco_eval import store
from disco_eval.errors import UserError
from disco_eval.launch import base, driver
from disco_eval.runs import Progress, SweepSpec, stop

DEFAULT_TIME_MIN = 24 * 60
# A run longer than the time limit is requeued up to this many times.
MAX_TIMEOUTS = 50
# Profile key -> submitit parameter (AutoExecutor names) and type.
PROFILE_KEYS = {
  "partition": ("slurm_partition", str),
  "account": ("slurm_account", str),
  "qos": ("slurm_qos", str),
  "constraint": ("slurm_constraint", str),
  "time_min": ("timeout_min", int),
  "mem_gb": ("mem_gb", int),
  "gpus_per_node": ("gpus_per_node", int),
  "cpus_per_task": ("cpus_per_task", int),
  "array_parallelism": ("slurm_array_parallelism", int),
  "setup": ("slurm_setup", list),
  "sbatch": ("slurm_additional_parameters", dict),
}


def read_profile(path: Path) -> dict:
  """The settings of a profile file, checked against PROFILE_KEYS."""
  try:
    profile = tomllib.loads(Path(path).expanduser().read_text(encoding="utf-8"))
  except FileNotFoundError:
    raise UserError(f"Slurm profile not found: {path}") from None
  except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
    raise UserError(f"Slurm profile {path} is unreadable ({e}); fix the file") from None
  for key, value in profile.items():
    if key not in PROFILE_KEYS:
      raise UserError(
        f"Slurm profile {path}: unknown key '{key}'; known keys: " + ", ".join(PROFILE_KEYS)
      )
    kind = PROFILE_KEYS[key][1]
    if not isinstance(value, kind) or isinstance(value, bool):
      raise UserError(f"Slurm profile {path}: '{key}' must be {kind.__name__}, got {value!r}")
  if not all(isinstance(line, str) for line in profile.get("setup", [])):
    raise UserError(f"Slurm profile {path}: 'setup' must be a list of shell lines")
  return profile


def executor_parameters(options: base.LaunchOptions) -> dict:
  """submitit parameters: the profile's, then the flags' (LaunchOptions)."""
  slurm = options.slurm
  settings = read_profile(slurm.profile) if slurm.profile is not None else {}
  flags = {
    "partition": slurm.partition,
    "account": slurm.account,
    "time_min": slurm.time_min,
    "mem_gb": slurm.mem_gb,
    "array_parallelism": slurm.array_parallelism,
    "cpus_per_task": options.cpus_per_unit,
  }
  if options.gpus_per_unit is not None:
    if options.gpus_per_unit != int(options.gpus_per_unit):
      raise UserError(
        f"--gpus-per-unit must be a whole number with Slurm, got {options.gpus_per_unit}"
      )
    flags["gpus_per_node"] = int(options.gpus_per_unit)
  settings.update({k: v for k, v in flags.items() if v is not None})
  settings.setdefault("time_min", DEFAULT_TIME_MIN)
  if options.devices > 1:
    gpus = settings.setdefault("gpus_per_node", options.devices)
    if gpus < options.devices:
      raise UserError(
        f"--devices {options.devices} needs {options.devices} GPUs per job but the "
        f"Slurm settings give {gpus}; raise gpus_per_node / --gpus-per-unit"
      )
  for key in ("time_min", "mem_gb", "gpus_per_node", "cpus_per_task", "array_parallelism"):
    if key in settings and settings[key] < (0 if key == "gpus_per_node" else 1):
      raise UserError(f"Slurm setting {key} must be positive, got {settings[key]}")
  return {PROFILE_KEYS[k][0]: v for k, v in settings.items()}


def _preempt_signal() -> int:
  """The signal with which Slurm warns a job of its end: submitit's choice
  (``SUBMITIT_PREEMPT_SIGNAL``, SIGUSR2 by default)."""
  name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG")
  try:
    return signal.Signals["SIG" + name]
  except KeyError:
    return signal.SIGUSR2


class UnitJob:
  """The callable of one job: runs a unit. Checkpointable: on preemption or
  timeout submitit calls `checkpoint` and requeues the job, which then
  resumes the runs from their checkpoints. Slurm's warning signal first
  stops the unit at a safe point (see runs.stop), then submitit's handler
  requeues the job."""

  def __init__(self, spec, unit):
    self.spec, self.unit = spec, unit

  def _work(self) -> base.Outcome:
    """The unit's outcome; Slurm's warning signal stops it at a safe point
    (checkpointed, recorded interrupted), then submitit's handler requeues
    the job, as it would have at once (also when the signal came as the
    unit ended: the requeued job then finds its runs complete)."""
    sig = _preempt_signal()
    requeue = signal.getsignal(sig)  # submitit's: checkpoint, requeue, exit
    with stop.handling((sig,)):
      try:
        outcome = driver.work(self.spec, self.unit, lambda event: None)
      except stop.Interrupted as e:
        if not callable(requeue):
          raise
        requeue(e.signum, None)
        raise
      signum = stop.requested()
      if signum is not None and callable(requeue):
        requeue(signum, None)
      return outcome

  def __call__(self) -> base.Outcome:
    try:
      return self._work()
    except SystemExit as e:
      # submitit ends a preempted or timed-out job so, once it is requeued (the
      # records are consistent and the lock released by now). Leave without
      # Python's shutdown: after unwinding out of an XLA compilation it can
      # crash, and the local executor requeues only on its own exit code.
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(e.code if isinstance(e.code, int) else 1)

  def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
    return submitit.helpers.DelayedSubmission(UnitJob(self.spec, self.unit))


class SlurmBackend:
  """Units as Slurm jobs (see the module docstring)."""

  def __init__(
    self, spec: SweepSpec, options: base.LaunchOptions, on_progress: Callable[[Progress], None]
  ):
    self.spec, self.on_progress = spec, on_progress
    self.poll_s = options.slurm.poll_s
    cluster = options.slurm.cluster
    params = executor_parameters(options)
    if cluster == "slurm" and shutil.which("sbatch") is None:
      raise UserError(
        "--launcher slurm needs Slurm's sbatch, which is not on this "
        "machine's PATH; run the command on a login node of the cluster"
      )
    self.folder = Path(spec.out) / ".slurm"
    self.executor = submitit.AutoExecutor(
      folder=self.folder / "%j", cluster=cluster, **{f"{cluster}_max_num_timeout": MAX_TIMEOUTS}
    )
    self.executor.update_parameters(name=f"disco-eval-{spec.suite}", **params)
    self.jobs: dict[int, tuple[submitit.Job, object]] = {}  # key -> (job, unit)
    self.seen: dict[tuple, tuple[int, float]] = {}  # run -> (env_steps, time)

  def __enter__(self):
    return self

  def __exit__(self, *exc) -> None:
    pass  # the jobs are Slurm's: they outlive the driver

  def submit(self, units) -> None:
    try:
      with self.executor.batch():
        jobs = [self.executor.submit(UnitJob(self.spec, unit)) for _, unit in units]
    except Exception as e:  # noqa: BLE001 - sbatch's refusal, as one line
      raise UserError(
        f"Slurm refused the jobs ({base.one_line(e)}); check the partition, "
        "account, time limit and GPUs (--slurm-profile and the --slurm-* "
        "flags)"
      ) from None
    for (key, unit), job in zip(units, jobs):
      self.jobs[key] = (job, unit)

  def wait(self) -> list[tuple[int, base.Outcome]]:
    time.sleep(self.poll_s)
    ended = []
    for key, (job, unit) in list(self.jobs.items()):
      if not job.done():
        self._watch(unit)
        continue
      del self.jobs[key]
      try:
        outcome = job.result()
      except Exception as e:  # noqa: BLE001 - the job failed, was cancelled or lost
        outcome = base.Outcome(crash=f"job {job.job_id}: {base.one_line(e)}")
      for result in outcome.results or ():
        self._announce(result)
      ended.append((key, outcome))
    return ended

  def _announce(self, result) -> None:
    """The display event of a run a job ended (the jobs' own events stay on
    their nodes)."""
    kind = {"complete": "done", "skipped": "skip"}.get(result.status, result.status)
    steps = 0 if kind in ("failed", "busy") else (result.summary or {}).get("env_steps", 0)
    self.on_progress(
      Progress(
        kind, result.rule, result.task, (result.seed,), steps, steps, message=result.error or ""
      )
    )

  def _watch(self, unit) -> None:
    """Progress events of a unit's runs, read from their records."""
    for seed in unit.seeds:
      record = store.RunRecord(
        store.run_dir(self.spec.out, self.spec.suite, unit.task, unit.label, seed)
      )
      try:
        status = record.status
        if status is None or status["status"] != "running":
          continue
        steps = int(status.get("env_steps", 0))
        before, then = self.seen.get((unit.label, unit.task, seed), (None, 0.0))
        if steps == before:
          continue
        rows = [r for r in record.read_metrics() if r["env_steps"] > (before or 0)]
      except (UserError, OSError, ValueError, TypeError, KeyError):
        continue  # being written or unreadable: look again later
      now = time.time()
      self.seen[(unit.label, unit.task, seed)] = (steps, now)
      episodes = sum(r.get("episodes") or 0 for r in rows)
      returns = sum(
        (r.get("avg_return") or 0.0) * (r.get("episodes") or 0) for r in rows if r.get("episodes")
      )
      latest = returns / episodes if episodes else float("nan")
      rate = (steps - before) / (now - then) if before is not None else 0.0
      self.on_progress(
        Progress(
          "chunk",
          unit.label,
          unit.task,
          (seed,),
          steps,
          unit.env_steps,
          steps_per_s=rate,
          latest_return=latest,
          latest_returns={seed: latest},
        )
      )

  def cancel(self) -> None:
    for job, _ in self.jobs.values():
      job.cancel(check=False)
    self.jobs.clear()

  def interrupted(self) -> str:
    ids = sorted({str(job.job_id).split("_")[0] for job, _ in self.jobs.values()})
    return (
      f"stopped waiting; {len(self.jobs)} Slurm job(s) keep running (job "
      f"{', '.join(ids)}): follow them with `squeue --me`, stop them with "
      f"`scancel {' '.join(ids)}`, and run the same command again to collect the "
      f"table (complete runs are skipped; logs in {self.folder})"
    )
