"""Rule manifests: the TOML files in ``rules/`` that describe each update rule.

A manifest names a rule, says where its weights come from (for learned rules)
and holds the settings it is used with, in four tables: ``hyperparams``,
``rule``, ``agent`` and ``optimizer``. A ``[suites.NAME]`` table overrides
settings for one suite with dotted keys such as ``"optimizer.learning_rate"``.

Everything here is pure: reading manifests never touches the network or the
cache. Every problem is reported as a one-line :class:`UserError`.
"""

import copy
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from disco_eval import paths
from disco_eval.config.train import OPTIMIZER_SETTINGS, TRAIN_KEYS
from disco_eval.errors import UserError

SETTINGS_TABLES = ("hyperparams", "rule", "agent", "optimizer", "train")
REQUIRED_FIELDS = ("name", "kind", "category", "description", "licence", "citation")
OPTIONAL_FIELDS = (
  "architecture",
  "source_url",
  "filename",
  "sha256",
  "discovered_note",
  "discovered_near_note",
  "module",
)
LIST_FIELDS = ("discovered_on", "discovered_near")
KNOWN_FIELDS = (
  REQUIRED_FIELDS + OPTIONAL_FIELDS + LIST_FIELDS + SETTINGS_TABLES + ("suites", "sources")
)
# What kind of rule a manifest describes (shown by `rules list` and in every report):
# meta-learned with a weights file, meta-learned and published as a closed formula, or designed
# by hand. A discovered rule names the environments it was discovered on (`discovered_on`): an
# entry equal to a suite name (e.g. "procgen") marks results of the rule on that suite as
# "not held out"; other entries (e.g. "dmlab-30") name benchmarks disco-eval does not run.
# `discovered_near` lists suites that are not discovery environments but near relatives of one
# (e.g. MinAtar's miniatures of Atari games for a rule discovered on Atari-57): held out "near",
# sourced in `discovered_near_note`.
CATEGORIES = {
  "discovered-weights": "discovered (learned weights)",
  "discovered-closed-form": "discovered (closed form)",
  "hand-designed": "hand-designed",
}
# The keys the optimiser (disco_eval.train.optim) and the loop read, as declared
# in disco_eval.config.train. The
# [hyperparams] and [rule] keys are declared by each rule kind's settings
# dataclass (disco_eval.rules.registry); the [agent] keys depend on the torso.
OPTIMIZER_KEYS = tuple(s.name for s in OPTIMIZER_SETTINGS)
DECLARED_KEYS = {"optimizer": OPTIMIZER_KEYS, "train": TRAIN_KEYS}
# Optimiser settings added after runs were first recorded (declared ``later``): every rule's
# [optimizer] table has them, at their defaults unless its manifest sets them, so that
# ``--set optimizer.weight_decay=...`` and ``[suites.NAME]`` tables work for every rule.
LATER_OPTIMIZER_DEFAULTS = {s.name: s.default for s in OPTIMIZER_SETTINGS if s.later}

