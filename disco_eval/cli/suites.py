"""``disco-eval suites list|show``: suite manifests and their protocols."""

from typing import Optional

import typer
from rich.table import Table

from disco_eval.cli.common import esc, out, print_json
from disco_eval.cli.helptext import Command, Group
from disco_eval.config import suites

app = typer.Typer(help="Suite manifests and their protocols.", no_args_is_help=True, cls=Group)


def register(root: typer.Typer) -> None:
  """Adds the ``suites`` group to `root`."""
  root.add_typer(app, name="suites")


@app.command("list", cls=Command)
def suites_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
  """List the known suites."""
  rows = [
    {
      "name": s.name,
      "backend": s.backend,
      "tasks": list(s.tasks),
      "default_protocol": s.default_protocol,
      "protocols": sorted(s.protocols),
      "description": s.description,
    }
    for s in suites.list_suites()
  ]
  if as_json:
    return print_json(rows)
  t = Table(title="Suites")
  for c in ("name", "backend", "tasks", "protocols", "description"):
    t.add_column(c)
  for r in rows:
    t.add_row(
      esc(r["name"]),
      esc(r["backend"]),
      str(len(r["tasks"])),
      esc(
        ", ".join(p + (" (default)" if p == r["default_protocol"] else "") for p in r["protocols"])
      ),
      esc(r["description"]),
    )
  out.print(t)


@app.command("show", cls=Command)
def suites_show(
  name: str = typer.Argument(
    ..., help="Suite name (see `disco-eval suites list`).", metavar="SUITE"
  ),
  protocol: Optional[str] = typer.Option(
    None, help="Protocol to show (default: the suite's).", metavar="NAME"
  ),
  as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
  """Print a suite's tasks and a protocol in full."""
  s = suites.load_suite(name)
  p = s.protocol(protocol)
  info = {
    "name": s.name,
    "description": s.description,
    "backend": s.backend,
    "tasks": list(s.tasks),
    "protocol": p.name,
    "protocol_description": p.description,
    "settings": p.settings,
    "normalization": {t: s.normalization_for(t, p.name) for t in s.tasks},
    "published": s.raw.get("published", []),
  }
  if as_json:
    return print_json(info)
  t = Table(title=f"Suite {esc(s.name)}, protocol {esc(p.name)}", show_header=False)
  t.add_row("description", esc(s.description))
  t.add_row("backend", esc(s.backend))
  t.add_row("tasks", esc(", ".join(s.tasks)))
  t.add_row("protocol", esc(f"{p.name}: {p.description}"))
  for k, v in p.settings.items():
    if k != "normalization":
      t.add_row(esc(f"  {k}"), esc(v))
  for task, n in info["normalization"].items():
    if n is not None:
      t.add_row(
        esc(f"normalisation {task}"), esc(f"(score - {n['min']}) / ({n['max']} - {n['min']})")
      )
  published = [e for e in info["published"] if e.get("protocol") == p.name]
  if published:
    t.add_row(
      "published rows", f"{len(published)} (shown by `disco-eval compare`, marked published)"
    )
  out.print(t)
