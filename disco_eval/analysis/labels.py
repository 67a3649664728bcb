"""A run's protocol label, re-derived from its recorded config.

A protocol is named by its manifest name; a run trained with a step budget
other than the protocol's gets the label ``NAME@STEPS`` (e.g.
``reference@1508``), and changed protocol settings add ``+KEY=VALUE``. Runs
with different labels are never compared.

This module is to be replaced by the config package's pure function
``protocol_label(config_dict)`` (``disco_eval.config``), once ``config.json``
stores the label: it is the only place in ``disco_eval.analysis`` that derives
a label, so repointing it is a one-line change.
"""

from __future__ import annotations

from typing import Any, Mapping

from disco_eval import store

# Training settings that do not change what a run measures.
IGNORED_TRAIN_KEYS = ("chunk", "iterations")


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


def protocol_label(config: Mapping[str, Any] | None, name: str,
                   env_steps: int | None) -> str:
  """``name``, or ``name@STEPS`` when the budget is not the protocol's.

  The budget counts as the protocol's when it is the protocol's
  ``env_steps`` rounded up to whole iterations (``num_envs * rollout_len``).
  """
  protocol = (config or {}).get("protocol")
  budget = protocol.get("env_steps") if isinstance(protocol, dict) else None
  asked = (config or {}).get("budget")
  if isinstance(asked, int) and isinstance(budget, (int, float)):
    # The budget asked for (rules whose iterations differ in size stop at
    # slightly different env steps, and still share a label).
    env_steps = budget if asked == budget else asked
  if env_steps is None or not isinstance(budget, (int, float)):
    return name
  train = (config or {}).get("train") or {}
  try:
    per_iteration = int(train["num_envs"]) * int(train["rollout_len"])
  except (KeyError, TypeError, ValueError):
    per_iteration = 1
  changed = sorted(str(k).split(".", 1)[1] + "=" + str(v)
                   for k, v in ((config or {}).get("overrides") or {}).items()
                   if str(k).startswith("protocol."))
  suffix = "".join(f"+{c}" for c in changed)
  if budget <= env_steps < budget + max(1, per_iteration):
    return name + suffix
  return f"{name}@{env_steps}{suffix}"


def run_labels(info: store.RunInfo) -> tuple[str | None, str | None]:
  """(protocol name, protocol label) of a scanned run, None where unknown."""
  name = protocol_name(info)
  if name is None:
    return None, None
  return name, protocol_label(info.config, name, run_env_steps(info))
