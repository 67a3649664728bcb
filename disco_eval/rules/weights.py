"""Rule weights: download, verify and load the weights of learned rules.

These are the frozen parameters of a learned rule (Disco103's meta-network),
not the training state of a run: that is a run's training checkpoint, see
:mod:`disco_eval.store.training_checkpoint`.

Weights live in the cache (``paths.home()/rules/FILENAME``). Downloads go to a
temporary file next to the final one and are renamed into place only once
their sha256 matches the manifest, so the cache never holds a partial or
wrong file written by us. Loading refuses pickled data and checks every array
against the architecture's table of keys and shapes.
"""

import dataclasses
import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from disco_eval import __version__, paths
from disco_eval.config.manifests import (
  RuleManifest,
  is_valid_name,
  known_rule_names,
  load_manifest_file,
  load_rule_manifest,
)
from disco_eval.errors import UserError
from disco_eval.rules import plugins, variants
from disco_eval.rules.architectures import expected_shapes

CHUNK_SIZE = 1 << 20
# The architecture and settings of a weights file given by path (``--rule PATH.npz``).
FILE_RULE_BASE = "disco103"

Params = dict[str, dict[str, np.ndarray]]


def sha256_file(path: str | os.PathLike) -> str:
  """The hex sha256 of the file at `path`, read in chunks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
      digest.update(chunk)
  return digest.hexdigest()


def cached_path(manifest: RuleManifest) -> Path:
  """Where the weights of a learned rule live in the cache."""
  if manifest.filename is None:
    raise UserError(f"rule '{manifest.name}' is hand-designed and has no weights file")
  return paths.home() / "rules" / manifest.filename


def pull(
  manifest: RuleManifest,
  *,
  url: str | None = None,
  force: bool = False,
  timeout: float = 30.0,
) -> Path:
  """Make sure the cache holds the rule's verified weights; return their path.

  A cached file with the right sha256 is kept (unless `force`). A cached file
  with a wrong one is never used nor silently replaced: that is an error
  unless `force`. The download comes from `url` (default: the manifest's
  ``source_url``) and replaces the cached file only once verified.
  """
  dest = cached_path(manifest)
  if dest.exists() and not force:
    check_cached_file(manifest, dest)
    return dest
  source = url or manifest.source_url
  if not source:
    raise UserError(f"rule '{manifest.name}' has no download address; place its weights at {dest}")
  created = _make_parents(dest.parent)
  try:
    _download_verified(manifest, source, dest, timeout)
  except BaseException:
    _remove_empty_dirs(created)
    raise
  return dest


def check_cached_file(manifest: RuleManifest, path: Path) -> str:
  """The sha256 of `path`, or a UserError if it isn't the manifest's."""
  found = sha256_file(path)
  if manifest.sha256 and found != manifest.sha256:
    raise UserError(
      f"checksum mismatch for {path}: expected {manifest.sha256}, found {found}; "
      f"delete it or re-run `disco-eval rules pull {manifest.name} --force`"
    )
  return found


def _download_verified(manifest: RuleManifest, url: str, dest: Path, timeout: float) -> None:
  """Download `url` to a temp file, verify it, then move it onto `dest`."""
  tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
  try:
    with open(tmp, "wb") as out:
      found = _fetch(url, out, dest, timeout, manifest.name)
      out.flush()
      os.fsync(out.fileno())
    if manifest.sha256 and found != manifest.sha256:
      raise UserError(
        f"checksum mismatch for {url}: expected {manifest.sha256}, found {found}; "
        f"the server sent a different file (nothing was saved)"
      )
    os.replace(tmp, dest)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  _fsync_dir(dest.parent)


def _fetch(url: str, out: BinaryIO, dest: Path, timeout: float, name: str = "NAME") -> str:
  """Stream `url` into `out`; return the sha256 of what was received."""
  by_hand = (
    f"download it yourself and place it at {dest}, or import a copy with "
    f"`disco-eval rules pull {name} --file PATH` (or pass `--rule PATH.npz`)"
  )
  request = urllib.request.Request(url, headers={"User-Agent": f"disco-eval/{__version__}"})
  digest = hashlib.sha256()
  received = 0
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      expected = _content_length(response)
      for chunk in iter(lambda: response.read(CHUNK_SIZE), b""):
        out.write(chunk)
        digest.update(chunk)
        received += len(chunk)
  except urllib.error.HTTPError as e:
    raise UserError(
      f"download of {url} failed: HTTP {e.code} {_one_line(str(e.reason))}; {by_hand}"
    ) from None
  except urllib.error.URLError as e:
    raise UserError(f"`disco-eval` can't reach {url}: {_describe(e.reason)}; {by_hand}") from None
  except (TimeoutError, socket.timeout):
    raise UserError(
      f"download of {url} timed out after {timeout:g}s (received {received} bytes); {by_hand}"
    ) from None
  except (http.client.HTTPException, ConnectionError) as e:
    raise UserError(
      f"download of {url} was interrupted after {received} bytes ({_describe(e)}); {by_hand}"
    ) from None
  except OSError as e:
    raise UserError(f"download of {url} failed: {_describe(e)}; {by_hand}") from None
  if expected is not None and received < expected:
    raise UserError(
      f"download of {url} was cut short: received {received} of {expected} bytes; "
      f"try again, or {by_hand}"
    )
  return digest.hexdigest()


def _content_length(response) -> int | None:
  """The response's Content-Length header as an int, if it has a valid one."""
  value = response.headers.get("Content-Length")
  try:
    return int(value) if value is not None else None
  except ValueError:
    return None


