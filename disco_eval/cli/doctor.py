"""``disco-eval doctor``: backend, devices, memory, versions, libraries and cache, with fixes."""

import typer
from rich.table import Table

from disco_eval.cli.common import err, esc, out, print_json
from disco_eval.cli.helptext import Command


def register(root: typer.Typer) -> None:
  """Adds the ``doctor`` command to `root`."""
  root.command("doctor", cls=Command)(doctor)


def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
  """Check this machine for runs: backend, devices, memory, versions, libraries, cache.

  Exits 1 when something every run needs is missing (each line names its fix).
  """
  from disco_eval import doctor as checks_lib  # here, not at the top: it loads jax

  rows = checks_lib.checks()
  failed = checks_lib.failed_required(rows)
  if as_json:
    print_json([r.to_json() for r in rows])
  else:
    t = Table(title="disco-eval doctor")
    for c in ("check", "", "found", "fix"):
      t.add_column(c)
    for r in rows:
      mark = "[green]ok[/]" if r.ok else ("[red]missing[/]" if r.required else "[yellow]warn[/]")
      t.add_row(esc(r.name), mark, esc(r.value), "" if r.ok else esc(r.fix or ""))
    out.print(t)
  if failed:
    names = ", ".join(r.name for r in failed)
    err.print(f"required: {esc(names)} (see the fix beside each)", highlight=False)
    raise typer.Exit(1)
