"""Files that are never seen half-written, and the record's JSON.

:func:`write_atomic` (and :func:`atomic_writer`, which streams the content)
writes a temp file in the same folder, fsyncs it once, renames it over the
target (``os.replace``) and fsyncs the folder, so a crash, a SIGKILL or a full disk at any moment leaves either the old or the new complete
file. A kill can leave a hidden temp file (``.<name>.<pid>.<hex>.tmp``)
behind; :func:`remove_stale_temps` deletes those whose writer is gone.

JSON is written with sorted keys and an indent of 2, and is always strict
JSON: a NaN or an infinity anywhere in the value (a float, a numpy or jax
scalar, an array element) is written as ``null``, and the encoder runs with
``allow_nan=False``, so no bare ``NaN``/``Infinity`` token ever reaches a file
(every JSON reader accepts the result). Numpy and jax scalars and arrays are
written as numbers and lists. Files written by older versions may hold those
tokens; :func:`read_json` still reads them (as Python's :mod:`json` does).

A full disk, an exceeded quota or a refused write becomes a one-line
UserError that says how to fix it.

No writer here follows a symbolic link: :func:`atomic_writer` refuses a
target that is a link (a rename would only replace the link, but a link
where a record belongs means the folder came from elsewhere),
:func:`append_durably` and :func:`open_nofollow` open with ``O_NOFOLLOW``,
and :func:`refuse_links` / :func:`make_dirs` check every component of a
path below its root. A results folder someone sent you can therefore never
make a write land outside it; each refusal is one line (:func:`link_error`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from disco_eval.errors import UserError

_TEMP_NAME = re.compile(r"\..+\.(\d+)\.[0-9a-f]{12}\.tmp")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


def _environment_error(path: Path, exc: OSError) -> UserError | None:
  """A one-line UserError for a full disk or a refused write, else None."""
  if exc.errno in _NO_SPACE:
    return UserError(
      f"no space left on the device while writing {path} ({exc.strerror}); "
      "free some space or pass --out DIR on another disk"
    )
  if exc.errno in _NOT_ALLOWED:
    return UserError(f"cannot write {path} ({exc.strerror}); pass --out DIR with a writable folder")
  return None


def link_error(path: Path) -> UserError:
  """The one-line refusal of the symbolic link `path`."""
  try:
    target = f" (to {os.readlink(path)})"
  except OSError:
    target = ""
  return UserError(
    f"{path} is a symbolic link{target} where records belong; refusing to write "
    "through it: remove the link (copy the real files there) or pass --out DIR"
  )


def refuse_links(path: Path, root: Path | None = None) -> None:
  """UserError (:func:`link_error`) if `path`, or any folder between `root`
  (excluded: the user chose it) and `path`, is a symbolic link.

  Without `root` (or when `path` is not below it) only `path` itself is
  checked. Components that do not exist yet are fine.
  """
  path = Path(path)
  chain = [path]
  if root is not None:
    try:
      parts = path.relative_to(root).parts
    except ValueError:
      parts = ()
    chain = [Path(root).joinpath(*parts[: i + 1]) for i in range(len(parts))] or [path]
  for at in chain:
    if os.path.islink(at):
      raise link_error(at)


def make_dirs(path: Path, root: Path | None = None) -> None:
  """Create the folder `path` and its parents below `root` (as mkdir -p),
  refusing (:func:`refuse_links`) any component that is a symbolic link.
  A full disk or a refused write becomes a one-line UserError."""
  refuse_links(path, root)
  try:
    Path(path).mkdir(parents=True, exist_ok=True)
  except OSError as exc:
    raise (_environment_error(Path(path), exc) or exc) from exc
  refuse_links(path, root)  # a link made meanwhile


def open_nofollow(path: Path, flags: int, mode: int = 0o666) -> int:
  """os.open of `path` with O_NOFOLLOW | O_CLOEXEC added: a symbolic link
  as the last component is refused (:func:`link_error`), never followed."""
  try:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
  except OSError as exc:
    if exc.errno == errno.ELOOP or os.path.islink(path):
      raise link_error(Path(path)) from exc
    raise (_environment_error(Path(path), exc) or exc) from exc


def _fsync_dir(folder: Path) -> None:
  """fsync a folder so that a rename inside it is durable."""
  fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
  try:
    os.fsync(fd)
  except OSError as exc:
    # Some file systems cannot fsync folders; the rename is done regardless.
    if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
      raise
  finally:
    os.close(fd)


class _FdWriter:
  """A write-only, unseekable binary file over an open descriptor: `write`
  writes every byte (os.write until done) and returns the count."""

  def __init__(self, fd: int):
    self._fd = fd

  def write(self, data) -> int:
    view = memoryview(data).cast("B")
    n = len(view)
    while view:
      view = view[os.write(self._fd, view) :]
    return n

  def flush(self) -> None:
    """Nothing is buffered here."""


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[_FdWriter]:
  """A file to stream the new content of `path` into, never seen half-written.

  The block writes into a temp file in the same folder (through the yielded
  object's ``write``); when it ends normally the temp file is fsynced once,
  renamed over `path` and the folder fsynced. If the block raises (a full
  disk, a KeyboardInterrupt) the temp file is removed and `path` keeps its
  old content; a SIGKILL can leave only the hidden temp file behind. An
  existing file's permission bits are kept. A full disk, an exceeded quota or
  a refused write becomes a one-line UserError; the folder must exist.
  """
  path = Path(path)
  refuse_links(path)
  tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
  fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
  closed = False
  try:
    with contextlib.suppress(FileNotFoundError):
      os.fchmod(fd, stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode))
    yield _FdWriter(fd)
    os.fsync(fd)
    closed = True
    os.close(fd)
    os.replace(tmp, path)
  except BaseException as exc:
    if not closed:
      with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    if isinstance(exc, OSError):
      error = _environment_error(path, exc)
      if error is not None:
        raise error from exc
    raise
  _fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
  """Replace the file `path` by `data` so that it is never seen half-written
  (:func:`atomic_writer`: temp file, one fsync, rename, folder fsync).

  Raises UserError (chained to the OSError) when the disk is full, the quota
  is exceeded or the write is not allowed; other errors propagate unchanged.
  The folder must exist.
  """
  if not isinstance(data, (bytes, bytearray, memoryview)):
    raise TypeError(f"write_atomic needs bytes, not {type(data).__name__}")
  with atomic_writer(path) as f:
    f.write(data)


def append_durably(path: Path, data: bytes, keep: int | None = None) -> None:
  """Append `data` to the existing file `path` and fsync it.

  With `keep`, the file is first cut to its first `keep` bytes (a torn tail
  left by a killed writer). A kill during the write can leave only a prefix
  of `data` at the end of the file (the caller's format must tell such a
  tail apart). A full disk or a refused write becomes a one-line UserError.
  """
  fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND)
  try:
    if keep is not None:
      os.ftruncate(fd, keep)
    _FdWriter(fd).write(data)
    os.fsync(fd)
  except OSError as exc:
    raise (_environment_error(Path(path), exc) or exc) from exc
  finally:
    os.close(fd)


def strict_value(obj: Any) -> Any:
  """`obj` with every non-finite float (NaN, +/-inf) replaced by None.

  Walks dicts, lists and tuples (tuples become lists); numpy and jax scalars
  become Python numbers and arrays nested lists (non-finite elements None);
  paths become strings. Anything else is returned unchanged.
  """
  if isinstance(obj, dict):
    return {k: strict_value(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [strict_value(v) for v in obj]
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, np.generic):
    return strict_value(obj.item())
  if isinstance(obj, Path):
    return str(obj)
  if not isinstance(obj, (str, bytes, int)) and hasattr(obj, "__array__"):
    return strict_value(np.asarray(obj).tolist())
  return obj


def _json_default(obj: Any) -> Any:
  """JSON form of objects strict_value left alone (none it knows of)."""
  raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
  """The record's JSON text: sorted keys, indent 2, strict (non-finite
  floats written as null, see :func:`strict_value`)."""
  return (
    json.dumps(
      strict_value(obj),
      sort_keys=True,
      indent=2,
      allow_nan=False,
      ensure_ascii=False,
      default=_json_default,
    )
    + "\n"
  )


def compact(obj: Any) -> str:
  """Canonical one-line strict JSON of an already JSON-loaded value (NaN and
  infinities, which older records may hold, compare as null)."""
  return json.dumps(
    strict_value(obj), sort_keys=True, allow_nan=False, ensure_ascii=False, separators=(",", ":")
  )


def write_json_atomic(path: Path, obj: Any) -> None:
  """Write `obj` as strict JSON (sorted keys, indent 2, NaN/inf as null)
  atomically."""
  write_atomic(Path(path), dumps(obj).encode("utf-8"))


def read_json(path: Path) -> Any:
  """The JSON document in `path` (OSError/ValueError when unreadable)."""
  return json.loads(Path(path).read_text(encoding="utf-8"))


def _pid_alive(pid: int) -> bool:
  """Whether a process `pid` exists on this host."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def remove_stale_temps(folder: Path) -> None:
  """Delete temp files in `folder` left by killed writers (or by this one)."""
  try:
    entries = list(os.scandir(folder))
  except FileNotFoundError:
    return
  for entry in entries:
    match = _TEMP_NAME.fullmatch(entry.name)
    if match is None:
      continue
    pid = int(match.group(1))
    if pid == os.getpid() or not _pid_alive(pid):
      with contextlib.suppress(FileNotFoundError):
        os.unlink(entry.path)
