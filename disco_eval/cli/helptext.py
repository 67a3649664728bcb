"""Help pages that read cleanly: no Python type labels.

Typer labels each option with its Python type (``<str>``, ``<int>``,
``<list[str]>``, ``<bool>``). The command and group classes here show the
option's metavar instead: the one given where the option is declared (``N``,
``FOLDER``, ``KEY=VALUE``), else the option's name in capitals; flags (and
``--help``) show none. An argument shows its metavar in the name column and
no type. Every command and group of the CLI uses them.
"""

from __future__ import annotations

from typer import core


class PlainArgument(core.TyperArgument):
  """An argument whose help names no type (its metavar says what it is)."""

  def display_type_rich(self, ctx) -> str | None:
    return None


def plain_metavars(params: list) -> list:
  """`params`, each given a metavar if it has none (see the module doc);
  arguments become PlainArguments (same state, one method differs)."""
  for param in params:
    if isinstance(param, core.TyperArgument) and not isinstance(param, PlainArgument):
      param.__class__ = PlainArgument
    if param.metavar is not None:
      continue
    if isinstance(param, core.TyperOption) and (param.is_flag or param.count):
      param.metavar = ""
    else:
      param.metavar = (param.name or "value").upper()
  return params


class Command(core.TyperCommand):
  """A command whose help shows metavars, not Python types."""

  def get_params(self, ctx) -> list:
    return plain_metavars(super().get_params(ctx))


class Group(core.TyperGroup):
  """A command group whose help shows metavars, not Python types."""

  def get_params(self, ctx) -> list:
    return plain_metavars(super().get_params(ctx))