# The kind of a plug-in rule: its manifest names a Python module (``module``) whose factory
# builds the rule (disco_eval.rules.plugins); the other kinds are built in (rules.registry).
PLUGIN_KIND = "plugin"

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RuleManifest:
  """One update rule as described by its manifest file."""

  name: str
  kind: str
  architecture: str | None
  description: str
  source_url: str | None
  filename: str | None
  sha256: str | None
  licence: str
  citation: str
  category: str = "hand-designed"  # a key of CATEGORIES
  discovered_on: tuple[str, ...] = ()  # environments the rule was discovered on
  discovered_note: str | None = None  # the source of discovered_on
  # Suites near a discovery environment (held out "near"), and why.
  discovered_near: tuple[str, ...] = ()
  discovered_near_note: str | None = None
  module: str | None = None  # a plug-in's factory: "FILE.py:FUNCTION" or "package.module:FUNCTION"
  hyperparams: dict = field(default_factory=dict)
  rule: dict = field(default_factory=dict)
  agent: dict = field(default_factory=dict)
  optimizer: dict = field(default_factory=dict)
  train: dict = field(default_factory=dict)  # loop settings over the protocol's (e.g. PPO)
  suites: dict = field(default_factory=dict)
  # Where a setting's value comes from: ``"table.key"`` -> text for the manifest's own tables,
  # ``suites.NAME`` -> {``"table.key"`` -> text} for its ``[suites.NAME]`` overrides.
  sources: dict = field(default_factory=dict)
  path: Path = Path()

  @property
  def category_label(self) -> str:
    """The category in words, e.g. "discovered (learned weights)"."""
    return CATEGORIES[self.category]

  def held_out_on(self, suite: str) -> bool:
    """False where `suite` is one of the rule's discovery environments."""
    return suite not in self.discovered_on

  def held_out_label(self, suite: str) -> str:
    """``no`` (a discovery environment), ``near`` (a near relative of one) or ``yes``."""
    if not self.held_out_on(suite):
      return "no"
    return "near" if suite in self.discovered_near else "yes"

  @property
  def learned(self) -> bool:
    """True for rules with a weights file (discovered rules)."""
    return self.filename is not None

  def settings(self) -> dict[str, dict[str, Any]]:
    """The manifest's own settings tables, a deep copy ``{"hyperparams": ...,
    "rule": ..., "agent": ..., "optimizer": ..., "train": ...}``; the manifest
    itself is never changed. A run's tables for a suite, with the suite's and
    the user's overrides, come from :func:`disco_eval.config.resolve.rule_settings`
    (the one path from manifests to a run's settings)."""
    return {name: copy.deepcopy(getattr(self, name)) for name in SETTINGS_TABLES}


def apply_overrides(
  tables: dict[str, dict[str, Any]],
  overrides: Mapping[str, object],
  where: str,
) -> dict[str, dict[str, Any]]:
  """A copy of `tables` with dotted-key `overrides` applied: ``{"table.key":
  value}``, each value of the type of the default (an int may set a float; a
  string is read as a TOML value, so ``"1e-3"`` or ``"[64, 64]"`` work)."""
  result = copy.deepcopy(tables)
  for dotted, value in overrides.items():
    table, key = split_setting_key(tables, dotted, where)
    result[table][key] = coerce_setting(value, tables[table][key], dotted, where)
  return result


def split_setting_key(
  tables: Mapping[str, Mapping[str, Any]], dotted: str, where: str
) -> tuple[str, str]:
  """Split ``"table.key"`` and check that both parts exist in `tables`."""
  table, dot, key = str(dotted).partition(".")
  if not dot or table not in tables:
    valid = ", ".join(sorted(tables))
    raise UserError(
      f"{where}: unknown setting '{dotted}'; use TABLE.KEY with TABLE one of: {valid}"
    )
  if key not in tables[table]:
    valid = ", ".join(sorted(tables[table])) or "(none)"
    raise UserError(f"{where}: unknown setting '{dotted}'; valid keys in [{table}]: {valid}")
  return table, key


def coerce_setting(value: object, default: object, dotted: str, where: str) -> Any:
  """`value` converted to the type of `default`, or a UserError."""
  if isinstance(value, str) and not isinstance(default, str):
    value = _parse_toml_value(value, dotted, where)
  expected = _type_name(default)
  if isinstance(default, bool):
    ok = isinstance(value, bool)
  elif isinstance(default, int):
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif isinstance(default, float):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    value = float(value) if ok else value
  elif isinstance(default, list):
    ok = isinstance(value, (list, tuple))
    value = list(value) if ok else value
    if ok and default:
      value = [coerce_setting(v, default[0], dotted, where) for v in value]
  else:
    ok = isinstance(value, type(default))
  if not ok:
    raise UserError(
      f"{where}: setting '{dotted}' takes {expected} (default {default!r}), got {value!r}"
    )
  return value


def _parse_toml_value(text: str, dotted: str, where: str) -> Any:
  """Read `text` as a TOML value (``"3e-4"``, ``"true"``, ``"[1, 2]"``)."""
  try:
    return tomllib.loads(f"v = {text}")["v"]
  except tomllib.TOMLDecodeError:
    raise UserError(f"{where}: can't read {text!r} as a value for setting '{dotted}'") from None


