"""Builds a rule object from its manifest kind and settings.

Each kind names the function that builds its rule and the dataclass that
declares the keys of its ``[hyperparams]`` and ``[rule]`` tables (their
values live in the rule manifests, ``rules/*.toml``). A plug-in's manifest
(``kind = "plugin"``) names its own builder instead (:mod:`disco_eval.rules.plugins`);
:func:`build_manifest_rule` and :func:`check_manifest` take either.
"""

from typing import Any, Callable, NamedTuple

from disco_eval.config import schema
from disco_eval.config.manifests import RuleManifest
from disco_eval.errors import UserError
from disco_eval.rules import actor_critic, disco, dpo, dqn, plugins, ppo, variants
from disco_eval.rules.base import UpdateRule


class RuleBuilder(NamedTuple):
  """How to build the rules of one manifest kind."""

  build: Callable[..., UpdateRule]  # (settings, name=, axis_name=) -> rule
  settings: type  # dataclass of the [hyperparams] and [rule] keys


KINDS = {
  "disco": RuleBuilder(disco.from_settings, disco.RuleConfig),
  "actor_critic": RuleBuilder(actor_critic.from_settings, actor_critic.ACConfig),
  "ppo": RuleBuilder(ppo.from_settings, ppo.PPOConfig),
  "dpo": RuleBuilder(dpo.from_settings, dpo.DPOConfig),
  "dqn_reg": RuleBuilder(dqn.dqn_reg_from_settings, dqn.DQNRegConfig),
  "dqn_clipped": RuleBuilder(dqn.dqn_clipped_from_settings, dqn.QConfig),
}


def rule_kind(kind: str) -> RuleBuilder:
  """The entry of `kind`; a UserError listing the known kinds if none."""
  if kind not in KINDS:
    raise UserError(
      f"rule kind '{kind}' is not implemented; known kinds: {', '.join(sorted(KINDS))}"
    )
  return KINDS[kind]


def check_settings(kind: str, settings: dict[str, Any], where: str) -> None:
  """A UserError (prefixed `where`, e.g. the manifest's path) if settings
  tables hold a key that rules of `kind` do not declare, or lack one they
  need; for checking a manifest before any work is done."""
  schema.check_tables(rule_kind(kind).settings, settings, where)


def build_rule(
  kind: str, settings: dict[str, Any], name: str, axis_name: str | None = None
) -> UpdateRule:
  """The rule object of a manifest `kind` from its settings tables."""
  return rule_kind(kind).build(settings, name=name, axis_name=axis_name)


def build_manifest_rule(
  manifest: RuleManifest, settings: dict[str, Any], name: str, axis_name: str | None = None
) -> UpdateRule:
  """The rule object of `manifest` from its resolved settings tables: a plug-in's factory
  (``module``), else the builder of its built-in kind. A `name` ending in ``:VARIANT`` (the
  label of a variant, :mod:`disco_eval.rules.variants`) builds that variant."""
  if plugins.is_plugin(manifest):
    return plugins.build(manifest, settings, name=name, axis_name=axis_name)
  _, variant = variants.split(name)
  rule = build_rule(manifest.kind, settings, name, axis_name)
  if variant is not None:
    variants.check_kind(name, manifest.kind)
    rule = variants.build(rule, variant)
  return rule


def check_manifest(manifest: RuleManifest) -> None:
  """A UserError if `manifest`'s settings tables do not fit its rule (see check_settings);
  a plug-in is built once from them, so its factory checks them and its result is checked
  against the rule contract."""
  if plugins.is_plugin(manifest):
    plugins.build(manifest, manifest.settings(), name=manifest.name)
    return
  check_settings(manifest.kind, manifest.settings(), str(manifest.path))
