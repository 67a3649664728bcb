"""What the command line does with an internal error (a bug, not bad input):
the full traceback goes to a file, the user gets one line naming it."""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path

from disco_eval import paths
from disco_eval.errors import UserError
from disco_eval.store.atomic import make_dirs, open_nofollow


def log_folders() -> list[Path]:
  """Where tracebacks may be written, best first: ``$DISCO_EVAL_HOME/logs``,
  then the system's temp folder (if the cache is not writable)."""
  return [paths.home() / "logs", Path(tempfile.gettempdir())]


def write_traceback(exc: BaseException, argv: list[str]) -> Path | None:
  """Writes the command line and `exc`'s traceback to a new file in the first
  writable log folder; its path, or None if none could be written."""
  stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
  name = f"disco-eval-error-{stamp}-{os.getpid()}.txt"
  text = "command: " + " ".join(argv) + "\n\n" + "".join(traceback.format_exception(exc))
  for folder in log_folders():
    try:
      make_dirs(folder)
      path = folder / name
      fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # never a link
      with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
      return path
    except (OSError, UserError):
      continue
  return None


def internal_error_line(exc: BaseException, log: Path | None) -> str:
  """The one line printed for an internal error (no markup)."""
  message = " ".join(str(exc).split()) or "no message"
  if len(message) > 200:
    message = message[:197] + "..."
  where = f"the full traceback is in {log}" if log else "no traceback could be written"
  return f"error: internal error ({type(exc).__name__}: {message}); {where}"
