"""Launchers: where the units of a sweep run.

* ``local``: one after another in this process (:func:`experiment.run_sweep`).
* ``ray``: one Ray task per unit, on a local Ray instance or a cluster
  (:mod:`disco_eval.launch.ray_tasks`).
* ``slurm``: one element of a Slurm job array per unit, through submitit
  (:mod:`disco_eval.launch.slurm_jobs`).

Every launcher writes the same run records into the same results folder,
which every worker must reach; complete runs are skipped and interrupted ones
resume, whatever launcher started them; the per-run locks keep two launchers
from writing the same run (the second reports it "busy").
"""

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Callable

from disco_eval import checkpoints, experiment
from disco_eval.errors import UserError
from disco_eval.experiment import Progress, RunResult, SweepSpec

LAUNCHERS = ("local", "ray", "slurm")
DEFAULT_RETRIES = 2
# Environment variables a worker needs to find what the driver uses.
FORWARDED_ENV = ("DISCO_EVAL_HOME", "DISCO_EVAL_MANIFESTS")


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
  """Slurm settings from flags; unset ones come from the profile file."""
  profile: Path | None = None
  partition: str | None = None
  account: str | None = None
  time_min: int | None = None
  mem_gb: int | None = None
  array_parallelism: int | None = None
  # submitit's executor: "slurm", or "local" (jobs as local processes; tests).
  cluster: str = "slurm"
  poll_s: float = 5.0             # seconds between looks at the jobs

  def given(self) -> list[str]:
    """The flags set (those that make sense only with --launcher slurm)."""
    flags = {"profile": "--slurm-profile", "partition": "--slurm-partition",
             "account": "--slurm-account", "time_min": "--slurm-time",
             "mem_gb": "--slurm-mem-gb", "array_parallelism": "--slurm-array-parallelism"}
    return [flag for name, flag in flags.items() if getattr(self, name) is not None]


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
  """How to run a sweep's units."""
  launcher: str = "local"
  seeds_per_unit: int = 0          # 0: all seeds of a (rule, task) in one unit
  retries: int | None = None       # ray/slurm: submissions after the first (default 2)
  gpus_per_unit: float | None = None
  cpus_per_unit: int | None = None
  ray_address: str | None = None
  devices: int = 1                 # --devices: GPUs a unit needs by default
  slurm: SlurmOptions = dataclasses.field(default_factory=SlurmOptions)

  def check(self) -> None:
    """UserError for a flag that does not fit the launcher."""
    if self.launcher not in LAUNCHERS:
      raise UserError(f"unknown launcher '{self.launcher}'; use one of {', '.join(LAUNCHERS)}")
    misplaced = []
    if self.launcher != "ray" and self.ray_address is not None:
      misplaced.append(("--ray-address", "--launcher ray"))
    if self.launcher != "slurm":
      misplaced += [(flag, "--launcher slurm") for flag in self.slurm.given()]
    if self.launcher == "local":
      for flag, value in (("--retries", self.retries), ("--gpus-per-unit", self.gpus_per_unit),
                          ("--cpus-per-unit", self.cpus_per_unit)):
        if value is not None:
          misplaced.append((flag, "--launcher ray or slurm"))
    if misplaced:
      flag, where = misplaced[0]
      raise UserError(f"{flag} applies to {where} only; add {where.split(' or ')[0]} "
                      f"or drop {flag}")
    if self.retries is not None and self.retries < 0:
      raise UserError(f"--retries must be 0 or more, got {self.retries}")
    if self.gpus_per_unit is not None and self.gpus_per_unit < 0:
      raise UserError(f"--gpus-per-unit must be 0 or more, got {self.gpus_per_unit}")
    if self.cpus_per_unit is not None and self.cpus_per_unit < 1:
      raise UserError(f"--cpus-per-unit must be 1 or more, got {self.cpus_per_unit}")


def require(module: str, launcher: str):
  """`module` imported, or a UserError naming the extra that installs it."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise UserError(f"--launcher {launcher} needs the '{module}' package: "
                    f"pip install 'disco-eval[{launcher}]'") from None


def for_workers(spec: SweepSpec) -> SweepSpec:
  """`spec` with absolute paths (results folder, rule files), as workers that
  start elsewhere need them. Symbolic links are kept (a shared file system
  may be mounted through one)."""
  rules = tuple(os.path.abspath(os.path.expanduser(r)) if checkpoints.looks_like_path(r)
                else r for r in spec.rules)
  return dataclasses.replace(spec, out=Path(os.path.abspath(os.path.expanduser(spec.out))),
                             rules=rules)


def run(spec: SweepSpec, options: LaunchOptions = LaunchOptions(),
        on_progress: Callable[[Progress], None] = lambda p: None) -> list[RunResult]:
  """Runs the sweep with the launcher of `options`; one result per run."""
  options.check()
  if options.launcher == "local":
    return experiment.run_sweep(spec, on_progress, options.seeds_per_unit)
  from disco_eval.launch import driver
  if options.launcher == "ray":
    require("ray", "ray")
    from disco_eval.launch.ray_tasks import RayBackend as make
  else:
    require("submitit", "slurm")
    from disco_eval.launch.slurm_jobs import SlurmBackend as make
  spec = for_workers(spec)
  plan = experiment.plan_sweep(spec, options.seeds_per_unit)
  retries = DEFAULT_RETRIES if options.retries is None else options.retries
  with make(spec, options, on_progress) as backend:
    on_progress(plan.announce)
    return driver.collect(spec, plan.units, backend, retries, on_progress)
