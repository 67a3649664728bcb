"""What kind each rule of a report is, and whether a suite is held out for it.

Every report (tables, CSV rows, plot captions) names each rule's category and
whether its results on the suite are held out, read from the rule's manifest
(:class:`disco_eval.config.manifests.RuleManifest`: ``category`` and
``discovered_on``) by the rule name its run config records:

* a rule whose manifest lists the suite in ``discovered_near`` is held out
  but **near** (``near``): the suite is a near relative of a discovery
  environment (MinAtar's miniatures of Atari games for Disco103), the
  manifest's ``discovered_near_note`` says why;
* a rule whose manifest lists the suite in ``discovered_on`` is **not held
  out** there (e.g. Disco103 on ProcGen: Disco103 was discovered on Atari-57,
  ProcGen and DMLab-30); on every other suite it is held out (``yes``);
  hand-designed rules list none, so every suite counts as held out for them;
* a weights file run as ``--rule PATH.npz`` or ``NAME=PATH.npz`` is the rule
  whose manifest publishes weights of its sha256, when one does; any other
  (a custom checkpoint), or a rule without a manifest, is of unknown
  provenance: ``unknown``;
* published rows come from suite manifests, not from rule manifests: they are
  labelled ``published``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, MutableMapping

from disco_eval.config.manifests import (
  RuleManifest,
  is_valid_name,
  known_rule_names,
  load_rule_manifest,
  read_rule_manifest,
)
from disco_eval.errors import UserError

HELD_OUT = ("yes", "near", "no", "unknown", "published")
CHECKPOINT = "learned weights (custom checkpoint, provenance unknown)"
NO_MANIFEST = "unknown (no rule manifest of this name)"


@dataclasses.dataclass(frozen=True)
class RuleCategory:
  """A rule's category in words and whether a suite is held out for it.

  ``held_out`` is one of :data:`HELD_OUT`; ``discovered_on`` the manifest's
  discovery environments (empty when unknown or hand-designed).
  """

  category: str
  held_out: str
  discovered_on: tuple[str, ...] = ()
  near_note: str | None = None  # why the suite is near a discovery environment

  @property
  def marker(self) -> str:
    """``not held out``, ``held out: unknown`` or '' (held out, or published)."""
    return {
      "no": "not held out",
      "near": "held out: near",
      "unknown": "held out: unknown",
    }.get(self.held_out, "")


PUBLISHED = RuleCategory("published", "published")


def _manifest(name: str, cache: MutableMapping[str, RuleManifest | None]) -> RuleManifest | None:
  """The manifest of rule `name` (None when there is none), cached in `cache`."""
  if name not in cache:
    manifest = None
    if is_valid_name(name) and name in known_rule_names():
      try:
        manifest = load_rule_manifest(name)
      except UserError:
        manifest = None
    cache[name] = manifest
  return cache[name]


def _by_sha(sha: str, cache: MutableMapping[str, RuleManifest | None]) -> RuleManifest | None:
  """The manifest whose published weights have sha256 `sha` (a file of them
  run as ``--rule PATH.npz`` is that rule), else None."""
  for name in known_rule_names():
    manifest = _manifest(name, cache)
    if manifest is not None and manifest.learned and manifest.sha256 == sha:
      return manifest
  return None


def _plugin_manifest(
  source: object, cache: MutableMapping[str, RuleManifest | None]
) -> RuleManifest | None:
  """The manifest file a plug-in rule's run config records (``rule.source``),
  when it is still readable, else None (the report then says "unknown")."""
  if not isinstance(source, str) or not source.endswith(".toml"):
    return None
  key = f"file:{source}"
  if key not in cache:
    try:
      cache[key] = read_rule_manifest(Path(source))
    except UserError:
      cache[key] = None
  return cache[key]


def rule_kind(
  rule: Mapping[str, Any] | None,
  suite: str,
  cache: MutableMapping[str, RuleManifest | None] | None = None,
) -> RuleCategory:
  """The kind of the rule a run config records (its ``"rule"`` table:
  ``name``, ``kind``, ``sha256``, ``source``) on `suite`."""
  cache = {} if cache is None else cache
  rule = rule if isinstance(rule, Mapping) else {}
  name = rule.get("name")
  manifest = _manifest(name, cache) if isinstance(name, str) else None
  if manifest is None and rule.get("module"):
    manifest = _plugin_manifest(rule.get("source"), cache)
  sha = rule.get("sha256")
  if sha and (manifest is None or manifest.sha256 != sha):
    manifest = _by_sha(sha, cache) or manifest
  if manifest is not None and not (manifest.learned and sha and sha != manifest.sha256):
    held = manifest.held_out_label(suite)
    near = manifest.discovered_near_note if held == "near" else None
    return RuleCategory(manifest.category_label, held, tuple(manifest.discovered_on), near)
  if manifest is not None or rule.get("source") or sha:
    return RuleCategory(CHECKPOINT, "unknown")
  return RuleCategory(NO_MANIFEST, "unknown")


def footnotes(kinds: Mapping[str, RuleCategory], suite: str) -> list[str]:
  """One line per rule that is not held out on `suite`, and one for rules of
  unknown provenance ([] when every rule is held out)."""
  lines = [
    f"{rule}: not held out on {suite} — {rule} was discovered on "
    f"{', '.join(kind.discovered_on)}, which includes {suite}"
    for rule, kind in kinds.items()
    if kind.held_out == "no"
  ]
  lines += [
    f"{rule}: held out but near on {suite} — {kind.near_note or 'near a discovery environment'}"
    for rule, kind in kinds.items()
    if kind.held_out == "near"
  ]
  unknown = [rule for rule, kind in kinds.items() if kind.held_out == "unknown"]
  if unknown:
    lines.append(
      f"{', '.join(unknown)}: held out unknown — a custom checkpoint or a rule without a "
      "manifest, whose discovery environments are not known"
    )
  return lines
