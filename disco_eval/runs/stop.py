"""Stopping a sweep at a safe point when a signal asks it to.

A signal handler installed by :func:`handling` only records which signal came
(no exception is raised into jax: a KeyboardInterrupt that unwinds out of an
XLA compilation or a jitted call can crash the process). The sweep looks at
:func:`requested` between chunks of training; when a stop was asked for, it
checkpoints every seed it trains, records them ``interrupted`` and raises
:class:`Interrupted`, which the command line turns into one line and the exit
code of the signal (130 for SIGINT, 143 for SIGTERM). A second signal while
stopping ends the process at once (every record file is written atomically,
so the records stay whole; a rerun resumes from the newest checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

# Signals that stop a sweep run from the command line.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested: list[int] = []  # the signals received, in order


class Interrupted(BaseException):
  """A stop was requested and the sweep stopped at a safe point.

  A BaseException (as KeyboardInterrupt is): it must pass through the code
  that records a run's failure (``except Exception``).
  """

  def __init__(self, signum: int, env_steps: int):
    super().__init__(signum, env_steps)
    self.signum, self.env_steps = int(signum), int(env_steps)

  @property
  def exit_code(self) -> int:
    """The shell's code for a process ended by the signal: 128 + its number."""
    return 128 + self.signum

  @property
  def message(self) -> str:
    """The line the command line prints."""
    return f"interrupted at {self.env_steps} env steps; rerun the same command to resume"


def requested() -> int | None:
  """The first stop signal received while :func:`handling` was active, or None."""
  return _requested[0] if _requested else None


def check(env_steps: int) -> None:
  """Raises :class:`Interrupted` at `env_steps` if a stop was requested."""
  signum = requested()
  if signum is not None:
    raise Interrupted(signum, env_steps)


def _handler(signum: int, frame) -> None:
  """Records the signal; a second one ends the process at once."""
  del frame
  _requested.append(signum)
  if len(_requested) > 1:
    os.write(2, b"aborted; rerun the same command to resume\n")
    os._exit(128 + signum)


@contextlib.contextmanager
def handling(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
  """While the block runs, `signals` request a safe stop instead of raising.

  Only in the main thread (where Python runs signal handlers); elsewhere the
  block runs with the handlers as they are. A signal that is ignored stays
  ignored. The previous handlers are put back on leaving; the record of
  received signals is cleared on entering and on leaving.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  _requested.clear()
  # A signal ignored by the parent (nohup, a shell's background job) stays so.
  kept = [s for s in signals if signal.getsignal(s) is not signal.SIG_IGN]
  previous = {s: signal.signal(s, _handler) for s in kept}
  try:
    yield
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
    _requested.clear()
