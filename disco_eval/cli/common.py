"""What the command modules share: the consoles, JSON output, list and
``--set`` parsing, and the escaping of user text printed through rich."""

import json
import os
import sys
from typing import Optional

from rich.console import Console
from rich.markup import escape

from disco_eval.errors import UserError
from disco_eval.store.atomic import strict_value
from disco_eval.store.schema import versioned

# Width of tables written to a pipe or file when COLUMNS is not set.
PIPE_WIDTH = 160


def console_width(isatty: bool, environ: dict) -> Optional[int]:
  """The width for a console: None (rich's own choice) on a terminal or when
  COLUMNS holds a positive number (rich then uses it), else PIPE_WIDTH."""
  columns = environ.get("COLUMNS", "").strip()
  if isatty or (columns.isdigit() and int(columns) > 0):
    return None
  return PIPE_WIDTH


class _Console(Console):
  """A rich Console that, when its reader goes away (``| head -2``), drops
  the rest of its output instead of ending the process (rich's default
  raises SystemExit(1)): a sweep whose output nobody reads trains on."""

  def on_broken_pipe(self) -> None:
    self.quiet = True
    discard_closed_output(self.file)


def wide_console(stderr: bool = False) -> Console:
  """A console on stdout (or stderr) that honours COLUMNS; piped output
  without COLUMNS gets PIPE_WIDTH columns, so that tables are not squeezed."""
  stream = sys.stderr if stderr else sys.stdout
  return _Console(
    stderr=stderr,
    width=console_width(stream.isatty(), dict(os.environ)),
    emoji=False,  # ':smile:' in a folder name prints as typed
  )


out = wide_console()
err = wide_console(stderr=True)


def discard_closed_output(stream) -> None:
  """Points the descriptor of `stream` (stdout or stderr) at /dev/null after
  its reader went away (``| head -2``): later writes, and the interpreter's
  flush at exit, then succeed silently instead of raising BrokenPipeError."""
  try:
    fd = stream.fileno()
    null = os.open(os.devnull, os.O_WRONLY)
  except (OSError, ValueError, AttributeError):
    return
  try:
    os.dup2(null, fd)
  finally:
    os.close(null)


def one_line(text: object, limit: int = 300) -> str:
  """The first non-empty line of `text`, cut to `limit` characters (a
  runtime error's message can run to many lines; the run's status.json keeps
  it whole)."""
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  first = lines[0] if lines else ""
  return first if len(first) <= limit else first[: limit - 3] + "..."


def esc(value: object) -> str:
  """`value` as text with rich markup escaped (for user text in messages,
  table cells and titles: a folder named 'res[red]' must print as such)."""
  return escape(str(value))


def print_json(obj) -> None:
  """Writes `obj` to stdout as indented strict JSON with sorted keys (NaN and
  infinities as null), with its ``schema_version`` (in each object of a list)."""
  text = json.dumps(
    strict_value(versioned(obj)), indent=2, sort_keys=True, default=str, allow_nan=False
  )
  sys.stdout.write(text + "\n")


def split_csv(text: Optional[str]) -> tuple[str, ...]:
  """'a, b,,c' -> ('a', 'b', 'c'); None or '' -> ()."""
  return tuple(t.strip() for t in text.split(",") if t.strip()) if text else ()


def parse_set(items: list[str]) -> tuple[tuple[str, str], ...]:
  """``--set KEY=VALUE`` items -> ((KEY, VALUE), ...), both stripped."""
  pairs = []
  for item in items:
    if "=" not in item:
      raise UserError(f"--set expects KEY=VALUE (e.g. optimizer.learning_rate=1e-3), got '{item}'")
    k, v = item.split("=", 1)
    # Accept "RULE.table.key" only as "table.key" for now: one override set for all rules.
    pairs.append((k.strip(), v.strip()))
  return tuple(pairs)