def _type_name(value: object) -> str:
  """A short English name of `value`'s type, for error messages."""
  names = {
    bool: "true/false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
  }
  return names.get(type(value), type(value).__name__)


def list_rule_manifests() -> list[RuleManifest]:
  """All built-in rule manifests, sorted by name."""
  manifests = [read_rule_manifest(path) for path in _manifest_files()]
  return sorted(manifests, key=lambda m: m.name)


def known_rule_names() -> list[str]:
  """Names of the built-in rules (manifest file stems), sorted."""
  return sorted(path.stem for path in _manifest_files())


def is_valid_name(name: str) -> bool:
  """Whether `name` is a valid rule name (as manifests and ``--rule NAME=`` use)."""
  return bool(_NAME_RE.fullmatch(name))


def load_rule_manifest(name: str) -> RuleManifest:
  """The manifest of rule `name`; a UserError listing known rules if none."""
  path = paths.manifest_dir("rules") / f"{name}.toml"
  if not _NAME_RE.fullmatch(name) or not path.is_file():
    known = ", ".join(known_rule_names()) or "(none)"
    raise UserError(
      f"unknown rule '{name}'; known rules: {known} (or pass a checkpoint path ending in .npz "
      "or a rule manifest ending in .toml)"
    )
  return read_rule_manifest(path)


def load_manifest_file(path: Path) -> RuleManifest:
  """A rule manifest given by its path (``--rule PATH.toml``, e.g. a plug-in's); a UserError
  if it is missing or its name is a built-in rule's (unless it is that rule's own file)."""
  path = Path(path).expanduser()
  if not path.is_file():
    raise UserError(f"rule manifest not found: {path}; check the path given to --rule")
  manifest = read_rule_manifest(path.resolve())
  builtin = paths.manifest_dir("rules") / f"{manifest.name}.toml"
  if builtin.is_file() and builtin.resolve() != path.resolve():
    raise UserError(
      f"{path}: rule name '{manifest.name}' is a built-in rule's; rename the manifest "
      "(and its 'name') so that results of the two are not mixed"
    )
  return manifest


def read_rule_manifest(path: Path) -> RuleManifest:
  """Parse and validate one manifest file."""
  path = Path(path)
  try:
    with path.open("rb") as f:
      data = tomllib.load(f)
  except tomllib.TOMLDecodeError as e:
    raise UserError(f"{path}: invalid TOML: {_one_line(str(e))}") from None
  except OSError as e:
    raise UserError(f"can't read manifest {path}: {e.strerror or e}") from None
  return manifest_from_dict(data, path)


def manifest_from_dict(data: Mapping[str, Any], path: Path) -> RuleManifest:
  """Validate the parsed TOML `data` of `path` and build a RuleManifest."""
  unknown = sorted(set(data) - set(KNOWN_FIELDS))
  if unknown:
    raise UserError(
      f"{path}: unknown field '{unknown[0]}'; valid fields: {', '.join(KNOWN_FIELDS)}"
    )
  for key in REQUIRED_FIELDS:
    if key not in data:
      raise UserError(f"{path}: missing required field '{key}'")
  for key in REQUIRED_FIELDS + OPTIONAL_FIELDS:
    if key in data and not (isinstance(data[key], str) and data[key].strip()):
      raise UserError(f"{path}: field '{key}' must be a non-empty string")
  for key in SETTINGS_TABLES + ("suites",):
    if not isinstance(data.get(key, {}), dict):
      raise UserError(f"{path}: field '{key}' must be a table ([{key}])")
  _check_name(data["name"], path)
  _check_weights_fields(data, path)
  _check_module(data, path)
  discovered_on = _check_discovery(data, path)
  tables = {key: dict(data.get(key, {})) for key in SETTINGS_TABLES}
  _check_declared_keys(tables, path)
  for key, default in LATER_OPTIMIZER_DEFAULTS.items():
    tables["optimizer"].setdefault(key, default)
  suites = _check_suites(data.get("suites", {}), tables, path)
  return RuleManifest(
    name=data["name"],
    kind=data["kind"],
    architecture=data.get("architecture"),
    description=data["description"],
    source_url=data.get("source_url"),
    filename=data.get("filename"),
    sha256=data.get("sha256"),
    licence=data["licence"],
    citation=data["citation"],
    category=data["category"],
    discovered_on=discovered_on,
    discovered_note=data.get("discovered_note"),
    discovered_near=_check_near(data, path),
    discovered_near_note=data.get("discovered_near_note"),
    module=data.get("module"),
    suites=suites,
    sources=_check_sources(data.get("sources", {}), tables, suites, path),
    path=path,
    **tables,
  )


