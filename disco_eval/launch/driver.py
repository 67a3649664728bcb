"""The part of a cluster sweep shared by every cluster launcher.

A worker runs a unit through :func:`work`, which returns a
:class:`base.Outcome`. The driver hands units to a :class:`base.Backend`
(Ray, Slurm) and :func:`collect` gathers their outcomes, submitting a unit
again, a bounded number of times, when its runs failed or its worker died
(runs resume from their checkpoints, so a retry resumes). Runs that are still
failed after the last retry stay recorded as failed; runs another process is
writing are reported "busy" and are not retried.
"""

import contextlib
import dataclasses
import signal
import time
from pathlib import Path
from typing import Callable

from disco_eval import runs, store
from disco_eval.errors import UserError
from disco_eval.launch.base import Backend, Outcome
from disco_eval.runs import Progress, RunResult, SweepSpec, Unit, stop


def work(spec: SweepSpec, unit: Unit, on_progress: Callable[[Progress], None]) -> Outcome:
  """Runs `unit` in a worker. A UserError comes back as a value (its message
  is meant for the user, not a traceback); other exceptions propagate, for
  the cluster to record as a crash."""
  try:
    return Outcome(results=runs.run_unit(spec, unit, on_progress))
  except UserError as e:
    return Outcome(user_error=str(e))


def collect(
  spec: SweepSpec,
  units: list[Unit],
  backend: Backend,
  retries: int,
  on_progress: Callable[[Progress], None],
) -> list[RunResult]:
  """Runs `units` on `backend` until each is done or out of retries; returns
  one result per run, in the order of the units and their seeds."""
  current = dict(enumerate(units))
  tries = dict.fromkeys(current, 0)
  found: dict[int, dict[int, RunResult]] = {key: {} for key in current}
  backend.submit(list(current.items()))
  running = set(current)
  try:
    while running:
      for key, outcome in backend.wait():
        running.discard(key)
        unit = current[key]
        if outcome.user_error is not None:
          backend.cancel()
          raise UserError(outcome.user_error)
        if outcome.results is not None:
          found[key].update((r.seed, r) for r in outcome.results)
          failed = [r for r in outcome.results if r.status == "failed"]
          again = tuple(r.seed for r in failed)
          why = failed[0].error if failed else ""
        else:
          again, why = unit.seeds, outcome.crash or "the worker ended without a result"
        if not again:
          continue
        if tries[key] < retries:
          tries[key] += 1
          current[key] = dataclasses.replace(unit, seeds=again)
          on_progress(
            Progress(
              "retry",
              unit.label,
              unit.task,
              again,
              message=f"retry {tries[key]}/{retries} of {unit.label}/{unit.task} seeds "
              f"{','.join(map(str, again))} ({why})",
            )
          )
          backend.submit([(key, current[key])])
          running.add(key)
        elif outcome.results is None:
          on_progress(Progress("failed", unit.label, unit.task, again, message=why))
          found[key].update((seed, settle(spec, unit, seed, why)) for seed in again)
  except KeyboardInterrupt:
    note = backend.interrupted()
    if note is not None:
      raise UserError(note) from None
    with contextlib.suppress(Exception):  # the tasks end with the driver regardless
      backend.cancel()
    marked = mark_interrupted(spec, [current[key] for key in running])
    raise ClusterInterrupted(marked) from None
  return [
    found[key][seed] for key, unit in enumerate(units) for seed in unit.seeds if seed in found[key]
  ]


class ClusterInterrupted(stop.Interrupted):
  """Ctrl-C on a cluster sweep's driver: its running runs were marked."""

  def __init__(self, marked: int):
    super().__init__(signal.SIGINT, 0)
    self.marked = marked

  def __str__(self) -> str:
    return self.message

  @property
  def message(self) -> str:
    return f"interrupted: {self.marked} run(s) marked interrupted; rerun the same command to resume"


# Seconds the driver waits for a cancelled worker to let go of a run's lock.
RELEASE_S = 20.0


def mark_interrupted(spec: SweepSpec, units: list[Unit], wait_s: float = RELEASE_S) -> int:
  """Marks ``interrupted`` every started, unfinished run of `units` once its
  worker let go of its lock (waiting up to `wait_s` in all); returns how
  many were marked. Runs still locked after that are left as they are (a
  rerun reports them, see compare's "died without a status")."""
  deadline, marked = time.monotonic() + wait_s, 0
  for unit in units:
    for seed in unit.seeds:
      path = store.run_dir(Path(spec.out), spec.suite, unit.task, unit.label, seed)
      if not (path / store.STATUS_FILE).is_file():
        continue
      record = store.RunRecord(path)
      while True:
        try:
          with record.lock():
            status = record.status or {}
            if status.get("status") == "running":
              record.mark_interrupted(int(status.get("env_steps") or 0))
              marked += 1
          break
        except store.RunBusy:
          if time.monotonic() > deadline:
            break
          time.sleep(0.5)
        except (UserError, OSError):
          break
  return marked


def settle(spec: SweepSpec, unit: Unit, seed: int, why: str) -> RunResult:
  """The result of a run whose worker died for the last time: complete if it
  was (the worker died after), else recorded as failed with `why` (under the
  run's lock: a run another process writes is reported busy)."""
  path = store.run_dir(Path(spec.out), spec.suite, unit.task, unit.label, seed)
  result = RunResult(unit.label, unit.task, seed, "failed", path, error=why)
  if not (path / store.CONFIG_FILE).is_file():
    return result  # it never started: nothing to record
  record = store.RunRecord(path)
  try:
    with record.lock():
      if record.is_finished():  # complete or diverged
        return RunResult(unit.label, unit.task, seed, record.status["status"], path, record.summary)
      record.mark_failed(why)
  except store.RunBusy as e:
    return RunResult(unit.label, unit.task, seed, "busy", path, error=str(e))
  except (UserError, OSError):
    pass  # unreadable or unwritable from here: reported failed all the same
  return result
