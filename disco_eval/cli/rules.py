"""``disco-eval rules list|show|pull|verify``: rule manifests and weights."""

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from disco_eval.cli.common import err, esc, out, print_json
from disco_eval.cli.helptext import Command, Group
from disco_eval.config import manifests
from disco_eval.errors import UserError
from disco_eval.rules import plugins, weights

app = typer.Typer(help="Rule manifests and weights.", no_args_is_help=True, cls=Group)


def register(root: typer.Typer) -> None:
  """Adds the ``rules`` group to `root`."""
  root.add_typer(app, name="rules")


@app.command("list", cls=Command)
def rules_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
  """List the known rules: built-in and registered by installed packages (entry-point group
  disco_eval.rules), with their kind, category and where they were discovered."""
  installed, problems = plugins.entry_point_manifests()
  rows = [_row(m, "built-in") for m in manifests.list_rule_manifests()]
  rows += [_row(m, "installed") for m in installed]
  for line in problems:
    err.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)
  if as_json:
    return print_json(rows)
  t = Table(title="Rules")
  t.add_column("name", no_wrap=True, min_width=max([len(r["name"]) for r in rows] + [4]))
  for c in ("kind", "category", "discovered on", "weights", "description"):
    t.add_column(c)
  for r in rows:
    w = "-" if not r["learned"] else ("cached" if r["cached"] else "not pulled")
    kind = r["kind"] if r["source"] == "built-in" else f"{r['kind']} (installed)"
    found = ", ".join(r["discovered_on"]) or "-"
    t.add_row(
      esc(r["name"]), esc(kind), esc(r["category_label"]), esc(found), w, esc(r["description"])
    )
  out.print(t)


def _row(m: manifests.RuleManifest, source: str) -> dict:
  """The `rules list` entry of one manifest (`source`: built-in or installed)."""
  return {
    "name": m.name,
    "kind": m.kind,
    "category": m.category,
    "category_label": m.category_label,
    "discovered_on": list(m.discovered_on),
    "source": source,
    "manifest": str(m.path),
    "module": m.module,
    "architecture": m.architecture,
    "description": m.description,
    "learned": bool(m.filename),
    "cached": weights.cached_path(m).is_file() if m.filename else None,
  }


def _manifest(name: str) -> manifests.RuleManifest:
  """The manifest of a rule name, an installed rule's name or a manifest path (.toml)."""
  if name.lower().endswith(".toml"):
    return manifests.load_manifest_file(Path(name))
  if manifests.is_valid_name(name) and name not in manifests.known_rule_names():
    installed = plugins.entry_point_manifest(name)
    if installed is not None:
      return installed
  return manifests.load_rule_manifest(name)