def _check_name(name: str, path: Path) -> None:
  """The rule name must be simple and match the file name."""
  if not _NAME_RE.fullmatch(name):
    raise UserError(f"{path}: field 'name' must use letters, digits, '_', '.' or '-', got {name!r}")
  if path.suffix == ".toml" and path.stem != name:
    raise UserError(
      f"{path}: field 'name' is {name!r} but the file is named {path.name}; make them match"
    )


def _check_discovery(data: Mapping[str, Any], path: Path) -> tuple[str, ...]:
  """The category must be known; discovered rules say where (hand-designed ones don't)."""
  category = data["category"]
  if category not in CATEGORIES:
    raise UserError(
      f"{path}: field 'category' is {category!r}; valid categories: {', '.join(CATEGORIES)}"
    )
  found = data.get("discovered_on", [])
  if not isinstance(found, list) or not all(isinstance(x, str) and x.strip() for x in found):
    raise UserError(f"{path}: field 'discovered_on' must be a list of environment names")
  if category == "hand-designed" and found:
    raise UserError(f"{path}: a hand-designed rule has no 'discovered_on'; remove it")
  if category != "hand-designed" and not found:
    raise UserError(
      f"{path}: a {category} rule needs 'discovered_on' (the environments it was discovered on,"
      ' e.g. ["atari-57", "procgen"]) so reports can mark results that are not held out'
    )
  return tuple(found)


def _check_near(data: Mapping[str, Any], path: Path) -> tuple[str, ...]:
  """`discovered_near`: suite names, with their source in `discovered_near_note`."""
  found = data.get("discovered_near", [])
  if not isinstance(found, list) or not all(isinstance(x, str) and x.strip() for x in found):
    raise UserError(f"{path}: field 'discovered_near' must be a list of suite names")
  if found and not data.get("discovered_near_note"):
    raise UserError(f"{path}: 'discovered_near' needs its source in 'discovered_near_note'")
  return tuple(found)


def _check_module(data: Mapping[str, Any], path: Path) -> None:
  """A plug-in (``kind = "plugin"``) names its factory as ``module = "SOURCE:FUNCTION"``; a
  rule of a built-in kind has no module."""
  module = data.get("module")
  if data["kind"] == PLUGIN_KIND and module is None:
    raise UserError(
      f"{path}: a kind = \"{PLUGIN_KIND}\" rule needs field 'module', e.g. "
      'module = "my_rule.py:make_rule" (a file beside the manifest) or "package.module:make_rule"'
    )
  if module is None:
    return
  if data["kind"] != PLUGIN_KIND:
    raise UserError(
      f"{path}: field 'module' is for plug-in rules; set kind = \"{PLUGIN_KIND}\" "
      f"(not {data['kind']!r}) or remove 'module'"
    )
  source, colon, function = module.rpartition(":")
  if not colon or not source.strip() or not function.isidentifier():
    raise UserError(
      f"{path}: field 'module' is {module!r}; write SOURCE:FUNCTION, e.g. "
      '"my_rule.py:make_rule" or "package.module:make_rule"'
    )


def _check_weights_fields(data: Mapping[str, Any], path: Path) -> None:
  """A learned rule needs architecture and sha256; names must be plain."""
  if "filename" in data:
    for key in ("architecture", "sha256"):
      if key not in data:
        raise UserError(f"{path}: field '{key}' is required when 'filename' is given")
    filename = data["filename"]
    if Path(filename).name != filename or filename.startswith("."):
      raise UserError(f"{path}: field 'filename' must be a plain file name, got {filename!r}")
  if "sha256" in data and not _SHA256_RE.fullmatch(data["sha256"]):
    raise UserError(
      f"{path}: field 'sha256' must be 64 lowercase hex digits, got {data['sha256']!r}"
    )
  if "source_url" in data and "filename" not in data:
    raise UserError(f"{path}: field 'source_url' needs a 'filename' to save it as")


