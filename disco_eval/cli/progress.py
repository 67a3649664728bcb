"""The progress display of ``disco-eval run``, fed by the sweep's progress events.

On a terminal: one rich bar per run and one for the whole sweep. Off a
terminal (piped to a file, as under Slurm): plain lines, flushed as they are
written, one per event (a chunk's line names the rule, task and seeds, the env
steps done of the total, the steps per second and the latest return), and a
"still running" line whenever nothing was printed for HEARTBEAT_S seconds, so
that a job killed mid-run leaves a log that says how far it got.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (
  BarColumn,
  MofNCompleteColumn,
  Progress,
  TextColumn,
  TimeElapsedColumn,
  TimeRemainingColumn,
)

from disco_eval.cli.common import discard_closed_output, one_line

if TYPE_CHECKING:  # only for annotations: the module loads jax
  from disco_eval import runs

# Longest silence of the plain display, in seconds.
HEARTBEAT_S = 30.0

# Events printed as a line above the bars, by kind ({r}, {t}, {m} are escaped).
NOTES = {
  "skip": "[dim]skip[/] {r}/{t} seed {s}: already complete",
  "resume": "{m}",
  "failed": "[red]failed[/] {r}/{t} seeds {s}: {m}",
  "busy": "[yellow]busy[/] {r}/{t} seed {s}: {m}",
  "retry": "[yellow]{m}[/]",
}
# Events that move no bar.
NO_BAR = ("failed", "busy", "retry")


def _seeds(p: runs.Progress) -> str:
  return ",".join(map(str, p.seeds))


class SweepDisplay:
  """The `on_progress` callback of a sweep, drawing on rich `bars`."""

  def __init__(self, bars: Progress):
    self.bars = bars
    self.overall = None  # the sweep's bar, once planned
    self.lines: dict[tuple, int] = {}  # (rule, task, seed) -> its bar
    self.done: dict[tuple, int] = {}  # (rule, task, seed) -> steps counted in overall

  def __call__(self, p: runs.Progress) -> None:
    if p.kind == "plan":
      self.overall = self.bars.add_task(f"all ({escape(p.message)})", total=p.total_steps, info="")
      return
    if p.kind in NOTES:
      self.bars.console.print(
        NOTES[p.kind].format(
          r=escape(p.rule), t=escape(p.task), m=escape(one_line(p.message)), s=_seeds(p)
        )
      )
    if p.kind in NO_BAR:
      return
    for seed in p.seeds:
      self._advance(p, seed)

  def _advance(self, p: runs.Progress, seed: int) -> None:
    """Moves the bar of run (p.rule, p.task, seed), and the sweep's, to p.env_steps."""
    key = (p.rule, p.task, seed)
    if key not in self.lines:
      self.lines[key] = self.bars.add_task(
        f"{escape(p.rule)} / {escape(p.task)} / seed {seed}", total=p.total_steps, info=""
      )
    if p.kind == "chunk":
      ret = p.latest_returns.get(seed, float("nan"))
      info = f"{p.steps_per_s / max(1, len(p.seeds)):,.0f} steps/s  return {ret:+.3f}"
      self.bars.update(self.lines[key], completed=p.env_steps, info=info)
    else:
      self.bars.update(self.lines[key], completed=p.env_steps)
    if self.overall is not None:
      self.bars.advance(self.overall, p.env_steps - self.done.get(key, 0))
      self.done[key] = p.env_steps


def plain_line(p: runs.Progress) -> str | None:
  """The plain-text line of event `p` (no markup), or None for none."""
  where = f"{p.rule}/{p.task} seeds {_seeds(p)}"
  steps = f"{p.env_steps:,}/{p.total_steps:,} env steps"
  if p.kind == "plan":
    return f"sweep: {p.message}, {p.total_steps:,} env steps in all"
  if p.kind == "chunk":
    ret = p.latest_return
    shown = "n/a" if math.isnan(ret) else f"{ret:+.3f}"
    return f"{where}: {steps}, {p.steps_per_s:,.0f} steps/s, latest return {shown}"
  if p.kind == "start":
    return f"{where}: started at {steps}"
  if p.kind == "done":
    return f"{where}: done, {steps}"
  if p.kind == "skip":
    return f"skip {p.rule}/{p.task} seed {_seeds(p)}: already complete"
  if p.kind in ("failed", "busy"):
    return f"{p.kind} {where}: {one_line(p.message)}"
  return p.message or None


class PlainDisplay:
  """The `on_progress` callback of a sweep off a terminal: plain lines on
  `console`, flushed, and a heartbeat line after HEARTBEAT_S of silence."""

  def __init__(self, console: Console, heartbeat_s: float = HEARTBEAT_S):
    self.console = console
    self.heartbeat_s = heartbeat_s
    self.started = time.monotonic()
    self.last_print = self.started
    self.last_line = "starting (loading and compiling)"
    self.pending: str | None = None  # the plan's line, printed with the next one
    self.closed = False  # the reader went away: lines are dropped
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)

  def __call__(self, p: runs.Progress) -> None:
    line = plain_line(p)
    if p.kind == "plan":  # held back: a setting refused next leaves one error line
      self.pending = line
    elif line is not None:
      self._print(line)

  def _print(self, line: str, remember: bool = True) -> None:
    with self._lock:
      if self.closed:
        return
      try:
        if self.pending is not None:
          self.console.print(self.pending, markup=False, highlight=False, soft_wrap=True)
          self.pending = None
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        self.console.file.flush()
      except OSError:  # a closed pipe (`| head`): training goes on, unseen
        self.closed = True
        discard_closed_output(self.console.file)
      self.last_print = time.monotonic()
      if remember:
        self.last_line = line

  def _beat(self) -> None:
    """The heartbeat thread: a "still running" line after each silence."""
    while not self._stop.wait(min(1.0, self.heartbeat_s)):
      now = time.monotonic()
      if now - self.last_print >= self.heartbeat_s:
        self._print(
          f"still running ({now - self.started:,.0f} s elapsed); last: {self.last_line}",
          remember=False,
        )

  def start(self) -> None:
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    self._thread.join(timeout=5.0)


@contextlib.contextmanager
def sweep_progress(
  console: Console, heartbeat_s: float = HEARTBEAT_S
) -> Iterator[Callable[[runs.Progress], None]]:
  """Shows the progress on `console` while the block runs (bars on a
  terminal, plain lines elsewhere); yields the callback that the sweep's
  progress events go to."""
  if not console.is_terminal:
    display = PlainDisplay(console, heartbeat_s)
    display.start()
    try:
      yield display
    finally:
      display.stop()
    return
  with Progress(
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn("{task.fields[info]}"),
    TimeElapsedColumn(),
    TimeRemainingColumn(),
    console=console,
    transient=False,
  ) as bars:
    yield SweepDisplay(bars)
