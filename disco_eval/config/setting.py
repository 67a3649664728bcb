"""How a setting is declared: once, as a dataclass field with its metadata.

A setting's name, type and default are those of its field; :func:`setting`
adds the rest in the field's metadata: the range of values it may take, its
help line, and how the run's records treat it (whether it enters the protocol
label, whether it changes what a run measures, whether older records lack it,
whether ``--set`` may change it). Everything else is derived from the
declaration by :func:`declared`: the checks (:mod:`disco_eval.config.validate`),
the ``--set`` names (:mod:`disco_eval.config.overrides`), the label
(:mod:`disco_eval.config.label`), the fingerprint and the config match of
stored records, ``suites show`` and the docs' tables (:func:`markdown_table`).

For example, the loop's ``num_envs`` (:class:`disco_eval.config.train.TrainConfig`)::

  num_envs: int = setting(2, POSITIVE_INT, "environments the actor steps together")

Nothing here imports anything of disco_eval.
"""

import dataclasses
import math
from typing import Any, Callable

from disco_eval.errors import UserError


@dataclasses.dataclass(frozen=True)
class Range:
  """The values a setting may take.

  Attributes:
    text: the range in words, for messages (``a finite number > 0``).
    test: True for an allowed value (already of the right type).
    integer: whether the value must be an integer (else any real number).
  """

  text: str
  test: Callable[[Any], bool]
  integer: bool = False

  def allows(self, value: Any) -> bool:
    """Whether `value` is of the range's type and in it (bools never are)."""
    if isinstance(value, bool):
      return False
    if self.integer:
      return isinstance(value, int) and self.test(value)
    return isinstance(value, (int, float)) and self.test(value)


FINITE = Range("a finite number", math.isfinite)
# The smallest positive float32 (a subnormal): a smaller "positive" value is 0 on the device.
_F32_TINY = 1.4e-45
# The largest integer setting accepted: array sizes and counts the device holds as int32.
_MAX_INT = 2**31 - 1
# The largest env-step budget accepted (--steps, a protocol's env_steps): counted on the host.
_MAX_BUDGET = 2**40
POSITIVE = Range(
  f"a finite number > 0 and >= {_F32_TINY} (0 in float32 below)",
  lambda x: math.isfinite(x) and x >= _F32_TINY,
)
NON_NEGATIVE = Range("a finite number >= 0", lambda x: math.isfinite(x) and x >= 0)
UNIT = Range("a number in [0, 1]", lambda x: 0 <= x <= 1)
UNIT_OPEN = Range("a number in [0, 1)", lambda x: 0 <= x < 1)
POSITIVE_INT = Range("an integer >= 1 and < 2^31", lambda x: 1 <= x <= _MAX_INT, integer=True)
BUDGET = Range("an integer >= 1 and <= 2^40", lambda x: 1 <= x <= _MAX_BUDGET, integer=True)
NON_NEGATIVE_INT = Range("an integer >= 0", lambda x: x >= 0, integer=True)
SEED = NON_NEGATIVE_INT
AT_LEAST_2 = Range("an integer >= 2 and < 2^31", lambda x: 2 <= x <= _MAX_INT, integer=True)
LAG = Range("0 or 1", lambda x: x in (0, 1), integer=True)
VMAP = Range("-1 (auto), 0 (no) or 1 (yes)", lambda x: x in (-1, 0, 1), integer=True)

_KEY = "setting"
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}


@dataclasses.dataclass(frozen=True)
class Setting:
  """One declared setting (see :func:`setting`; name, type and default come
  from its dataclass field)."""

  name: str
  type: type
  default: Any
  allowed: Range | None
  help: str
  labelled: bool = False
  measured: bool = True
  later: bool = False
  settable: bool = True

  def parse(self, key: str, text: Any) -> Any:
    """`text` (as typed after ``--set KEY=``, or a manifest's value) as the
    setting's type; a one-line UserError if it is not one."""
    if self.type is str:
      return str(text)
    try:
      return self.type(text) if self.type is not int else int(str(text))
    except ValueError:
      words = _TYPE_WORDS.get(self.type, self.type.__name__)
      raise UserError(f"{key} must be {words}, got '{text}'") from None

  @property
  def range_text(self) -> str:
    """The allowed values in words (``any`` when unchecked)."""
    return self.allowed.text if self.allowed is not None else "any"


def setting(
  default: Any,
  allowed: Range | None,
  help: str,
  *,
  labelled: bool = False,
  measured: bool = True,
  later: bool = False,
  settable: bool = True,
) -> Any:
  """A dataclass field that declares a setting.

  Args:
    default: its value when nothing sets it (``dataclasses.MISSING``: none,
      the value must be given).
    allowed: the values it may take (None: any value of its type).
    help: one line for ``--help``, ``suites show`` and the docs.
    labelled: the run's protocol label shows it (``+NAME=VALUE``) when it is
      not at its default: runs that differ in it measure a different thing.
    measured: False for settings that do not change what a run measures
      (runs that differ only in them are pooled without a warning).
    later: it was added after runs were first recorded; a stored record
      that lacks it ran with `default`, and still matches a new config.
    settable: ``--set`` may change it (False: derived, e.g. from the budget).
  """
  meta = {_KEY: (allowed, help, labelled, measured, later, settable)}
  return dataclasses.field(default=default, metadata=meta)


def declared(cls: type) -> tuple[Setting, ...]:
  """The settings declared by the fields of dataclass `cls`, in order."""
  out = []
  for f in dataclasses.fields(cls):
    if _KEY not in f.metadata:
      continue
    allowed, help_line, labelled, measured, later, settable = f.metadata[_KEY]
    kind = f.type if isinstance(f.type, type) else _type_of(f.type, f.default)
    out.append(
      Setting(f.name, kind, f.default, allowed, help_line, labelled, measured, later, settable)
    )
  return tuple(out)


def _type_of(annotation: Any, default: Any) -> type:
  """The scalar type of a field annotated as text (``"int | None"``)."""
  text = str(annotation)
  for kind in (bool, int, float, str):
    if text.split("|")[0].strip() == kind.__name__:
      return kind
  return type(default)


def by_name(cls: type) -> dict[str, Setting]:
  """:func:`declared` as ``{name: Setting}``."""
  return {s.name: s for s in declared(cls)}


def markdown_table(settings: tuple[Setting, ...], prefix: str) -> str:
  """The docs' table of `settings`: name (``PREFIX.NAME``), default, range,
  whether ``--set`` may change it, meaning."""
  lines = ["| setting | default | allowed | `--set` | meaning |", "|---|---|---|---|---|"]
  for s in settings:
    default = "(none)" if s.default is None else f"`{s.default!r}`"
    default = "(required)" if s.default is dataclasses.MISSING else default
    meaning = s.help
    if s.labelled:
      meaning += f"; shown in the run's label (`+{s.name}=VALUE`) when not at its default"
    settable = "yes" if s.settable else "no"
    lines.append(f"| `{prefix}.{s.name}` | {default} | {s.range_text} | {settable} | {meaning} |")
  return "\n".join(lines) + "\n"
