"""Builds a rule object from its manifest kind and settings."""

from typing import Any

from disco_eval.errors import UserError
from disco_eval.rules import actor_critic, disco, ppo
from disco_eval.rules.base import UpdateRule

BUILDERS = {
    "disco": disco.from_settings,
    "actor_critic": actor_critic.from_settings,
    "ppo": ppo.from_settings,
}


def build_rule(kind: str, settings: dict[str, Any], name: str,
               axis_name: str | None = None) -> UpdateRule:
  if kind not in BUILDERS:
    raise UserError(f"rule kind '{kind}' is not implemented; known kinds: "
                    f"{', '.join(sorted(BUILDERS))}")
  return BUILDERS[kind](settings, name=name, axis_name=axis_name)
