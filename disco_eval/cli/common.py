"""What the command modules share: the consoles, JSON output, list and
``--set`` parsing."""

import json
import sys
from typing import Optional

from rich.console import Console

from disco_eval.errors import UserError
from disco_eval.store.atomic import strict_value


def wide_console(stderr: bool = False) -> Console:
  """A console on stdout (or stderr); piped output gets 160 columns, so that
  tables are not squeezed."""
  stream = sys.stderr if stderr else sys.stdout
  return Console(stderr=stderr, width=None if stream.isatty() else 160)


out = wide_console()
err = wide_console(stderr=True)


def print_json(obj) -> None:
  """Writes `obj` to stdout as indented strict JSON with sorted keys (NaN and
  infinities as null)."""
  text = json.dumps(strict_value(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
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
