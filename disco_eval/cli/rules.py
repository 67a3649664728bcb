"""``disco-eval rules list|show|pull|verify``: rule manifests and weights."""

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from disco_eval.cli.common import out, print_json
from disco_eval.config import manifests
from disco_eval.errors import UserError
from disco_eval.rules import weights

app = typer.Typer(help="Rule manifests and weights.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
  """Adds the ``rules`` group to `root`."""
  root.add_typer(app, name="rules")


@app.command("list")
def rules_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
  """List the known rules."""
  rows = []
  for m in manifests.list_rule_manifests():
    cached = weights.cached_path(m).is_file() if m.filename else None
    rows.append(
      {
        "name": m.name,
        "kind": m.kind,
        "architecture": m.architecture,
        "description": m.description,
        "learned": bool(m.filename),
        "cached": cached,
      }
    )
  if as_json:
    return print_json(rows)
  t = Table(title="Rules")
  for c in ("name", "kind", "weights", "description"):
    t.add_column(c)
  for r in rows:
    w = "-" if not r["learned"] else ("cached" if r["cached"] else "not pulled")
    t.add_row(r["name"], r["kind"], w, r["description"])
  out.print(t)


@app.command("show")
def rules_show(name: str, as_json: bool = typer.Option(False, "--json")):
  """Show a rule's manifest: source, checksum, licence and default settings."""
  m = manifests.load_rule_manifest(name)
  info = {
    "name": m.name,
    "kind": m.kind,
    "architecture": m.architecture,
    "description": m.description,
    "source_url": m.source_url,
    "sha256": m.sha256,
    "licence": m.licence,
    "citation": m.citation,
    "manifest": str(m.path),
    "settings": m.settings(),
    "suite_overrides": m.suites,
  }
  if as_json:
    return print_json(info)
  t = Table(title=f"Rule {m.name}", show_header=False)
  for k in (
    "kind",
    "architecture",
    "description",
    "source_url",
    "sha256",
    "licence",
    "citation",
    "manifest",
  ):
    t.add_row(k, str(info[k]))
  for table, vals in info["settings"].items():
    for k, v in vals.items():
      t.add_row(f"{table}.{k}", str(v))
  for suite, vals in m.suites.items():
    for k, v in vals.items():
      t.add_row(f"[{suite}] {k}", str(v))
  out.print(t)


@app.command("pull")
def rules_pull(
  name: str,
  force: bool = typer.Option(False, help="Download again even if cached."),
  url: Optional[str] = typer.Option(None, help="Download from this URL instead."),
  file: Optional[Path] = typer.Option(
    None, "--file", help="Import a local copy (checked against the manifest's sha256)."
  ),
):
  """Download a learned rule's weights into the cache and verify its sha256."""
  m = manifests.load_rule_manifest(name)
  if not m.filename:
    raise UserError(f"rule '{name}' is hand-designed: it has no weights to pull")
  if file is not None:
    if not file.is_file():
      raise UserError(f"file not found: {file}")
    url = file.resolve().as_uri()
  path = weights.pull(m, url=url, force=force)
  out.print(f"{m.name}: {path} (sha256 {m.sha256})")


@app.command("verify")
def rules_verify(
  name: str = typer.Argument(..., help="Rule name or PATH.npz."),
  golden: list[Path] = typer.Option(
    ..., "--golden", help="Golden rule-step file(s): --golden F1 F2 ... or --golden F1 --golden F2."
  ),
  more: Optional[list[Path]] = typer.Argument(None, hidden=True),
  as_json: bool = typer.Option(False, "--json"),
):
  """Check the rule against golden rule steps of the reference implementation.

  Prints, per output key, the max absolute and relative error and the bound;
  exits 1 if any key is out of bounds, or if a file lacks a key FORMAT.md
  requires or has shapes that disagree (checked before anything runs).
  Consecutive files of one sequence carry the meta-state computed here from
  step to step.
  """
  from disco_eval.rules import verify  # here, not at the top: it loads jax (start-up time)

  rule = weights.resolve_rule(name)
  if rule.manifest.kind != "disco" or rule.params is None:
    raise UserError(
      f"rule '{name}' is not a Disco103-architecture weights file; "
      "golden files check the discovered rule"
    )
  results, ok_all = [], True
  for path, checks in verify.check_files(rule.params, list(golden) + list(more or [])):
    ok = all(c.ok for c in checks)
    ok_all &= ok
    results.append({"file": str(path), "ok": ok, "checks": [c.__dict__ for c in checks]})
    if not as_json:
      out.print(_checks_table(path, ok, checks))
  if as_json:
    print_json({"rule": rule.label, "sha256": rule.sha256, "ok": ok_all, "files": results})
  else:
    n = len(results)
    out.print(
      f"{escape(rule.label)} (sha256 {rule.sha256}): "
      + (
        f"[green]all {n} file(s) within bounds[/]" if ok_all else "[red]some keys out of bounds[/]"
      )
    )
  if not ok_all:
    raise typer.Exit(1)


def _checks_table(path: Path, ok: bool, checks) -> Table:
  """The table of one golden file's checks (verify's per-key results)."""
  t = Table(title=f"{escape(path.name)}: {'PASS' if ok else 'FAIL'}")
  t.add_column("key", no_wrap=True)
  for c in ("max abs err", "max rel err", "bound"):
    t.add_column(c, justify="right", no_wrap=True)
  t.add_column("bound rule")
  t.add_column("")
  for c in checks:
    t.add_row(
      c.key,
      f"{c.max_abs_err:.3g}",
      f"{c.max_rel_err:.3g}",
      f"{c.bound:.3g}",
      c.bound_text,
      "[green]ok[/]" if c.ok else "[red]OUT OF BOUNDS[/]",
    )
  return t
