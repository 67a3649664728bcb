"""A run's protocol label, as its config records it (or as derived from it).

A protocol is named by its manifest name; a run trained with a step budget
other than the protocol's gets the label ``NAME@STEPS`` (e.g.
``reference@1508``), and changed protocol settings add ``+KEY=VALUE``. Runs
with different labels are never compared.

The label itself is the config package's (:mod:`disco_eval.config.label`):
``config.json`` stores it, and for records written before it did it is derived
there from the stored config. This module reads a scanned run's name, steps
and label, and labels the variants of a rule: runs of one rule name whose
effective settings differ (their fingerprints,
:mod:`disco_eval.config.fingerprint`) are reported as distinct rules named
``RULE[KEY=VALUE]`` (:func:`variant_labels`), never as seeds of one.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from disco_eval import store
from disco_eval.config.fingerprint import SHORT_SHA, settings_of
from disco_eval.config.label import IGNORED_TRAIN_KEYS, run_label
from disco_eval.config.manifests import is_valid_name, known_rule_names, load_rule_manifest
from disco_eval.config.overrides import ALIASES
from disco_eval.errors import UserError

__all__ = [
  "IGNORED_TRAIN_KEYS",
  "base_protocol",
  "label_budget",
  "protocol_name",
  "run_budget",
  "run_env_steps",
  "run_label",
  "run_labels",
  "variant_labels",
]


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


def base_protocol(label: str) -> str:
  """The protocol a label names: the part before ``@`` and before the first ``+``."""
  return label.split("@", 1)[0].split("+", 1)[0]


def label_budget(label: str, default: int | None) -> int | None:
  """STEPS of a ``NAME@STEPS[+...]`` label, else `default`."""
  if "@" not in label:
    return default
  head = label.split("@", 1)[1].split("+", 1)[0]
  return int(head) if head.isdigit() else default


def run_budget(label: str, config: Mapping[str, Any] | None, steps: int) -> int:
  """The budget a run was trained for: STEPS of its ``NAME@STEPS`` label, else
  its protocol's ``env_steps``, else the env steps it ran (`steps`)."""
  protocol = (config or {}).get("protocol")
  default = protocol.get("env_steps") if isinstance(protocol, dict) else None
  if not isinstance(default, int) or isinstance(default, bool):
    default = steps
  return label_budget(label, default) or steps


# --- variants: runs of one rule name made with different settings -------------

# Keys shown by a shorter name in a variant's label.
_SHOWN_AS = {"rule.sha256": "sha256", **{f"settings.{v}": k for k, v in ALIASES.items()}}
MAX_SHOWN = 3


def _shown_key(key: str) -> str:
  """The name of a setting in a label: ``lr``, ``sha256``, ``optimizer.x``."""
  if key in _SHOWN_AS:
    return _SHOWN_AS[key]
  return key.removeprefix("settings.")


def _shown_value(key: str, text: str | None) -> str:
  """A setting's value in a label (a sha256 cut to 8 digits, strings bare)."""
  if text is None:
    return "none"
  value = json.loads(text)
  if key == "rule.sha256" and isinstance(value, str):
    return value[:SHORT_SHA]
  return value if isinstance(value, str) else text


def _applies(key: str, rule: str, tables: set[str]) -> bool:
  """Whether a stored ``--set`` key changed rule `rule`'s settings (keys
  scoped to another rule of the sweep, and protocol keys, did not)."""
  head = key.split(".", 1)[0]
  if head == "protocol":
    return False
  return key in ALIASES or head in tables or key.startswith(f"{rule}.")


def _changes(rule: str, config: Mapping[str, Any]) -> int:
  """How many of a config's ``--set`` overrides changed rule `rule`'s
  settings (0: it ran as its manifest says)."""
  overrides = config.get("overrides") or {}
  settings = config.get("settings") or {}
  tables = {"train", *(settings if isinstance(settings, dict) else ())}
  return sum(_applies(str(k), rule, tables) for k in overrides)


def _published_sha(rule: str) -> str | None:
  """The sha256 of the published weights of rule `rule` (None if unknown)."""
  if not is_valid_name(rule) or rule not in known_rule_names():
    return None
  try:
    return load_rule_manifest(rule).sha256
  except UserError:
    return None


def _default_variant(rule: str, configs: Mapping[str, Mapping[str, Any]]) -> str | None:
  """The fingerprint of the run of `rule` closest to its manifest: the only
  one with the fewest overrides (among several, the one with the published
  weights); None when there is no single one."""
  fewest = min(_changes(rule, c) for c in configs.values())
  plain = [fp for fp, c in configs.items() if _changes(rule, c) == fewest]
  if len(plain) > 1:
    sha = _published_sha(rule)
    plain = [fp for fp in plain if (configs[fp].get("rule") or {}).get("sha256") == sha]
  return plain[0] if len(plain) == 1 else None


def _differences(settings: Mapping[str, str], reference: Mapping[str, str]) -> list[str]:
  """``KEY=VALUE`` for each setting that differs from `reference`, by the
  shortest name, without repeats (``train.x`` is both a loop setting and a
  setting of the rule's ``train`` table)."""
  shown: dict[str, str] = {}
  for key in sorted(set(settings) | set(reference)):
    if settings.get(key) != reference.get(key):
      shown.setdefault(_shown_key(key), _shown_value(key, settings.get(key)))
  return [f"{k}={v}" for k, v in shown.items()]


def variant_labels(rule: str, configs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
  """A distinct label per configuration of rule `rule`.

  Args:
    rule: the rule's name (its run folders' name).
    configs: one stored config per fingerprint (see
      :func:`disco_eval.config.fingerprint.fingerprint`).

  Returns:
    fingerprint -> label: `rule` alone when there is one configuration, and
    for the one closest to the manifest's settings (the only one with the
    fewest ``--set`` overrides that change this rule; among several, the one
    with the published weights); else ``rule[KEY=VALUE,...]``
    naming how it differs from that one (or, without one, the settings that
    differ among all), e.g. ``disco103[lr=0.003]``, ``disco103[sha256=1a2b3c4d]``.
    More than three differences, or labels that would coincide, add the
    fingerprint's first 8 digits.
  """
  if len(configs) <= 1:
    return {fp: rule for fp in configs}
  settings = {fp: settings_of(c) for fp, c in configs.items()}
  default = _default_variant(rule, configs)
  if default is not None:
    diffs = {fp: _differences(s, settings[default]) for fp, s in settings.items()}
  else:
    keys = {k for s in settings.values() for k in s}
    varying = {k for k in keys if len({s.get(k) for s in settings.values()}) > 1}
    diffs = {
      fp: _differences({k: s[k] for k in varying if k in s}, {}) for fp, s in settings.items()
    }
  out = {}
  for fp, shown in diffs.items():
    if len(shown) > MAX_SHOWN:
      shown = shown[:MAX_SHOWN] + [f"+{len(shown) - MAX_SHOWN} more #{fp[:SHORT_SHA]}"]
    out[fp] = rule if fp == default else f"{rule}[{','.join(shown)}]"
  if len(set(out.values())) < len(out):
    out = {fp: (v if fp == default else f"{v}#{fp[:SHORT_SHA]}") for fp, v in out.items()}
  return out
