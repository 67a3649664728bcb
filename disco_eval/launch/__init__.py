"""Launchers: where the units of a sweep run.

* ``local``: one after another in this process (:func:`runs.run_sweep`).
* ``ray``: one Ray task per unit, on a local Ray instance or a cluster
  (:mod:`disco_eval.launch.ray_tasks`).
* ``slurm``: one element of a Slurm job array per unit, through submitit
  (:mod:`disco_eval.launch.slurm_jobs`).

Every launcher writes the same run records into the same results folder,
which every worker must reach; complete runs are skipped and interrupted ones
resume, whatever launcher started them; the per-run locks keep two launchers
from writing the same run (the second reports it "busy").

:data:`LAUNCHERS` maps a launcher's name to the function that runs a sweep
with it; a cluster launcher is a :data:`base.BackendFactory` handed to
:func:`driver.collect`. This package imports only downwards (base, driver,
and a cluster backend's module once that launcher is chosen).
"""

import dataclasses
import functools
import importlib
import os
from pathlib import Path
from typing import Callable

from disco_eval import runs
from disco_eval.errors import UserError
from disco_eval.launch import driver
from disco_eval.launch.base import (
  DEFAULT_RETRIES,
  FORWARDED_ENV,
  BackendFactory,
  LaunchOptions,
  SlurmOptions,
)
from disco_eval.rules import weights
from disco_eval.runs import Progress, RunResult, SweepSpec

__all__ = [
  "DEFAULT_RETRIES",
  "FORWARDED_ENV",
  "LAUNCHERS",
  "LaunchOptions",
  "SlurmOptions",
  "for_workers",
  "require",
  "run",
]

# (sweep, options, progress callback) -> one result per run.
Launcher = Callable[[SweepSpec, LaunchOptions, Callable[[Progress], None]], list[RunResult]]


def require(module: str, launcher: str):
  """`module` imported, or a UserError naming the extra that installs it."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise UserError(
      f"--launcher {launcher} needs the '{module}' package: pip install 'disco-eval[{launcher}]'"
    ) from None


def for_workers(spec: SweepSpec) -> SweepSpec:
  """`spec` with absolute paths (results folder, rule files), as workers that
  start elsewhere need them. Symbolic links are kept (a shared file system
  may be mounted through one)."""
  rules = tuple(weights.absolute_spec(r) for r in spec.rules)
  return dataclasses.replace(
    spec, out=Path(os.path.abspath(os.path.expanduser(spec.out))), rules=rules
  )


def _ray_backend() -> BackendFactory:
  """The Ray backend, or a UserError if Ray is not installed."""
  require("ray", "ray")
  from disco_eval.launch import ray_tasks  # here: ray is an optional extra

  return ray_tasks.RayBackend


def _slurm_backend() -> BackendFactory:
  """The Slurm backend, or a UserError if submitit is not installed."""
  require("submitit", "slurm")
  from disco_eval.launch import slurm_jobs  # here: submitit is an optional extra

  return slurm_jobs.SlurmBackend


def _run_local(
  spec: SweepSpec, options: LaunchOptions, on_progress: Callable[[Progress], None]
) -> list[RunResult]:
  """The units one after another in this process."""
  return runs.run_sweep(spec, on_progress, options.seeds_per_unit)


def _run_on_cluster(
  load: Callable[[], BackendFactory],
  spec: SweepSpec,
  options: LaunchOptions,
  on_progress: Callable[[Progress], None],
) -> list[RunResult]:
  """The units on the backend that `load` returns, retried by the driver."""
  make = load()
  spec = for_workers(spec)
  plan = runs.plan_sweep(spec, options.seeds_per_unit)
  retries = DEFAULT_RETRIES if options.retries is None else options.retries
  with make(spec, options, on_progress) as backend:
    on_progress(plan.announce)
    return driver.collect(spec, plan.units, backend, retries, on_progress)


# Launcher name (base.LAUNCHER_NAMES) -> how a sweep runs with it.
LAUNCHERS: dict[str, Launcher] = {
  "local": _run_local,
  "ray": functools.partial(_run_on_cluster, _ray_backend),
  "slurm": functools.partial(_run_on_cluster, _slurm_backend),
}


def run(
  spec: SweepSpec,
  options: LaunchOptions = LaunchOptions(),
  on_progress: Callable[[Progress], None] = lambda p: None,
) -> list[RunResult]:
  """Runs the sweep with the launcher of `options`; one result per run."""
  options.check()
  return LAUNCHERS[options.launcher](spec, options, on_progress)