def _make_parents(folder: Path) -> list[Path]:
  """Create `folder` and missing parents; return those created, deepest first."""
  missing = []
  current = folder
  while not current.exists():
    missing.append(current)
    if current.parent == current:
      break
    current = current.parent
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"can't create the cache folder {folder}: {_describe(e)}") from None
  return missing


def _remove_empty_dirs(folders: list[Path]) -> None:
  """Remove `folders` (deepest first) if they are still empty."""
  for folder in folders:
    try:
      folder.rmdir()
    except OSError:
      return


def _fsync_dir(folder: Path) -> None:
  """Flush a rename in `folder` to disk where the platform allows it."""
  try:
    fd = os.open(folder, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def load_params(
  path: str | os.PathLike,
  architecture: str = "disco103",
  expected_sha256: str | None = None,
) -> Params:
  """Load and check a weights file; return Haiku-style nested params.

  The flat key ``"a/b/w"`` becomes ``params["a/b"]["w"]``; every value is a
  float32 numpy array. Any problem (missing or corrupt file, checksum, pickled
  data, keys, shapes, dtypes) is a one-line UserError.
  """
  path = Path(path)
  shapes = expected_shapes(architecture)
  if not path.exists():
    raise UserError(f"checkpoint not found: {path}")
  if not path.is_file():
    raise UserError(f"weights file {path} is not a file")
  if expected_sha256 is not None:
    found = sha256_file(path)
    if found != expected_sha256:
      raise UserError(f"checksum mismatch for {path}: expected {expected_sha256}, found {found}")
  arrays = read_npz(path)
  problems = check_arrays(arrays, shapes)
  if problems:
    more = len(problems) - 1
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    raise UserError(
      f"weights file {path} does not match architecture '{architecture}': {problems[0]}{extra}"
    )
  return unflatten({k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})


def read_npz(path: Path) -> dict[str, np.ndarray]:
  """All arrays of the .npz at `path`, refusing pickled data."""
  with open(path, "rb") as f:
    magic = f.read(6)
  if magic.startswith(b"\x93NUMPY"):
    raise UserError(f"weights file {path} is a single .npy array, not an .npz archive")
  if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
    raise UserError(f"weights file {path} is not an .npz archive (corrupt or wrong file)")
  arrays = {}
  try:
    with np.load(path, allow_pickle=False) as npz:
      for key in npz.files:
        arrays[key] = _read_member(npz, key, path)
  except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
    raise UserError(
      f"weights file {path} is corrupt or not an .npz archive ({_describe(e)})"
    ) from None
  return arrays


def _read_member(npz, key: str, path: Path) -> np.ndarray:
  """One array of an open NpzFile, with pickled members refused."""
  try:
    value = npz[key]
  except ValueError as e:
    if "pickle" in str(e).lower():
      raise UserError(
        f"weights file {path} holds pickled data (array '{key}'); "
        "refusing to load it, since unpickling can run arbitrary code"
      ) from None
    raise
  if not isinstance(value, np.ndarray):
    raise UserError(f"weights file {path}: member '{key}' is not a numpy array")
  return value


def check_arrays(arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> list[str]:
  """Every mismatch between `arrays` and the expected `shapes`, as phrases."""
  problems = []
  for key in sorted(set(shapes) - set(arrays)):
    problems.append(f"missing array '{key}' (expected shape {_shape(shapes[key])})")
  for key in sorted(set(arrays) - set(shapes)):
    problems.append(f"unexpected array '{key}' (shape {_shape(arrays[key].shape)})")
  for key in sorted(set(arrays) & set(shapes)):
    value = arrays[key]
    if tuple(value.shape) != tuple(shapes[key]):
      problems.append(
        f"array '{key}' has shape {_shape(value.shape)}, expected {_shape(shapes[key])}"
      )
    elif not np.issubdtype(value.dtype, np.floating):
      problems.append(f"array '{key}' has dtype {value.dtype}, expected floating point")
    elif not np.all(np.isfinite(value)):
      problems.append(f"array '{key}' holds NaN or infinite values")
  return problems


def _shape(shape: tuple[int, ...]) -> str:
  """A shape written as Python writes tuples: ``(16,)``, ``(600, 16)``."""
  return str(tuple(int(d) for d in shape))


def unflatten(flat: dict[str, np.ndarray]) -> Params:
  """Haiku-style nesting: ``"a/b/w"`` -> ``{"a/b": {"w": ...}}``."""
  params: Params = {}
  for key in sorted(flat):
    module, _, name = key.rpartition("/")
    params.setdefault(module, {})[name] = flat[key]
  return params


@dataclass(frozen=True)
class ResolvedRule:
  """A rule ready to use: its manifest, weights (if learned) and provenance."""

  manifest: RuleManifest
  params: Params | None
  sha256: str | None  # of the weights file (learned rules)
  path: Path | None  # the weights file; a manifest given by path (plug-ins)
  label: str
  module: plugins.PluginModule | None = None  # a plug-in's code (see rules.plugins)
  variant: str | None = None  # an input ablation (see rules.variants), in the label too


def resolve_rule(spec: str, *, download: bool = True, among: Sequence[str] = ()) -> ResolvedRule:
  """Turn a rule name, a weights file path or ``NAME=PATH`` into a verified,
  loaded rule.

  * ``NAME=PATH`` (``NAME`` a valid rule name): the weights file at ``PATH``,
    labelled ``NAME``. ``NAME`` may be a known rule's name only when the file
    is that rule's published weights.
  * a spec ending in ``.npz`` (or naming an existing file, or holding a path
    separator): a weights file with Disco103's architecture and settings,
    labelled by its file stem; by its stem and the first 8 hex digits of its
    sha256 (``disco103-1a2b3c4d``) when the stem is a known rule's name but the
    file is not that rule's published weights, or when another file spec of
    `among` (the sweep's rule specs) has the same stem, so that two files
    named alike are never one rule.
  * a spec ending in ``.toml``: a rule manifest (a plug-in's, :mod:`disco_eval.rules.plugins`),
    labelled by its name.
  * otherwise a rule name: learned rules load their cached weights (pulled
    first if missing and `download`), hand-designed rules have no params; a
    name that is not a built-in rule's may be one an installed package
    registers (entry-point group ``disco_eval.rules``).
  * any of the above for a rule of Disco103's architecture, then ``:VARIANT``
    (``disco103:no-yz``): that rule with an input ablation (:mod:`disco_eval.rules.variants`),
    labelled with the same suffix.
  """
  base_spec, variant = variants.split(spec)
  among = [variants.split(other)[0] for other in among]  # a variant shares its base's file
  if variant is not None:
    base = resolve_rule(base_spec, download=download, among=among)
    variants.check_kind(spec, base.manifest.kind)
    return dataclasses.replace(base, label=variants.label(base.label, variant), variant=variant)
  if spec.lower().endswith(".toml"):
    return _resolve_manifest(load_manifest_file(Path(spec)))
  named = _split_named(spec)
  if named is not None:
    return _resolve_file(named[1], named[0])
  if looks_like_path(spec):
    path = Path(spec).expanduser()
    return _resolve_file(path, None, _stem_shared(spec, among))
  if is_valid_name(spec) and spec not in known_rule_names():
    installed = plugins.entry_point_manifest(spec)
    if installed is not None:
      return _resolve_manifest(installed)
  manifest = load_rule_manifest(spec)
  if manifest.filename is None:
    return ResolvedRule(manifest, None, None, None, manifest.name)
  path = cached_path(manifest)
  if not path.exists():
    if not download:
      raise UserError(
        f"rule '{manifest.name}' is not downloaded yet; run "
        f"`disco-eval rules pull {manifest.name}` (or place the file at {path})"
      )
    pull(manifest)
  sha = check_cached_file(manifest, path)
  params = load_params(path, manifest.architecture)
  return ResolvedRule(manifest, params, sha, path, manifest.name)


def _resolve_manifest(manifest: RuleManifest) -> ResolvedRule:
  """A rule of a manifest given by path or by an installed package (a plug-in's code is
  imported here, so that an import error fails first)."""
  if manifest.filename is not None:
    raise UserError(
      f"{manifest.path}: a rule with a weights file is used by name or as --rule NAME=PATH.npz"
    )
  module = plugins.module_identity(manifest) if plugins.is_plugin(manifest) else None
  return ResolvedRule(manifest, None, None, manifest.path, manifest.name, module)


def _split_named(spec: str) -> tuple[str, Path] | None:
  """(NAME, PATH) of a ``NAME=PATH`` spec (UserError for a bad NAME or an
  empty PATH); None for any other spec."""
  name, sep, rest = spec.partition("=")
  if not sep or "/" in name or os.sep in name or Path(spec).expanduser().is_file():
    return None
  if not rest:
    raise UserError(f"--rule {spec}: no file after '='; use --rule NAME=PATH.npz")
  if not is_valid_name(name):
    raise UserError(
      f"--rule {spec}: invalid rule name '{name}'; a name starts with a letter, digit "
      "or '_' and holds only letters, digits, '_', '.' and '-'"
    )
  return name, Path(rest).expanduser()


def _stem_shared(spec: str, among: Sequence[str]) -> bool:
  """Whether another unnamed file spec of `among` has the stem of `spec`."""
  stem = Path(spec).stem
  return any(
    other != spec
    and _split_named(other) is None
    and looks_like_path(other)
    and Path(other).stem == stem
    for other in among
  )


def absolute_spec(spec: str) -> str:
  """`spec` with its weights file's path made absolute (a rule name as is)."""
  named = _split_named(spec)
  if named is not None:
    return f"{named[0]}={os.path.abspath(named[1])}"
  if looks_like_path(spec):
    return os.path.abspath(os.path.expanduser(spec))
  return spec


def looks_like_path(spec: str) -> bool:
  """True if `spec` names a weights file (or ``NAME=PATH``) rather than a rule."""
  if spec.lower().endswith(".npz") or os.sep in spec or "/" in spec:
    return True
  return Path(spec).expanduser().is_file()


def _published_sha(name: str) -> tuple[bool, str | None]:
  """(whether `name` is a known rule, the sha256 of its published weights)."""
  if not is_valid_name(name) or name not in known_rule_names():
    return False, None
  return True, load_rule_manifest(name).sha256


def _file_label(path: Path, sha: str, name: str | None, shared: bool) -> str:
  """The label of a weights file (see :func:`resolve_rule`)."""
  known, published = _published_sha(name or path.stem)
  if name is not None:
    if known and published != sha:
      raise UserError(
        f"--rule {name}={path}: '{name}' is a known rule and this file is not its "
        f"published weights (sha256 {sha[:8]}...); pick another NAME"
      )
    return name
  if (known and published != sha) or shared:
    return f"{path.stem}-{sha[:8]}"
  return path.stem


def _resolve_file(path: Path, name: str | None = None, shared: bool = False) -> ResolvedRule:
  """A weights file used with the Disco103 manifest's settings."""
  if not path.is_file():
    raise UserError(f"checkpoint not found: {path}")
  base = load_rule_manifest(FILE_RULE_BASE)
  sha = sha256_file(path)
  params = load_params(path, base.architecture)
  label = _file_label(path, sha, name, shared)
  manifest = dataclasses.replace(
    base,
    name=label,
    description=f"Weights file {path} used with {base.name}'s architecture and settings.",
    source_url=None,
    filename=path.name,
    sha256=sha,
  )
  return ResolvedRule(manifest, params, sha, path, label)


def _describe(error: BaseException | object) -> str:
  """A short one-line description of an exception or reason."""
  if isinstance(error, OSError) and error.strerror:
    return _one_line(error.strerror)
  text = str(error) or type(error).__name__
  return _one_line(text)


def _one_line(text: str) -> str:
  """`text` with line breaks folded into spaces."""
  return " ".join(text.split())
