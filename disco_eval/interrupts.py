"""A Ctrl-C that arrives before a command's own handling is in place.

Python's own SIGINT handler raises KeyboardInterrupt wherever the main
thread is; when that is a callback (jax's gc hook prints "Exception
ignored" and drops it), the Ctrl-C is lost and the command runs on.
:func:`install_early`, called by the command line before anything imports
jax, makes each SIGINT leave a mark (:func:`early`) before it raises: the
command line stops when the command returns, and a sweep stops at its first
safe point (:mod:`disco_eval.runs.stop` reads the mark). Nothing here
imports jax.

Importing this module installs the handler (in the main thread, where SIGINT
has Python's default handler), so that the command line, which imports it
first, marks a Ctrl-C from its first instant; an uncaught KeyboardInterrupt
(one during the imports) prints one line instead of a traceback and the
process still ends by SIGINT.
"""

from __future__ import annotations

import signal
import sys
import threading

_early: list[int] = []  # SIGINTs received outside a sweep's own handling


def early() -> int | None:
  """The first SIGINT marked by :func:`install_early`'s handler, or None."""
  return _early[0] if _early else None


def clear() -> None:
  """Forgets the marked SIGINTs (a sweep that stopped for them has)."""
  _early.clear()


def _handler(signum: int, frame) -> None:
  """Marks the Ctrl-C, then raises KeyboardInterrupt as Python's own does."""
  _early.append(signum)
  signal.default_int_handler(signum, frame)


def install_early() -> None:
  """Makes SIGINT leave a mark before it raises. Main thread only; a SIGINT
  that is ignored (nohup, a background job) stays ignored."""
  if threading.current_thread() is not threading.main_thread():
    return
  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _handler)


def _excepthook(kind, value, tb) -> None:
  """One line for a KeyboardInterrupt nobody caught; others as before."""
  if issubclass(kind, KeyboardInterrupt):
    sys.stderr.write("interrupted\n")
    return
  _previous_hook(kind, value, tb)


def _unraisablehook(unraisable) -> None:
  """Silences a KeyboardInterrupt dropped by a callback (it was marked)."""
  if isinstance(unraisable.exc_value, KeyboardInterrupt):
    return
  _previous_unraisable(unraisable)


_previous_hook, _previous_unraisable = sys.excepthook, sys.unraisablehook
install_early()
if sys.excepthook is sys.__excepthook__:
  sys.excepthook = _excepthook
if sys.unraisablehook is sys.__unraisablehook__:
  sys.unraisablehook = _unraisablehook
