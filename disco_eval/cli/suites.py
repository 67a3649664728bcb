"""``disco-eval suites list|show``: suite manifests and their protocols."""

from typing import Optional

import typer
from rich.table import Table

from disco_eval.cli.common import esc, out, print_json
from disco_eval.cli.helptext import Command, Group
from disco_eval.config import suites
from disco_eval.config.train import LOOP_SETTINGS

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
      "overrides": sorted(s.overrides),
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
        + "".join(f"; override +{o}" for o in r["overrides"])
      ),
      esc(r["description"]),
    )
  out.print(t)


def _budget(row: dict) -> str:
  """``50,000,000``; ``not stated`` for 0 (with its note)."""
  steps = row.get("env_steps")
  if not isinstance(steps, int) or isinstance(steps, bool):
    return "(missing)"
  if steps == 0:
    return "not stated" + (f" ({row['budget_note']})" if row.get("budget_note") else "")
  return f"{steps:,}" + (f" ({row['budget_note']})" if row.get("budget_note") else "")


def _meanings() -> dict[str, str]:
  """Item -> its declared help line (the loop's settings and the protocol
  items every suite reads; a suite's own items have none)."""
  declared = (*LOOP_SETTINGS, *suites.PROTOCOL_SETTINGS)
  return {s.name: s.help for s in declared}


def _items_table(p: suites.Protocol) -> Table:
  """Item, value, meaning (where declared), source (and how its sources
  disagree) of protocol `p`."""
  t = Table(title=f"Protocol {esc(p.name)}: items and sources")
  for c in ("item", "value", "meaning", "source"):
    t.add_column(c, overflow="fold")
  meanings = _meanings()
  for k, v in p.settings.items():
    value = "per task (see normalisation)" if k == "normalization" else v
    source = p.sources.get(k) or "(no source)"
    if k in p.disagreement:
      source += f" | sources disagree: {p.disagreement[k]}"
    t.add_row(esc(k), esc(value), esc(meanings.get(k, "")), esc(source))
  return t


def _published_table(s: suites.SuiteManifest, p: suites.Protocol) -> Table | None:
  """The published rows of `p`'s base protocol: rule, metric, budget."""
  rows = suites.published_summary(s, p.name)
  if not rows:
    return None
  t = Table(title=f"Published rows of protocol {esc(p.base)} (shown by `disco-eval compare`)")
  for c in ("rule", "kind", "metric", "budget (env steps)", "tasks", "value", "read off"):
    t.add_column(c, overflow="fold")
  for r in rows:
    value = "per task" if r["value"] is None else r["value"]
    t.add_row(
      esc(r["rule"]),
      esc(r["kind"]),
      esc(r["metric"] or "(missing)"),
      esc(_budget(r)),
      str(r["tasks"]),
      esc(value),
      esc(r["read_off"] or ""),
    )
  return t


@app.command("show", cls=Command)
def suites_show(
  name: str = typer.Argument(
    ..., help="Suite name (see `disco-eval suites list`).", metavar="SUITE"
  ),
  protocol: Optional[str] = typer.Option(
    None,
    help="Protocol to show (default: the suite's); BASE+OVERRIDE for a named override.",
    metavar="NAME",
  ),
  as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
  """Print a suite's tasks and a protocol in full: each item with its source,
  and the published rows with their metric and budget."""
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
    "meanings": {k: m for k, m in _meanings().items() if k in p.settings},
    "sources": p.sources,
    "disagreement": p.disagreement,
    "overrides": {k: o.description for k, o in s.overrides.items()},
    "normalization": {t: s.normalization_for(t, p.name) for t in s.tasks},
    "published": suites.published_entries(s, p.name),
  }
  if as_json:
    return print_json(info)
  t = Table(title=f"Suite {esc(s.name)}, protocol {esc(p.name)}", show_header=False)
  t.add_row("description", esc(s.description))
  t.add_row("backend", esc(s.backend))
  t.add_row("tasks", esc(", ".join(s.tasks)))
  t.add_row("protocol", esc(f"{p.name}: {p.description}"))
  for k, o in s.overrides.items():
    t.add_row(esc(f"override {k}"), esc(f"--protocol BASE+{k}: {o.description}"))
  for task, n in info["normalization"].items():
    if n is not None:
      t.add_row(
        esc(f"normalisation {task}"), esc(f"(score - {n['min']}) / ({n['max']} - {n['min']})")
      )
  out.print(t)
  out.print(_items_table(p))
  published = _published_table(s, p)
  if published is not None:
    out.print(published)
