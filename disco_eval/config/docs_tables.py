"""The generated tables of ``docs/protocols.md``, printed from the declarations.

Each table stands between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``;
:func:`refresh` rewrites them all, and ``python3 -m disco_eval.config.docs_tables``
rewrites the file in place (``tests/test_config.py`` checks that it is up to date).
"""

import re
import sys
from pathlib import Path
from typing import Any

from disco_eval.config import manifests, resolve, suites
from disco_eval.config.explain import explain
from disco_eval.config.run_config import RuleIdentity
from disco_eval.config.setting import markdown_table
from disco_eval.config.suites import PROTOCOL_SETTINGS
from disco_eval.config.train import LOOP_SETTINGS, OPTIMIZER_SETTINGS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocols.md"


PAPER_SUITES = ("procgen", "crafter", "nethack", "sokoban", "atari")
PAPER_RULE = "disco103"


def tables() -> dict[str, str]:
  """Name -> markdown table of every generated block."""
  out = {
    "train": markdown_table(LOOP_SETTINGS, "train"),
    "protocol": markdown_table(PROTOCOL_SETTINGS, "protocol"),
    "optimizer": markdown_table(OPTIMIZER_SETTINGS, "optimizer"),
  }
  for suite in PAPER_SUITES:
    out[f"paper-{suite}"] = paper_table(suite)
  return out


def _cell(value: Any) -> str:
  text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
  return text.replace("|", "\\|")


def paper_table(suite_name: str, rule_name: str = PAPER_RULE) -> str:
  """The suite manifest's ``[paper]`` items (Extended Data Table 6, Methods)
  beside the configuration `rule_name` runs under the suite's default
  protocol (:func:`disco_eval.config.resolve.resolve`), with the source of
  ours (:func:`disco_eval.config.explain.explain`): item | paper | ours |
  same | source of ours. An item the configuration lacks is "not applied"."""
  suite = suites.load_suite(suite_name)
  paper = dict(suite.raw.get("paper", {}))
  source = paper.pop("source", "")
  manifest = manifests.load_rule_manifest(rule_name)
  identity = RuleIdentity(manifest.name, manifest.kind, manifest.sha256, None)
  config = resolve.resolve(suite, suite.tasks[0], identity, manifest)
  rows = {r["item"]: r for r in explain(config, suite, manifest)}
  by_name = {item.rsplit(".", 1)[-1]: r for item, r in rows.items()}
  lines = [
    f"Paper: {source}. Ours: `{rule_name}` under protocol `{config.protocol.name}`.",
    "",
    "| item | paper | ours | same | source of ours |",
    "|---|---|---|---|---|",
  ]
  for item, value in paper.items():
    row = rows.get(item) or by_name.get(item)
    if row is None:
      lines.append(f"| {item} | {_cell(value)} | not applied | no | - |")
      continue
    same = "yes" if row["value"] == value else "no"
    lines.append(
      f"| {item} | {_cell(value)} | {_cell(row['value'])} | {same} | {_cell(row['source'])} |"
    )
  return "\n".join(lines) + "\n"


def refresh(text: str) -> str:
  """`text` with each generated block replaced by its table of today."""
  for name, table in tables().items():
    block = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end: {name} -->)", re.S)
    if not block.search(text):
      raise ValueError(f"no '<!-- generated: {name} -->' ... '<!-- end: {name} -->' block")
    text = block.sub(lambda m, t=table: m.group(1) + t + m.group(2), text)
  return text


if __name__ == "__main__":
  path = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS
  path.write_text(refresh(path.read_text()))
  print(f"wrote {path}")
