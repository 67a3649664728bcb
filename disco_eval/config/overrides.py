"""The user's ``--set KEY=VALUE`` overrides: which rule and which part they set.

An override is a pair ``("KEY", "VALUE")`` as typed. Its key says what it
sets:

* ``RULE.KEY`` (``RULE`` a rule label of the sweep): ``KEY`` for that rule
  only; any other key applies to every rule of the sweep;
* ``train.NAME``: a loop setting (one of :data:`TRAIN_KEYS`, declared by
  :class:`~disco_eval.config.train.TrainConfig`);
* ``protocol.NAME``: an evaluation setting of the protocol (one of
  :data:`PROTOCOL_KEYS`, declared by :class:`~disco_eval.config.suites.ProtocolSettings`;
  a run that changes one is labelled off-protocol);
* ``TABLE.KEY``: a rule manifest setting (checked against the manifest's
  tables by :func:`disco_eval.config.manifests.apply_overrides`);
* the aliases of :data:`ALIASES` (``lr``) stand for their full key.
"""

from typing import Iterable, NamedTuple

from disco_eval.config import validate
from disco_eval.config.setting import by_name
from disco_eval.config.suites import PROTOCOL_KEYS, ProtocolSettings
from disco_eval.config.train import TRAIN_KEYS
from disco_eval.errors import UserError

__all__ = ["TRAIN_KEYS", "PROTOCOL_KEYS", "ALIASES", "split_overrides", "scope_overrides"]

# Short names accepted by ``--set`` (e.g. ``--set ppo.lr=3e-4``).
ALIASES = {"lr": "optimizer.learning_rate"}

Overrides = tuple[tuple[str, str], ...]


class SplitOverrides(NamedTuple):
  """One rule's overrides by the part of the config they set."""

  rule: dict[str, str]  # "table.key" -> text, for the rule's settings tables
  train: dict[str, str]  # loop setting -> text
  protocol: dict[str, int]  # protocol setting -> positive integer


def _protocol_value(key: str, value: str) -> int:
  """`value` of protocol override `key` as its declared type, checked
  against its declared range, or a UserError."""
  declared = by_name(ProtocolSettings)[key.split(".", 1)[1]]
  number = declared.parse(key, value)
  if declared.allowed is not None:
    validate.check(key, number, declared.allowed)
  return number


def split_overrides(overrides: Iterable[tuple[str, str]]) -> SplitOverrides:
  """Separates ``train.*`` loop and ``protocol.*`` overrides from rule-manifest
  overrides; an unknown ``train.``/``protocol.`` name is a UserError."""
  split = SplitOverrides({}, {}, {})
  for key, value in overrides:
    name = key.split(".", 1)[-1]
    if key.startswith("protocol."):
      if name not in PROTOCOL_KEYS:
        raise UserError(
          f"unknown setting '{key}'; protocol settings that may be changed: "
          + ", ".join(f"protocol.{k}" for k in PROTOCOL_KEYS)
        )
      split.protocol[name] = _protocol_value(key, value)
    elif key.startswith("train."):
      if name not in TRAIN_KEYS:
        raise UserError(
          f"unknown setting '{key}'; train settings: " + ", ".join(f"train.{k}" for k in TRAIN_KEYS)
        )
      split.train[name] = value
    else:
      split.rule[key] = value
  return split


def scope_overrides(
  overrides: Iterable[tuple[str, str]], labels: list[str]
) -> dict[str, Overrides]:
  """Overrides per rule label: ``RULE.KEY=V`` applies to that rule only,
  any other key to every rule; aliases (``lr``) are expanded."""
  scoped: dict[str, list[tuple[str, str]]] = {label: [] for label in labels}
  for key, value in overrides:
    head, _, rest = key.partition(".")
    own = bool(rest) and head in scoped
    targets = [head] if own else list(scoped)
    name = rest if own else key
    if name.startswith("protocol.") and len(targets) == 1 and len(labels) > 1:
      raise UserError(f"'{key}': protocol settings apply to every rule; drop '{head}.'")
    for label in targets:
      scoped[label].append((ALIASES.get(name, name), value))
  return {label: tuple(pairs) for label, pairs in scoped.items()}
