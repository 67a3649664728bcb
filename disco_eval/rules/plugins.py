"""Plug-in rules: a user's rule as a manifest and a Python module, outside the package.

A plug-in manifest (``kind = "plugin"``, any path: ``--rule PATH.toml``) names its
factory with ``module``:

* ``"FILE.py:FUNCTION"``: a Python file, relative to the manifest's folder (or absolute);
* ``"package.module:FUNCTION"``: a module on ``sys.path`` (e.g. an installed package).

The factory is called as the built-in kinds' ``from_settings`` are
(:func:`disco_eval.rules.registry.build_rule`)::

  rule = FUNCTION(settings, name=NAME, axis_name=AXIS)

with ``settings`` the manifest's tables after every override (``{"hyperparams": {...},
"rule": {...}, "agent": {...}, "optimizer": {...}, "train": {...}}``, plain dicts), and
must return an object with the members of :class:`disco_eval.rules.base.UpdateRule`
(:data:`REQUIRED_MEMBERS`). The factory reads its own keys: to have an unknown or a missing
key reported as a one-line error it may declare them as a frozen dataclass and fill it with
:func:`disco_eval.config.schema.from_tables`, as the built-in rules do (``examples/``); a
factory that reads the dicts itself is allowed. A sweep builds each plug-in once while
planning, so a bad key or a broken factory fails before any record is opened.

Installed packages register rules under the entry-point group :data:`GROUP`: each entry
point, named like its rule, is a function of no arguments returning a manifest path or a
manifest dict (whose ``module`` is then an importable ``package.module:FUNCTION``).

What a run records of a plug-in (:class:`PluginModule`): the factory as written, the sha256
of the factory's module file and the version of the distribution that provides it (else the
module's ``__version__``), so that a changed source is a changed setting on resume.
"""

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from disco_eval.config import manifests
from disco_eval.config.manifests import RuleManifest
from disco_eval.errors import UserError
from disco_eval.rules.base import UpdateRule

GROUP = "disco_eval.rules"
# What a plug-in's factory must return: the members of rules.base.UpdateRule.
REQUIRED_MEMBERS = (
  "name",
  "num_epochs",
  "num_minibatches",
  "output_spec",
  "init_state",
  "targets",
  "loss",
)
CALLABLE_MEMBERS = ("output_spec", "init_state", "targets", "loss")

# The types of the plain members of the contract (checked before any record).
_MEMBER_TYPES: dict[str, Callable[[Any], bool]] = {
  "name": lambda v: isinstance(v, str) and bool(v),
  "num_epochs": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
  "num_minibatches": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
}

# File modules loaded in this process, by (resolved path, sha256 of the source).
_LOADED: dict[tuple[str, str], ModuleType] = {}


@dataclasses.dataclass(frozen=True)
class PluginModule:
  """Where a plug-in's code came from, as a run records it."""

  factory: str  # the manifest's `module`, as written
  file: Path | None  # the factory's module file
  sha256: str | None  # of that file's bytes
  version: str | None  # of the distribution providing it, else the module's __version__
  sources_sha256: str | None = None  # of every .py file in its folder (_sources_sha256)

  def to_json(self) -> dict[str, Any]:
    """What ``config.json`` stores under ``rule.module`` (the file's location is the
    record's ``rule.source``, the manifest)."""
    doc = {"factory": self.factory, "sha256": self.sha256, "version": self.version}
    if self.sources_sha256 is not None:
      doc["sources_sha256"] = self.sources_sha256
    return doc


def is_plugin(manifest: RuleManifest) -> bool:
  """Whether `manifest` is a plug-in's (it names a module)."""
  return manifest.module is not None


def _split(manifest: RuleManifest) -> tuple[str, str]:
  """(SOURCE, FUNCTION) of the manifest's ``module = "SOURCE:FUNCTION"``."""
  source, _, function = str(manifest.module).rpartition(":")
  return source, function


def _is_file_source(source: str) -> bool:
  """Whether SOURCE names a file ("x.py", "dir/x.py") rather than a module."""
  return source.endswith(".py") or "/" in source or os.sep in source


def module_file(manifest: RuleManifest) -> Path | None:
  """The factory's file for a ``FILE.py:FUNCTION`` module (relative to the manifest's
  folder), None for an importable ``package.module:FUNCTION``."""
  source, _ = _split(manifest)
  if not _is_file_source(source):
    return None
  path = Path(source).expanduser()
  return path if path.is_absolute() else manifest.path.parent / path


def _sha256(path: Path) -> str:
  """The hex sha256 of the bytes of `path`."""
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _describe(error: BaseException, file: Path | str | None) -> str:
  """`error` in one line, with the line of `file` it was raised at where known."""
  text = " ".join(str(error).split()) or "(no message)"
  line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
  if line is None and file is not None:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == file]
    line = frames[-1].lineno if frames else None
  return f"{type(error).__name__}: {text}" + (f" (line {line})" if line else "")


