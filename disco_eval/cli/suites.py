"""``disco-eval suites list|show``: suite manifests and their protocols."""

from typing import Optional

import typer
from rich.table import Table

from disco_eval.cli.common import out, print_json
from disco_eval.config import suites

app = typer.Typer(help="Suite manifests and their protocols.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
  """Adds the ``suites`` group to `root`."""
  root.add_typer(app, name="suites")


@app.command("list")
def suites_list(as_json: bool = typer.Option(False, "--json")):
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
      r["name"],
      r["backend"],
      str(len(r["tasks"])),
      ", ".join(p + (" (default)" if p == r["default_protocol"] else "") for p in r["protocols"]),
      r["description"],
    )
  out.print(t)


@app.command("show")
def suites_show(
  name: str,
  protocol: Optional[str] = typer.Option(None),
  as_json: bool = typer.Option(False, "--json"),
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
  t = Table(title=f"Suite {s.name}, protocol {p.name}", show_header=False)
  t.add_row("description", s.description)
  t.add_row("backend", s.backend)
  t.add_row("tasks", ", ".join(s.tasks))
  t.add_row("protocol", f"{p.name}: {p.description}")
  for k, v in p.settings.items():
    if k != "normalization":
      t.add_row(f"  {k}", str(v))
  for task, n in info["normalization"].items():
    if n is not None:
      t.add_row(f"normalisation {task}", f"(score - {n['min']}) / ({n['max']} - {n['min']})")
  published = [e for e in info["published"] if e.get("protocol") == p.name]
  if published:
    t.add_row(
      "published rows", f"{len(published)} (shown by `disco-eval compare`, marked published)"
    )
  out.print(t)
