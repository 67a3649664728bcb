"""The version of the JSON layout: ``schema_version`` in every record and output.

Every JSON file the store writes (``config.json``, ``status.json``,
``summary.json``, ``checkpoint/checkpoint.json``) and every ``--json`` output
holds ``"schema_version": SCHEMA_VERSION`` at its top level; a ``--json``
output that is a list (``rules list``, ``suites list``, ``run``, ``doctor``)
holds it in each of its objects, so that a list stays a list. The layouts are
described by the JSON Schemas in ``docs/schemas/``.

Records written before the key existed have none: :func:`schema_version` reads
them as version 0, which is the layout of version 1 without the key, and
everything that reads records accepts them unchanged. The version is raised
only when a reader of the old layout would misread the new one (a key renamed,
removed or given another meaning), not when a key is added.
"""

from __future__ import annotations

from typing import Any

SCHEMA_KEY = "schema_version"
SCHEMA_VERSION = 1


def versioned(doc: Any) -> Any:
  """`doc` as this version writes it: a dict gets ``schema_version`` (the
  current one, whatever it held), a list gets it in each dict it holds;
  anything else is returned unchanged. `doc` itself is never modified."""
  if isinstance(doc, dict):
    return {**doc, SCHEMA_KEY: SCHEMA_VERSION}
  if isinstance(doc, list):
    return [versioned(item) if isinstance(item, dict) else item for item in doc]
  return doc


def schema_version(doc: Any) -> int:
  """The ``schema_version`` of a record read back: 0 for records written
  before the key existed (or for anything that is not an object)."""
  if isinstance(doc, dict) and isinstance(doc.get(SCHEMA_KEY), int):
    return doc[SCHEMA_KEY]
  return 0
