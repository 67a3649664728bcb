"""What every launcher shares: its options, the outcome of a unit and the
contract of a cluster backend.

A cluster backend (:class:`Backend`: Ray, Slurm) is made by a
:data:`BackendFactory` from the sweep, the :class:`LaunchOptions` and the
progress callback, is used as a context manager, and hands the units of
:func:`disco_eval.launch.driver.collect` to its workers. The registry that
maps a launcher name to how it runs is :data:`disco_eval.launch.LAUNCHERS`.
"""

import dataclasses
from pathlib import Path
from typing import Callable, ContextManager, Protocol

from disco_eval.errors import UserError
from disco_eval.runs import Progress, RunResult, SweepSpec, Unit

# The launchers' names; disco_eval.launch.LAUNCHERS maps each to how it runs.
LAUNCHER_NAMES = ("local", "ray", "slurm")
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
  poll_s: float = 5.0  # seconds between looks at the jobs

  def given(self) -> list[str]:
    """The flags set (those that make sense only with --launcher slurm)."""
    flags = {
      "profile": "--slurm-profile",
      "partition": "--slurm-partition",
      "account": "--slurm-account",
      "time_min": "--slurm-time",
      "mem_gb": "--slurm-mem-gb",
      "array_parallelism": "--slurm-array-parallelism",
    }
    return [flag for name, flag in flags.items() if getattr(self, name) is not None]


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
  """How to run a sweep's units."""

  launcher: str = "local"
  seeds_per_unit: int = 0  # 0: all seeds of a (rule, task) in one unit
  retries: int | None = None  # ray/slurm: submissions after the first (default 2)
  gpus_per_unit: float | None = None
  cpus_per_unit: int | None = None
  ray_address: str | None = None
  devices: int = 1  # --devices: GPUs a unit needs by default
  slurm: SlurmOptions = dataclasses.field(default_factory=SlurmOptions)

  def check(self) -> None:
    """UserError for a flag that does not fit the launcher."""
    if self.launcher not in LAUNCHER_NAMES:
      raise UserError(f"unknown launcher '{self.launcher}'; use one of {', '.join(LAUNCHER_NAMES)}")
    misplaced = []
    if self.launcher != "ray" and self.ray_address is not None:
      misplaced.append(("--ray-address", "--launcher ray"))
    if self.launcher != "slurm":
      misplaced += [(flag, "--launcher slurm") for flag in self.slurm.given()]
    if self.launcher == "local":
      for flag, value in (
        ("--retries", self.retries),
        ("--gpus-per-unit", self.gpus_per_unit),
        ("--cpus-per-unit", self.cpus_per_unit),
      ):
        if value is not None:
          misplaced.append((flag, "--launcher ray or slurm"))
    if misplaced:
      flag, where = misplaced[0]
      raise UserError(
        f"{flag} applies to {where} only; add {where.split(' or ')[0]} or drop {flag}"
      )
    if self.retries is not None and self.retries < 0:
      raise UserError(f"--retries must be 0 or more, got {self.retries}")
    if self.gpus_per_unit is not None and self.gpus_per_unit < 0:
      raise UserError(f"--gpus-per-unit must be 0 or more, got {self.gpus_per_unit}")
    if self.cpus_per_unit is not None and self.cpus_per_unit < 1:
      raise UserError(f"--cpus-per-unit must be 1 or more, got {self.cpus_per_unit}")


@dataclasses.dataclass
class Outcome:
  """What became of one submission of a unit: exactly one field is set."""

  results: list[RunResult] | None = None  # it ran (its runs may have failed)
  crash: str | None = None  # its worker died or raised (one line)
  user_error: str | None = None  # bad input or set-up: the sweep stops


def one_line(error: BaseException) -> str:
  """'Type: last line of the message', for crashes whose text is a traceback."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return f"{type(error).__name__}: {lines[-1] if lines else 'no message'}"


class Backend(Protocol):
  """Where units run. Keys identify a unit across its submissions."""

  def submit(self, units: list[tuple[int, Unit]]) -> None:
    """Starts the units (one batch: a Slurm job array)."""

  def wait(self) -> list[tuple[int, Outcome]]:
    """Waits a little (forwarding progress); returns the units that ended."""

  def cancel(self) -> None:
    """Stops the units still running."""

  def interrupted(self) -> str | None:
    """What to tell a user who pressed Ctrl-C while units run elsewhere (the
    units keep running), or None if they stop with the driver."""


# Makes a backend for a sweep: (spec with absolute paths, options, progress
# callback) -> a context manager that yields the backend and, on leaving,
# releases what it started (a local Ray instance) or leaves the jobs to the
# cluster (Slurm).
BackendFactory = Callable[
  [SweepSpec, LaunchOptions, Callable[[Progress], None]], ContextManager[Backend]
]
