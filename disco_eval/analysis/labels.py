"""A run's protocol label, as its config records it (or as derived from it).

A protocol is named by its manifest name; a run trained with a step budget
other than the protocol's gets the label ``NAME@STEPS`` (e.g.
``reference@1508``), and changed protocol settings add ``+KEY=VALUE``. Runs
with different labels are never compared.

The label itself is the config package's (:mod:`disco_eval.config.label`):
``config.json`` stores it, and for records written before it did it is derived
there from the stored config. This module only reads a scanned run's name,
steps and label.
"""

from __future__ import annotations

from disco_eval import store
from disco_eval.config.label import IGNORED_TRAIN_KEYS, run_label

__all__ = ["IGNORED_TRAIN_KEYS", "protocol_name", "run_env_steps", "run_label", "run_labels"]


def protocol_name(info: store.RunInfo) -> str | None:
  """The protocol name from the config, else from the summary."""
  protocol = (info.config or {}).get("protocol")
  if isinstance(protocol, dict) and isinstance(protocol.get("name"), str):
    return protocol["name"]
  if isinstance(protocol, str):
    return protocol
  name = (info.summary or {}).get("protocol")
  return name if isinstance(name, str) else None


def run_env_steps(info: store.RunInfo) -> int | None:
  """The run's step budget from the summary, else from the config."""
  for doc in (info.summary or {}, info.config or {}):
    value = doc.get("env_steps")
    if isinstance(value, int) and not isinstance(value, bool):
      return value
  return None


def run_labels(info: store.RunInfo) -> tuple[str | None, str | None]:
  """(protocol name, protocol label) of a scanned run, None where unknown."""
  name = protocol_name(info)
  if name is None:
    return None, None
  return name, run_label(info.config, name, run_env_steps(info))
