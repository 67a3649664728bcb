"""The generated tables of ``docs/protocols.md``, printed from the declarations.

Each table stands between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``;
:func:`refresh` rewrites them all, and ``python3 -m disco_eval.config.docs_tables``
rewrites the file in place (``tests/test_config.py`` checks that it is up to date).
"""

import re
import sys
from pathlib import Path

from disco_eval.config.setting import markdown_table
from disco_eval.config.suites import PROTOCOL_SETTINGS
from disco_eval.config.train import LOOP_SETTINGS, OPTIMIZER_SETTINGS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocols.md"


def tables() -> dict[str, str]:
  """Name -> markdown table of every generated block."""
  return {
    "train": markdown_table(LOOP_SETTINGS, "train"),
    "protocol": markdown_table(PROTOCOL_SETTINGS, "protocol"),
    "optimizer": markdown_table(OPTIMIZER_SETTINGS, "optimizer"),
  }


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
