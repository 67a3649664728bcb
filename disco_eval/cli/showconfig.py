"""``disco-eval config``: the fully resolved configuration a run would use, with sources."""

from typing import Annotated, Optional

import typer
from rich.table import Table

from disco_eval.cli.common import esc, out, parse_set, print_json
from disco_eval.cli.helptext import Command
from disco_eval.cli.run import ProtocolOpt, SetOpt, StepsOpt, _opt

EXAMPLES = """Examples:

  disco-eval config procgen --rule disco103

  disco-eval config nethack --rule impala --protocol challenge --json

  disco-eval config procgen --rule disco103 --protocol disco+cpu-small-batch --set lr=1e-4
"""


def register(root: typer.Typer) -> None:
  """Adds the ``config`` command to `root`."""
  root.command("config", cls=Command, epilog=EXAMPLES)(show_config)


def show_config(
  suite: Annotated[str, typer.Argument(help="Suite name (see `disco-eval suites list`).")],
  rule: Annotated[str, _opt("Rule name, PATH.npz or manifest PATH.toml.", "--rule", "-r")] = (
    "disco103"
  ),
  protocol: ProtocolOpt = None,
  task: Annotated[Optional[str], _opt("Task (default: the suite's first).", metavar="TASK")] = None,
  steps: StepsOpt = None,
  set_: SetOpt = [],  # noqa: B006 - typer copies list defaults
  as_json: Annotated[bool, _opt("Print JSON.", "--json")] = False,
):
  """Print the configuration `run` would use, every item with its value and source."""
  from disco_eval.config import resolve, suites
  from disco_eval.config.explain import explain
  from disco_eval.errors import UserError

  manifest_suite = suites.load_suite(suite)
  name = task or manifest_suite.tasks[0]
  if name not in manifest_suite.tasks:
    raise UserError(f"unknown task '{name}' of {suite}; see `disco-eval suites show {suite}`")
  manifest, identity = _rule(rule)
  config = resolve.resolve(
    manifest_suite,
    name,
    identity,
    manifest,
    protocol=protocol,
    steps=steps,
    overrides=parse_set(set_),
  )
  rows = explain(config, manifest_suite, manifest)
  if as_json:
    return print_json(
      {
        "suite": suite,
        "task": name,
        "rule": identity.name,
        "env_steps": config.env_steps,
        "items": rows,
      }
    )
  t = Table(title=esc(f"config: {identity.name} on {suite} ({config.protocol.name}, {name})"))
  for c in ("item", "value", "source"):
    t.add_column(c, overflow="fold")
  for r in rows:
    t.add_row(esc(r["item"]), esc(str(r["value"])), esc(r["source"]))
  out.print(t)


def _rule(spec: str):
  """(manifest, identity) of `spec`: a built-in rule by its manifest alone
  (no weights needed to show its settings), anything else resolved as `run`
  resolves it (a weights file or a plug-in's manifest)."""
  from disco_eval.config import manifests
  from disco_eval.config.run_config import RuleIdentity
  from disco_eval.rules import weights
  from disco_eval.runs.plan import rule_identity

  known = {m.name: m for m in manifests.list_rule_manifests()}
  if spec in known:
    m = known[spec]
    return m, RuleIdentity(name=m.name, kind=m.kind, sha256=m.sha256, source=None)
  resolved = weights.resolve_rule(spec, download=False)
  return resolved.manifest, rule_identity(resolved)
