"""Where tracked scalars go: TensorBoard event files or Weights & Biases runs.

* ``tensorboard``: event files in ``<run>/tensorboard/``, written with
  tensorboardX (the ``track`` extra: ``pip install "disco-eval[track]"``).
  A log is derived from the records: opening one replaces the event files a
  previous log left in that folder, and writes the run from its first row.
  ``tensorboard --logdir results`` shows every run, named by its folder.
* ``wandb``: one Weights & Biases run per disco-eval run, kept in
  ``<run>/wandb/``, offline unless ``WANDB_MODE`` says otherwise (``wandb
  sync`` uploads it later); project ``WANDB_PROJECT`` (default
  ``disco-eval``). W&B's own cache, settings and logs go to ``<out>/.wandb/``
  unless its ``WANDB_*_DIR`` variables say otherwise. The ``wandb`` extra: ``pip install "disco-eval[wandb]"``.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from pathlib import Path
from typing import Iterable

from disco_eval.errors import UserError
from disco_eval.store import scan_runs
from disco_eval.track.scalars import Scalar, run_scalars

TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
WANDB_HOME = ".wandb"  # in the results folder: W&B's cache, config and logs
# tracker name -> (module it needs, extra that installs it)
TRACKERS = {"tensorboard": ("tensorboardX", "track"), "wandb": ("wandb", "wandb")}


def check_available(kinds: Iterable[str]) -> tuple[str, ...]:
  """`kinds` (tracker names), checked: a UserError names an unknown tracker
  or the extra that installs a missing library."""
  kinds = tuple(dict.fromkeys(kinds))
  for kind in kinds:
    if kind not in TRACKERS:
      raise UserError(f"unknown tracker '{kind}': use --track {' or --track '.join(TRACKERS)}")
    module, extra = TRACKERS[kind]
    if importlib.util.find_spec(module) is None:
      raise UserError(
        f"--track {kind} needs the {module} package, which is not installed: "
        f'pip install "disco-eval[{extra}]"'
      )
  return kinds


class TensorBoardSink:
  """Scalars of one run into event files in ``<run>/tensorboard/``."""

  def __init__(self, run: Path):
    from tensorboardX import SummaryWriter

    folder = Path(run) / TENSORBOARD_DIR
    old = sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []
    self.writer = SummaryWriter(logdir=str(folder), flush_secs=30)
    self._old = old  # removed on close, once the new log is complete

  def write(self, scalars: Iterable[Scalar]) -> None:
    for tag, step, value in scalars:
      self.writer.add_scalar(tag, value, global_step=step)

  def close(self) -> None:
    self.writer.close()
    for path in self._old:
      path.unlink(missing_ok=True)
    self._old = []


class WandbSink:
  """Scalars of one run into a Weights & Biases run kept in ``<run>/wandb/``."""

  def __init__(self, run: Path, config: dict | None):
    import wandb

    run = Path(run)
    name = "/".join(run.parts[-4:])
    (run / WANDB_DIR).mkdir(exist_ok=True)
    # W&B's own cache, config and logs: under the results folder, unless set.
    home = run.parents[3] / WANDB_HOME
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
      os.environ.setdefault(var, str(home))
    self.run = wandb.init(
      project=os.environ.get("WANDB_PROJECT", "disco-eval"),
      name=name,
      group="/".join(run.parts[-4:-1]),
      dir=str(run),
      mode=os.environ.get("WANDB_MODE", "offline"),
      config=config or {},
      reinit="create_new",
      settings=wandb.Settings(silent=True),
    )
    self.last = -1

  def write(self, scalars: Iterable[Scalar]) -> None:
    rows = sorted(scalars, key=lambda s: s[1])
    for step, group in itertools.groupby(rows, key=lambda s: s[1]):
      if step < self.last:  # W&B steps only increase (a resume cut rows off)
        continue
      self.run.log({tag: value for tag, _, value in group}, step=step)
      self.last = step

  def close(self) -> None:
    self.run.finish()


def open_sink(kind: str, run: Path, config: dict | None = None):
  """A sink of tracker `kind` for the run folder `run`."""
  return TensorBoardSink(run) if kind == "tensorboard" else WandbSink(run, config)


def export_tensorboard(root: Path) -> tuple[list[Path], list[str]]:
  """Writes every run's event files under `root` from its records;
  (runs written, problems of runs skipped)."""
  check_available(["tensorboard"])
  written, problems = [], []
  for info in scan_runs(Path(root)):
    if info.problem is not None or info.config is None:
      problems.append(f"{info.path}: {info.problem or 'no config.json'}")
      continue
    sink = TensorBoardSink(info.path)
    try:
      sink.write(run_scalars(info.path))
    finally:
      sink.close()
    written.append(info.path)
  return written, problems
