"""User-facing errors.

A :class:`UserError` carries one line that says what went wrong and how to fix
it. The command line prints that line (no traceback) and exits non-zero.
"""


class UserError(Exception):
  """An error caused by the user's input or environment, with a one-line fix."""

  def __init__(self, message: str):
    if "\n" in message:
      raise ValueError("UserError messages must be a single line")
    super().__init__(message)


# Exit statuses of the command line (besides 0 and typer's 2 for a usage error).
EXIT_ERROR = 1  # bad input, a failed run, or an internal error (one line each)
EXIT_ALL_BUSY = 3  # nothing could run: every run is being written by another process