def _import_file(manifest: RuleManifest, file: Path) -> ModuleType:
  """The module of a plug-in's source file, loaded once per version of its source."""
  if not file.is_file():
    raise UserError(
      f"{manifest.path}: module file {file} not found; fix 'module' (a path relative to the "
      "manifest's folder, then ':FUNCTION')"
    )
  key = (str(file.resolve()), _sha256(file))
  if key in _LOADED:
    return _LOADED[key]
  name = "disco_eval_plugin_" + re.sub(r"\W", "_", file.stem) + "_" + key[1][:12]
  spec = importlib.util.spec_from_file_location(name, file)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # dataclasses and pickle look classes up by module name
  try:
    spec.loader.exec_module(module)
  except Exception as e:
    sys.modules.pop(name, None)
    raise UserError(
      f"{manifest.path}: importing {file} failed: {_describe(e, file)}; fix the module"
    ) from None
  _LOADED[key] = module
  return module


def _import_name(manifest: RuleManifest) -> ModuleType:
  """The importable module of a ``package.module:FUNCTION`` plug-in."""
  source, _ = _split(manifest)
  try:
    return importlib.import_module(source)
  except ModuleNotFoundError as e:
    if e.name and (source == e.name or source.startswith(e.name + ".")):
      raise UserError(
        f"{manifest.path}: module '{source}' not found; install the package that provides "
        'it, or name a file: module = "my_rule.py:FUNCTION"'
      ) from None
    raise UserError(
      f"{manifest.path}: importing {source} failed: {_describe(e, None)}; fix the module"
    ) from None
  except Exception as e:
    raise UserError(
      f"{manifest.path}: importing {source} failed: {_describe(e, None)}; fix the module"
    ) from None


