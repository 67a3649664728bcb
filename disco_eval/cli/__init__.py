"""The `disco-eval` command line: parse, call, print.

One module per command group registers its commands on :data:`app`
(``rules``, ``suites``, ``run``, ``plan``, ``bench``, ``compare``/``export``/``plot``,
``data``); :mod:`disco_eval.cli.progress` draws the progress of ``run``.
"""

import sys
from typing import Annotated

import typer

from disco_eval import (
  __version__,
  interrupts,  # first: a Ctrl-C is marked from here on
  provenance,
  runtime,
)
from disco_eval.cli import (
  analyze,
  bench,
  data,
  doctor,
  plan,
  results,
  rules,
  run,
  showconfig,
  suites,
  workflow,
)
from disco_eval.cli.common import err, esc
from disco_eval.cli.crashlog import internal_error_line, write_traceback
from disco_eval.cli.helptext import Group
from disco_eval.errors import UserError

app = typer.Typer(
  help="Evaluate discovered RL update rules on held-out suites, with honest statistics.",
  no_args_is_help=True,
  pretty_exceptions_enable=False,
  add_completion=False,
  cls=Group,
)
# In this order: `--help` lists the commands, then the groups, as registered.
for group in (
  rules,
  suites,
  showconfig,
  run,
  plan,
  bench,
  results,
  workflow,
  analyze,
  data,
  doctor,
):
  group.register(app)


def _print_version(value: bool) -> None:
  """The eager callback of ``--version``."""
  if value:
    typer.echo(f"disco-eval {__version__}")
    raise typer.Exit()


@app.callback()
def _root(
  version: Annotated[
    bool,
    typer.Option(
      "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
  ] = False,
  no_compile_cache: Annotated[
    bool,
    typer.Option(
      "--no-compile-cache",
      help=f"Compile every program afresh (default: reuse compiled programs kept under "
      f"$DISCO_EVAL_HOME/{runtime.CACHE_FOLDER}; also {runtime.CACHE_ENV}=off).",
    ),
  ] = False,
) -> None:
  """Evaluate discovered RL update rules on held-out suites, with honest statistics."""
  runtime.setup_compile_cache(enabled=not no_compile_cache)


def main() -> None:
  """Console-script entry point: one-line errors, no tracebacks.

  A UserError prints its line; any other exception (a bug) prints one line
  naming the file its traceback was written to. Both exit 1. A Ctrl-C at
  any moment ends the command with exit 130 and one line, even one that a
  callback swallowed (see disco_eval.interrupts).
  """
  interrupts.install_early()
  if interrupts.early() is not None:  # a Ctrl-C swallowed while importing
    err.print("interrupted", markup=False, highlight=False)
    sys.exit(130)
  provenance.note_command()
  try:
    app(prog_name="disco-eval")
  except SystemExit as e:
    if interrupts.early() is not None and e.code in (None, 0, 130):
      err.print("interrupted; rerun the same command to resume", markup=False, highlight=False)
      sys.exit(130)
    raise
  except UserError as e:
    err.print(f"[red]error:[/] {esc(e)}", highlight=False, soft_wrap=True)
    sys.exit(1)
  except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback to a file
    log = write_traceback(e, sys.argv)
    err.print(internal_error_line(e, log), markup=False, highlight=False, soft_wrap=True)
    sys.exit(1)
