"""The `disco-eval` command line: parse, call, print.

One module per command group registers its commands on :data:`app`
(``rules``, ``suites``, ``run``, ``bench``, ``compare``/``export``/``plot``,
``data``); :mod:`disco_eval.cli.progress` draws the progress of ``run``.
"""

import sys

import typer

from disco_eval.cli import bench, data, results, rules, run, suites
from disco_eval.cli.common import err
from disco_eval.errors import UserError

app = typer.Typer(
  help="Evaluate discovered RL update rules on held-out suites, with honest statistics.",
  no_args_is_help=True,
  pretty_exceptions_enable=False,
  add_completion=False,
)
# In this order: `--help` lists the commands, then the groups, as registered.
for group in (rules, suites, run, bench, results, data):
  group.register(app)


def main() -> None:
  """Console-script entry point: one-line errors, no tracebacks, for UserError."""
  try:
    app()
  except UserError as e:
    err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
    sys.exit(1)