def _version(module: ModuleType, importable: bool) -> str | None:
  """The version of the distribution providing `module` (importable modules), else the
  module's ``__version__`` (a string), else None."""
  if importable:
    top = module.__name__.partition(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
      try:
        return importlib.metadata.version(dist)
      except importlib.metadata.PackageNotFoundError:
        continue
  found = getattr(module, "__version__", None)
  return found if isinstance(found, str) else None


def load_factory(manifest: RuleManifest) -> tuple[Callable[..., Any], PluginModule]:
  """The plug-in's factory and where it came from; one-line UserErrors for a missing
  file or module, an import error or a missing function."""
  file = module_file(manifest)
  module = _import_file(manifest, file) if file is not None else _import_name(manifest)
  source, function = _split(manifest)
  factory = getattr(module, function, None)
  if not callable(factory):
    defined = sorted(
      n
      for n, v in vars(module).items()
      if callable(v) and not n.startswith("_") and getattr(v, "__module__", "") == module.__name__
    )
    has = f"; it defines: {', '.join(defined)}" if defined else ""
    raise UserError(
      f"{manifest.path}: {source} has no function '{function}'{has}; fix 'module' "
      "(SOURCE:FUNCTION) or define it"
    )
  path = file if file is not None else Path(getattr(module, "__file__", None) or "")
  sha = _sha256(path) if path.is_file() else None
  identity = PluginModule(
    manifest.module,
    path if sha else None,
    sha,
    _version(module, not file),
    _sources_sha256(path, module) if sha else None,
  )
  return factory, identity


# At most this many source files are hashed for a plug-in's folder.
MAX_SOURCES = 1000


def _source_folder(path: Path, module: ModuleType) -> Path:
  """The folder a plug-in loads its own code from: its file's folder, or the
  top package of an importable module (a lone top-level module: its file)."""
  package = (getattr(module, "__package__", None) or "").split(".")[0]
  if package:
    top = sys.modules.get(package)
    if top is not None and getattr(top, "__file__", None):
      return Path(top.__file__).parent
  if getattr(module, "__package__", None) == "" and path.parent.name == "site-packages":
    return path
  return path.parent


def _sources_sha256(path: Path, module: ModuleType) -> str:
  """sha256 over the relative names and bytes of every ``.py`` file in the
  plug-in's folder (subfolders too, hidden ones and __pycache__ aside): an
  edit to a helper module it imports changes the recorded code."""
  folder = _source_folder(path, module)
  files = [folder] if folder.is_file() else []
  if folder.is_dir():
    for root, dirs, names in os.walk(folder):
      dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
      files += [Path(root) / n for n in sorted(names) if n.endswith(".py")]
      if len(files) > MAX_SOURCES:
        break
  digest = hashlib.sha256()
  for item in files[:MAX_SOURCES]:
    name = item.name if folder.is_file() else str(item.relative_to(folder))
    digest.update(name.encode() + b"\0" + item.read_bytes() + b"\0")
  return digest.hexdigest()


def module_identity(manifest: RuleManifest) -> PluginModule:
  """Where the plug-in's code comes from (it is imported to find out)."""
  return load_factory(manifest)[1]


def check_rule(rule: Any, manifest: RuleManifest) -> None:
  """A UserError unless `rule` has the members of the rule contract (rules/base.py)."""
  missing = [m for m in REQUIRED_MEMBERS if not hasattr(rule, m)]
  missing += [m for m in CALLABLE_MEMBERS if m not in missing and not callable(getattr(rule, m))]
  if missing:
    raise UserError(
      f"{manifest.path}: {manifest.module} returned a {type(rule).__name__} without "
      f"{', '.join(missing)}; return an update rule with {', '.join(REQUIRED_MEMBERS)} "
      "(the contract in disco_eval/rules/base.py)"
    )
  wrong = [m for m, ok in _MEMBER_TYPES.items() if not ok(getattr(rule, m))]
  if wrong:
    shown = ", ".join(f"{m} = {getattr(rule, m)!r}" for m in wrong)
    raise UserError(
      f"{manifest.path}: {manifest.module} returned a rule with {shown}; name must be a "
      "non-empty string and num_epochs, num_minibatches integers >= 1 "
      "(the contract in disco_eval/rules/base.py)"
    )


def build(
  manifest: RuleManifest, settings: dict[str, Any], name: str, axis_name: str | None = None
) -> UpdateRule:
  """The plug-in's rule: its factory called with the settings tables, checked."""
  factory, identity = load_factory(manifest)
  try:
    rule = factory(settings, name=name, axis_name=axis_name)
  except UserError:
    raise
  except Exception as e:
    raise UserError(
      f"{manifest.path}: {manifest.module}(settings, name=, axis_name=) raised "
      f"{_describe(e, identity.file)}; fix the factory or the manifest's settings"
    ) from None
  check_rule(rule, manifest)
  return _with_acting_hook(rule, manifest)


def _with_acting_hook(rule: Any, manifest: RuleManifest) -> UpdateRule:
  """`rule` with the contract's optional members, where the plug-in does not
  define them: ``behaviour_logits`` None (act from the agent's logits),
  ``loss_taken`` None (the learner differentiates ``loss``) and
  ``minibatch_transitions`` False (minibatches of whole trajectories)."""
  defaults = {"behaviour_logits": None, "loss_taken": None, "minibatch_transitions": False}
  missing = {name: value for name, value in defaults.items() if not hasattr(rule, name)}
  if not missing:
    return rule
  try:
    for name, value in missing.items():
      object.__setattr__(rule, name, value)
  except (AttributeError, TypeError):
    raise UserError(
      f"{manifest.path}: {manifest.module} returned a {type(rule).__name__} without "
      "behaviour_logits; give its class `behaviour_logits = None` (act from the agent's "
      "logits) or a method behaviour_logits(agent_out, step, evaluation), and `loss_taken = None`"
    ) from None
  return rule


def _entry_points() -> list[importlib.metadata.EntryPoint]:
  """The entry points of :data:`GROUP` of every installed distribution, by name."""
  return sorted(importlib.metadata.entry_points(group=GROUP), key=lambda ep: ep.name)


def _entry_point_manifest(ep: importlib.metadata.EntryPoint) -> RuleManifest:
  """The manifest an entry point gives (a path or a dict), checked."""
  where = f"entry point '{ep.name}' ({ep.value}) of group {GROUP}"
  try:
    value = ep.load()()
  except Exception as e:
    raise UserError(f"{where} failed: {_describe(e, None)}; fix or reinstall its package") from None
  if isinstance(value, (str, os.PathLike)):
    manifest = manifests.load_manifest_file(Path(value))
  elif isinstance(value, Mapping):
    manifest = manifests.manifest_from_dict(value, Path(f"<{where}>"))
    if manifest.name in manifests.known_rule_names():
      raise UserError(f"{where}: rule name '{manifest.name}' is a built-in rule's; rename it")
    if is_plugin(manifest) and module_file(manifest) is not None:
      raise UserError(f"{where}: a manifest dict names its module as package.module:FUNCTION")
  else:
    raise UserError(
      f"{where} returned a {type(value).__name__}; return a manifest path or a manifest dict"
    )
  if manifest.name != ep.name:
    raise UserError(f"{where} gives rule '{manifest.name}'; name the entry point like its rule")
  return manifest


def entry_point_manifests() -> tuple[list[RuleManifest], list[str]]:
  """The rules installed packages register (sorted by name), and one line per entry point
  that could not be read (so that one broken package does not hide the others)."""
  found, problems = [], []
  for ep in _entry_points():
    try:
      found.append(_entry_point_manifest(ep))
    except UserError as e:
      problems.append(str(e))
  return found, problems


def entry_point_manifest(name: str) -> RuleManifest | None:
  """The manifest of the installed rule `name`, None if no package registers one."""
  for ep in _entry_points():
    if ep.name == name:
      return _entry_point_manifest(ep)
  return None