@app.command("show", cls=Command)
def rules_show(
  name: str = typer.Argument(
    ...,
    help="Rule name (see `disco-eval rules list`) or a manifest path (.toml).",
    metavar="RULE",
  ),
  as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
  """Show a rule's manifest: source, checksum, licence and default settings."""
  m = _manifest(name)
  info = {
    "name": m.name,
    "kind": m.kind,
    "category": m.category_label,
    "discovered_on": ", ".join(m.discovered_on) or None,
    "module": m.module,
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
  t = Table(title=f"Rule {esc(m.name)}", show_header=False)
  for k in (
    "kind",
    "category",
    "discovered_on",
    "module",
    "architecture",
    "description",
    "source_url",
    "sha256",
    "licence",
    "citation",
    "manifest",
  ):
    if info[k] is not None or k in ("source_url", "sha256"):
      t.add_row(k, esc(info[k]))
  for table, vals in info["settings"].items():
    for k, v in vals.items():
      t.add_row(esc(f"{table}.{k}"), esc(v))
  for suite, vals in m.suites.items():
    for k, v in vals.items():
      t.add_row(esc(f"[{suite}] {k}"), esc(v))
  out.print(t)


@app.command("pull", cls=Command)
def rules_pull(
  name: str = typer.Argument(..., help="A learned rule's name, e.g. disco103.", metavar="RULE"),
  force: bool = typer.Option(
    False, help="Download (or import the --file) again even if a copy is cached."
  ),
  url: Optional[str] = typer.Option(None, help="Download from this URL instead.", metavar="URL"),
  file: Optional[Path] = typer.Option(
    None,
    "--file",
    help="Import a local copy (checked against the manifest's sha256; "
    "refused if it differs from a cached copy, unless --force).",
    metavar="FILE",
  ),
):
  """Download a learned rule's weights into the cache and verify its sha256."""
  m = manifests.load_rule_manifest(name)
  if not m.filename:
    raise UserError(f"rule '{name}' is hand-designed: it has no weights to pull")
  cached = weights.cached_path(m)
  if file is not None:
    _check_file_against_cache(file, cached, force)
    url = file.resolve().as_uri()
  was_cached = cached.exists() and not force
  path = weights.pull(m, url=url, force=force)
  note = "already cached, nothing downloaded; " if was_cached else ""
  out.print(
    f"{m.name}: {path} ({note}sha256 {m.sha256})", markup=False, highlight=False, soft_wrap=True
  )


def _check_file_against_cache(file: Path, cached: Path, force: bool) -> None:
  """UserError if `file` is missing, or differs from a cached copy (unless
  `force`): a pull never ignores the file it was given."""
  if not file.is_file():
    raise UserError(f"--file {file}: file not found")
  if force or not cached.is_file():
    return
  theirs, ours = weights.sha256_file(file), weights.sha256_file(cached)
  if theirs != ours:
    raise UserError(
      f"--file {file} (sha256 {theirs}) differs from the cached copy {cached} "
      f"(sha256 {ours}); pass --force to replace the cached copy with it"
    )


@app.command("verify", cls=Command)
def rules_verify(
  name: str = typer.Argument(..., help="Rule name or PATH.npz.", metavar="RULE"),
  golden: list[Path] = typer.Option(
    ...,
    "--golden",
    help="Golden rule-step file(s): --golden F1 F2 ... or --golden F1 --golden F2.",
    metavar="FILE",
  ),
  more: Optional[list[Path]] = typer.Argument(None, hidden=True),
  as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
  """Check the rule against golden rule steps of the reference implementation.

  Prints, per output key, the max absolute and relative error and the bound;
  exits 1 if any key is out of bounds, or if a file lacks a key FORMAT.md
  requires or has shapes that disagree (checked before anything runs).
  Consecutive files of one sequence carry the meta-state computed here from
  step to step.
  """
  from disco_eval import runtime

  # On GPUs, deterministic ops (the loss gradient scatters); a no-op on the CPU.
  deterministic = runtime.apply_determinism(True, strict=False)
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
    print_json(
      {
        "rule": rule.label,
        "sha256": rule.sha256,
        "ok": ok_all,
        "files": results,
        "backend": runtime.backend_label({"runtime": runtime.environment()}),
        "deterministic": deterministic,
      }
    )
  else:
    n = len(results)
    out.print(
      f"{esc(rule.label)} (sha256 {rule.sha256}): "
      + (
        f"[green]all {n} file(s) within bounds[/]" if ok_all else "[red]some keys out of bounds[/]"
      )
    )
  if not ok_all:
    raise typer.Exit(1)


def _checks_table(path: Path, ok: bool, checks) -> Table:
  """The table of one golden file's checks (verify's per-key results)."""
  t = Table(title=f"{esc(path.name)}: {'PASS' if ok else 'FAIL'}")
  t.add_column("key", no_wrap=True)
  for c in ("max abs err", "max rel err", "bound"):
    t.add_column(c, justify="right", no_wrap=True)
  t.add_column("bound rule")
  t.add_column("")
  for c in checks:
    t.add_row(
      esc(c.key),
      f"{c.max_abs_err:.3g}",
      f"{c.max_rel_err:.3g}",
      f"{c.bound:.3g}",
      esc(c.bound_text),
      "[green]ok[/]" if c.ok else "[red]OUT OF BOUNDS[/]",
    )
  return t