def _check_sources(
  sources: Any, tables: Mapping[str, Mapping[str, Any]], suites: Mapping[str, Any], path: Path
) -> dict:
  """The ``[sources]`` table, checked: each ``"table.key"`` names a setting of
  the manifest (``[sources.suites.NAME]``: one its ``[suites.NAME]`` sets),
  each source a non-empty string."""
  if not isinstance(sources, dict):
    raise UserError(f"{path}: field 'sources' must be a table ([sources])")
  out: dict = {}
  for key, text in sources.items():
    if key == "suites" and isinstance(text, dict):
      out["suites"] = {}
      for suite, table in text.items():
        where = f"{path}: [sources.suites.{suite}]"
        if suite not in suites or not isinstance(table, dict):
          raise UserError(f"{where}: no [suites.{suite}] table sets anything to cite")
        for dotted, line in table.items():
          if dotted not in suites[suite] or not (isinstance(line, str) and line.strip()):
            raise UserError(f"{where}: '{dotted}' is not set by [suites.{suite}] or has no text")
        out["suites"][suite] = dict(table)
      continue
    split_setting_key(tables, key, f"{path}: [sources]")
    if not (isinstance(text, str) and text.strip()):
      raise UserError(f"{path}: [sources] '{key}' must be a non-empty string")
    out[key] = text
  return out


def _check_declared_keys(tables: Mapping[str, Mapping[str, Any]], path: Path) -> None:
  """Every key of the [optimizer] and [train] tables is one that is read."""
  for table, valid in DECLARED_KEYS.items():
    for key in tables.get(table, {}):
      if key not in valid:
        raise UserError(
          f"{path}: unknown key '{key}' in [{table}]; valid keys: " + ", ".join(valid)
        )


def _check_suites(
  suites: Mapping[str, Any],
  tables: dict[str, dict[str, Any]],
  path: Path,
) -> dict[str, dict[str, Any]]:
  """Check every ``[suites.NAME]`` override against the settings tables.

  A ``[suites.NAME.protocols.PROTOCOL]`` table holds overrides for one
  protocol of the suite only (applied after the suite's); they are kept
  under the key ``NAME/PROTOCOL``."""
  checked = {}
  for suite, overrides in suites.items():
    where = f"{path}: [suites.{suite}]"
    if not isinstance(overrides, dict):
      raise UserError(f'{where} must be a table of "table.key" = value')
    overrides = dict(overrides)
    by_protocol = overrides.pop("protocols", {})
    if not isinstance(by_protocol, dict):
      raise UserError(f"{where}: protocols must be a table of [suites.{suite}.protocols.NAME]")
    flat = _flatten(overrides)
    apply_overrides(tables, flat, where)
    checked[suite] = flat
    for proto, proto_over in by_protocol.items():
      pwhere = f"{where[:-1]}.protocols.{proto}]"
      if not isinstance(proto_over, dict):
        raise UserError(f'{pwhere} must be a table of "table.key" = value')
      pflat = _flatten(proto_over)
      apply_overrides(tables, pflat, pwhere)
      checked[f"{suite}/{proto}"] = pflat
  return checked


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested tables as dotted keys (TOML reads bare ``a.b = 1`` as nested)."""
  flat = {}
  for key, value in table.items():
    dotted = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{dotted}."))
    else:
      flat[dotted] = value
  return flat


def _manifest_files() -> list[Path]:
  """The ``*.toml`` files in the rules manifest folder (none if it's absent)."""
  folder = paths.manifest_dir("rules")
  if not folder.is_dir():
    return []
  return sorted(folder.glob("*.toml"))


def _one_line(text: str) -> str:
  """`text` with line breaks folded into spaces."""
  return " ".join(text.split())
