"""Stopping a sweep at a safe point when a signal asks it to.

A signal handler installed by :func:`handling` only records which signal came
(no exception is raised into jax: a KeyboardInterrupt that unwinds out of an
XLA compilation or a jitted call can crash the process). The sweep looks at
:func:`requested` between chunks of training; when a stop was asked for, it
checkpoints every seed it trains, records them ``interrupted`` and raises
:class:`Interrupted`, which the command line turns into one line and the exit
code of the signal (130 for SIGINT, 143 for SIGTERM). SIGHUP (a closed
terminal or ssh session) is treated as SIGTERM. A second signal while
stopping ends the process at once (every record file is written atomically,
so the records stay whole; a rerun resumes from the newest checkpoint).

Python runs signal handlers only between bytecodes of the main thread, so a
main thread waiting inside a compiled computation would not see a second
Ctrl-C until the chunk ends. :func:`handling` therefore also registers a
wakeup pipe (:func:`signal.set_wakeup_fd`, written by the C-level handler at
once) read by a watcher thread: the first signal is acknowledged on stderr,
the second aborts the process at once.

A Ctrl-C that came before :func:`handling` and was swallowed by a callback
(see :mod:`disco_eval.interrupts`) counts as the first stop request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

from disco_eval import interrupts

# Signals that stop a sweep run from the command line.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_requested: list[int] = []  # the signals received, in order
_watching: list[bool] = []  # non-empty while a watcher thread counts signals
_ACK = b"stopping at the next safe point (records are checkpointed); press Ctrl-C again to abort\n"


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
  """The first stop signal received while :func:`handling` was active (or a
  Ctrl-C before it, see :mod:`disco_eval.interrupts`), or None."""
  return _requested[0] if _requested else interrupts.early()


def check(env_steps: int) -> None:
  """Raises :class:`Interrupted` at `env_steps` if a stop was requested."""
  signum = requested()
  if signum is not None:
    raise Interrupted(signum, env_steps)


def _handler(signum: int, frame) -> None:
  """Records the signal; a second one ends the process at once."""
  del frame
  if _watching:  # the watcher thread counted it already
    if not _requested:
      _requested.append(signum)
    return
  _requested.append(signum)
  if len(_requested) > 1:
    _abort(signum)


def _abort(signum: int) -> None:
  """Ends the process at once with the signal's exit code."""
  with contextlib.suppress(OSError):
    os.write(2, b"aborted; rerun the same command to resume\n")
  os._exit(128 + signum)


def _watch(read_fd: int) -> None:
  """The watcher thread: reads signal numbers from the wakeup pipe; the
  first is acknowledged on stderr, the second aborts the process."""
  seen = 1 if interrupts.early() is not None else 0
  while True:
    try:
      data = os.read(read_fd, 64)
    except OSError:
      return
    if not data:
      return
    for signum in data:
      if signum not in STOP_SIGNALS:
        continue
      seen += 1
      if not _requested:
        _requested.append(signum)
      if seen > 1:
        _abort(signum)
      with contextlib.suppress(OSError):
        os.write(2, _ACK)


@contextlib.contextmanager
def _watcher() -> Iterator[None]:
  """A wakeup pipe and its watcher thread while the block runs."""
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)
  try:
    old = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  except (ValueError, OSError):
    os.close(read_fd)
    os.close(write_fd)
    yield
    return
  thread = threading.Thread(target=_watch, args=(read_fd,), name="stop-watcher", daemon=True)
  _watching.append(True)
  thread.start()
  try:
    yield
  finally:
    signal.set_wakeup_fd(old)
    _watching.clear()
    os.close(write_fd)  # the watcher reads EOF and ends
    thread.join(timeout=5.0)
    os.close(read_fd)


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
    with _watcher():
      yield
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
    _requested.clear()
    interrupts.clear()
