"""The progress display of ``disco-eval run``: one bar per run and one for the
whole sweep, fed by the sweep's progress events."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator

from rich.console import Console
from rich.progress import (
  BarColumn,
  MofNCompleteColumn,
  Progress,
  TextColumn,
  TimeElapsedColumn,
  TimeRemainingColumn,
)

if TYPE_CHECKING:  # only for annotations: the module loads jax
  from disco_eval import runs

# Events printed as a line above the bars, by kind.
NOTES = {
  "skip": "[dim]skip[/] {r}/{t} seed {s}: already complete",
  "resume": "{m}",
  "failed": "[red]failed[/] {r}/{t} seeds {s}: {m}",
  "busy": "[yellow]busy[/] {r}/{t} seed {s}: {m}",
  "retry": "[yellow]{m}[/]",
}
# Events that move no bar.
NO_BAR = ("failed", "busy", "retry")


class SweepDisplay:
  """The `on_progress` callback of a sweep, drawing on rich `bars`."""

  def __init__(self, bars: Progress):
    self.bars = bars
    self.overall = None  # the sweep's bar, once planned
    self.lines: dict[tuple, int] = {}  # (rule, task, seed) -> its bar
    self.done: dict[tuple, int] = {}  # (rule, task, seed) -> steps counted in overall

  def __call__(self, p: runs.Progress) -> None:
    if p.kind == "plan":
      self.overall = self.bars.add_task(f"all ({p.message})", total=p.total_steps, info="")
      return
    if p.kind in NOTES:
      self.bars.console.print(
        NOTES[p.kind].format(r=p.rule, t=p.task, m=p.message, s=",".join(map(str, p.seeds)))
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
        f"{p.rule} / {p.task} / seed {seed}", total=p.total_steps, info=""
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


@contextlib.contextmanager
def sweep_progress(console: Console) -> Iterator[Callable[[runs.Progress], None]]:
  """Shows the bars on `console` while the block runs; yields the callback
  that the sweep's progress events go to."""
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
