"""Following a sweep's runs as they train: their records, as logs.

A :class:`LiveTracker` wraps a sweep's progress callback. The training loop
calls it after each chunk's metrics rows were appended to the records; the
tracker only queues a note of which runs changed, and a thread of its own
reads their new rows (:class:`~disco_eval.track.scalars.MetricsTail`) and
writes them to each tracker's sink, so that the training never waits for a
log. Besides the records' scalars, the live log has the rates measured while
training (``perf/env_steps_per_s``, ``perf/learner_steps_per_s``: per run,
over the chunk: seeds trained together share the group's rate).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Callable

from disco_eval.store import CONFIG_FILE, run_dir
from disco_eval.track.scalars import (
  MetricsTail,
  evaluation_scalars,
  row_scalars,
  summary_scalars,
)
from disco_eval.track.sinks import open_sink


class _Followed:
  """One run's tail and sinks."""

  def __init__(self, path: Path, kinds: tuple[str, ...]):
    from disco_eval.store.atomic import read_json

    try:
      config = read_json(path / CONFIG_FILE)
    except (OSError, ValueError):
      config = None
    self.path, self.kinds, self.config = path, kinds, config
    self.tail = MetricsTail(path)
    self.sinks = [open_sink(k, path, config) for k in kinds]

  def write(self, scalars) -> None:
    for sink in self.sinks:
      sink.write(scalars)

  def close(self) -> None:
    for sink in self.sinks:
      sink.close()


class LiveTracker:
  """Writes the logs of a sweep's runs while it trains (see the module)."""

  def __init__(self, out: Path, suite: str, kinds: tuple[str, ...], forward: Callable):
    self.out, self.suite, self.kinds, self.forward = Path(out), suite, kinds, forward
    self.queue: queue.Queue = queue.Queue()
    self.runs: dict[Path, _Followed] = {}
    self.errors: list[str] = []
    self.thread = threading.Thread(target=self._work, name="disco-eval-track", daemon=True)
    self.thread.start()

  def __call__(self, event) -> None:
    """The progress callback: forwards `event`, then notes the runs it names."""
    self.forward(event)
    if event.kind in ("chunk", "done", "resume") and not self.errors:
      paths = [run_dir(self.out, self.suite, event.task, event.rule, s) for s in event.seeds]
      self.queue.put((event.kind, paths, event.steps_per_s / max(1, len(paths))))

  def close(self) -> list[str]:
    """Writes what is queued, closes every log; the errors met (one line each)."""
    self.queue.put(None)
    self.thread.join()
    for run in self.runs.values():
      run.close()
    self.runs.clear()
    return self.errors

  def _work(self) -> None:
    while (item := self.queue.get()) is not None:
      if self.errors:
        continue
      try:
        self._handle(*item)
      except Exception as e:  # noqa: BLE001 - a log never stops the training
        self.errors.append(f"tracking stopped: {type(e).__name__}: {e}")

  def _handle(self, kind: str, paths: list[Path], env_rate: float) -> None:
    for path in paths:
      run = self.runs.get(path)
      if run is None or kind == "resume":
        if run is not None:
          run.close()
        run = self.runs[path] = _Followed(path, self.kinds)
      rows = run.tail.read()
      if rows is None:  # rows were cut off: write the log again from the start
        run.close()
        run = self.runs[path] = _Followed(path, self.kinds)
        rows = run.tail.read() or []
      scalars = [s for row in rows for s in row_scalars(row)]
      if rows and kind == "chunk" and env_rate > 0:
        steps = (
          rows[-1]["env_steps"]
          - rows[0]["env_steps"]
          + (rows[0]["env_steps"] // (rows[0]["iteration"] + 1))
        )
        learned = sum(r.get("learner_steps") or 0 for r in rows)
        at = rows[-1]["env_steps"]
        scalars.append(("perf/env_steps_per_s", at, env_rate))
        scalars.append(("perf/learner_steps_per_s", at, env_rate * learned / max(1, steps)))
      if kind == "done":
        scalars += summary_scalars(path) + evaluation_scalars(path)
      run.write(scalars)
      if kind == "done":
        run.close()
        del self.runs[path]
