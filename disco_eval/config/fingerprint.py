"""The fingerprint of a run's effective settings: which runs are one configuration.

Two runs may be pooled as seeds of one rule only when they trained with the
same effective settings. :func:`settings_of` flattens a stored config (the
dict that ``config.json`` holds) into ``{"dotted.key": compact JSON value}``
over everything that decides what a run measures: the rule's identity (the
weights' ``rule.sha256`` for learned rules; for hand-designed rules the kind
and settings tables are their manifest's content), its settings tables after
every override, the loop settings and the protocol. Left out are the seed,
keys that change between invocations of one run or are derived
(:data:`IGNORED_KEYS`), where the weights file lay (``rule.source``), the
rule's name and the task (runs of one rule on different tasks share their
settings), and the loop settings that do not change what a run measures
(``chunk``, ``iterations``: the budget is in the protocol label). Settings
added after older records were written (``LATER_KEYS``) count at the value
those records ran with, so an old record and a new one agree.

:func:`fingerprint` hashes that dict. Both are pure functions of the stored
config, so records written before fingerprints existed are grouped alike.

Beside the settings, what can change a result without being a setting is
fingerprinted under ``machine.``: the backend (cpu, gpu, tpu; from the
record's ``runtime``), the major.minor version of jax, jaxlib, flax, optax
and numpy and of the suite's environment package (:data:`SUITE_PACKAGES`;
from ``versions``), and the data a run used (``data.``, e.g. the Boxoban
level set's sha256, see :mod:`disco_eval.runs.data_used`). Records written
before one of these was recorded read ``unrecorded`` (the backend is left
out when the record has no runtime at all): they stay readable, and are
reported apart from newer runs, never pooled with them.
"""

import hashlib
import json
from typing import Any, Mapping

from disco_eval.config.label import IGNORED_TRAIN_KEYS, LABEL_KEY
from disco_eval.config.train import LOOP_SETTINGS, OPTIMIZER_SETTINGS

# Top-level keys that are not settings of the run's configuration.
IGNORED_KEYS = (
  "seed",
  "versions",
  "created",
  "runtime",  # the machine a run computed on (backend, devices), not a setting
  LABEL_KEY,
  "task",
  "episodes_reproducible",  # a property of the task
  "overrides",  # as typed; their effect is in the settings below
  "env_steps",  # the budget: part of the protocol label
  "budget",
  "fingerprint",  # the fingerprint itself, should a record ever store it
  "schema_version",  # the file's layout (disco_eval.store.schema), not a setting
)
IGNORED_RULE_KEYS = ("name", "source")
# Settings added after runs were first recorded, with the value an older
# record that lacks them ran with (as store.config_match.LATER_CONFIG_KEYS).
# Loop settings: those declared ``later`` (disco_eval.config.train), at their defaults.
LATER_KEYS = {
  f"train.{s.name}": json.dumps(s.default, sort_keys=True, separators=(",", ":"))
  for s in LOOP_SETTINGS
  if s.later
}
# The same for a key of the rule's [agent] table (configs that have one).
LATER_AGENT_KEYS = {"settings.agent.torso_dtype": '"float32"'}
# The same for the optimiser's settings declared ``later`` (configs that have an optimizer table).
LATER_OPTIMIZER_KEYS = {
  f"settings.optimizer.{s.name}": json.dumps(s.default, sort_keys=True, separators=(",", ":"))
  for s in OPTIMIZER_SETTINGS
  if s.later
}
SHORT_SHA = 8
# Packages whose major.minor is part of every run's fingerprint.
MACHINE_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")
# The environment package of a suite, part of its runs' fingerprints.
SUITE_PACKAGES = {
  "procgen": "envpool",
  "minatar": "gymnax",
  "craftax-classic": "craftax",
  "crafter": "crafter",
  "nethack": "nle",
}


def _major_minor(version: Any) -> str:
  """'0.4' of '0.4.35'; 'unrecorded' for a missing value."""
  if not isinstance(version, str) or not version:
    return "unrecorded"
  return ".".join(version.split(".")[:2])


def machine_of(config: Mapping[str, Any]) -> dict[str, str]:
  """``{"machine.backend": ..., "machine.jax": "0.4", ...}`` of a stored config."""
  out: dict[str, str] = {}
  runtime = config.get("runtime")
  if isinstance(runtime, Mapping):
    out["machine.backend"] = json.dumps(str(runtime.get("backend") or "unrecorded"))
  versions = config.get("versions")
  versions = versions if isinstance(versions, Mapping) else {}
  names = MACHINE_PACKAGES + tuple(p for s, p in SUITE_PACKAGES.items() if s == config.get("suite"))
  for name in names:
    out[f"machine.{name}"] = json.dumps(_major_minor(versions.get(name)))
  return out


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
  """Leaves of nested dicts into `out` as ``{"a.b": compact JSON}``."""
  if isinstance(value, Mapping) and value:
    for key in sorted(value, key=str):
      _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    return
  out[prefix] = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def settings_of(config: Mapping[str, Any] | None) -> dict[str, str]:
  """The effective settings of a stored config, flattened and sorted.

  Args:
    config: a run's config as ``config.json`` stores it (old records too).

  Returns:
    ``{"dotted.key": compact JSON value}``; e.g. ``"rule.sha256"``,
    ``"settings.optimizer.learning_rate"``, ``"train.num_envs"``.
  """
  config = dict(config or {})
  out: dict[str, str] = {}
  for key in sorted(config, key=str):
    if key in IGNORED_KEYS:
      continue
    value = config[key]
    if key == "rule" and isinstance(value, Mapping):
      value = {k: v for k, v in value.items() if k not in IGNORED_RULE_KEYS}
    if key == "train" and isinstance(value, Mapping):
      value = {k: v for k, v in value.items() if k not in IGNORED_TRAIN_KEYS}
    _flatten(value, str(key), out)
  if isinstance(config.get("train"), Mapping):
    for key, old in LATER_KEYS.items():
      out.setdefault(key, old)
  if any(k.startswith("settings.agent.") for k in out):
    for key, old in LATER_AGENT_KEYS.items():
      out.setdefault(key, old)
  if any(k.startswith("settings.optimizer.") for k in out):
    for key, old in LATER_OPTIMIZER_KEYS.items():
      out.setdefault(key, old)
  out.update(machine_of(config))
  return dict(sorted(out.items()))


def fingerprint(config: Mapping[str, Any] | None) -> str:
  """The hex sha256 of a stored config's effective settings (see
  :func:`settings_of`): equal for runs that are one configuration."""
  text = json.dumps(settings_of(config), sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()
