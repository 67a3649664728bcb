"""A rule's settings dataclass, filled from its manifest tables.

A rule declares the keys of its ``[hyperparams]`` and ``[rule]`` tables as the
fields of one frozen dataclass, without defaults: the manifest (``rules/*.toml``)
is the one place a rule's defaults live. :func:`from_tables` fills such a
dataclass, so that a key the rule does not know, or one it needs and the
manifest lacks, is a one-line error naming the key, the table and the valid
keys.
"""

import dataclasses
from typing import Any, Mapping, TypeVar

from disco_eval.errors import UserError

T = TypeVar("T")
# The settings tables a rule's dataclass declares (the others, agent,
# optimizer and train, belong to the network, the optimiser and the loop).
RULE_TABLES = ("hyperparams", "rule")


def field_names(cls: type) -> tuple[str, ...]:
  """The names of the fields of dataclass `cls`, in order."""
  return tuple(f.name for f in dataclasses.fields(cls))


def check_tables(
  cls: type,
  tables: Mapping[str, Mapping[str, Any]],
  where: str,
  names: tuple[str, ...] = RULE_TABLES,
) -> dict[str, Any]:
  """The keys of tables `names` of `tables` as one flat dict, checked
  against the fields of `cls` (a UserError for an unknown, repeated or
  missing key)."""
  valid = field_names(cls)
  flat: dict[str, Any] = {}
  for table in names:
    for key, value in (tables.get(table) or {}).items():
      if key not in valid:
        raise UserError(
          f"{where}: unknown key '{key}' in [{table}]; valid keys of "
          f"[{'] and ['.join(names)}]: {', '.join(valid)}"
        )
      if key in flat:
        raise UserError(
          f"{where}: key '{key}' is set in more than one of [{'] and ['.join(names)}]; set it once"
        )
      flat[key] = value
  missing = [key for key in valid if key not in flat]
  if missing:
    raise UserError(
      f"{where}: missing key '{missing[0]}' (in [{'] or ['.join(names)}]); "
      f"required keys: {', '.join(valid)}"
    )
  return flat


def from_tables(
  cls: type[T],
  tables: Mapping[str, Mapping[str, Any]],
  where: str,
  names: tuple[str, ...] = RULE_TABLES,
) -> T:
  """An instance of dataclass `cls` from the keys of tables `names`, each
  value converted to its field's type (float, int, bool or str)."""
  flat = check_tables(cls, tables, where, names)
  types = {f.name: f.type for f in dataclasses.fields(cls)}
  return cls(**{key: _convert(value, types[key]) for key, value in flat.items()})


def _convert(value: Any, kind: Any) -> Any:
  """`value` as `kind` when that is a plain scalar type, else unchanged."""
  if kind in (float, "float"):
    return float(value)
  if kind in (int, "int"):
    return int(value)
  if kind in (bool, "bool"):
    return bool(value)
  if kind in (str, "str"):
    return str(value)
  return value
