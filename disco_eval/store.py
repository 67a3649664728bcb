"""Run records that survive crashes, kills and full disks.

Every run owns one folder, ``<root>/<suite>/<task>/<rule>/seed<k>/``::

  config.json      the complete config of the run (written by RunRecord.open)
  status.json      {"status": "running"|"complete"|"failed", "error", "updated",
                    "env_steps", "host", "pid"}
  metrics.csv      one row per logging step; the first row fixes the header
  summary.json     the final evaluation, written once by mark_complete
  checkpoint/      the latest learner-state checkpoint:
    checkpoint.json  structure (leaf paths, shapes, dtypes), env_steps, extra
                     metadata and the name and sha256 of the arrays file
    state-*.npz      the arrays, one entry per pytree leaf
  .lock            flock()ed by the process writing the run (holds its pid)

Guarantees:

* Every record file is written through :func:`write_atomic` (temp file in the
  same folder, fsync, ``os.replace``, fsync of the folder), so a crash, a
  SIGKILL or a full disk at any moment leaves either the old or the new
  complete version of each file, never a torn one. A kill can leave a hidden
  temp file (``.<name>.<pid>.<hex>.tmp``) behind; :meth:`RunRecord.lock` deletes
  those whose writer is gone.
* The only writes that are not atomic replacements touch ``.lock``, whose
  content (the holder's pid) is advisory.
* Nothing outside the run folder is written, except that
  :meth:`RunRecord.open` creates the folder and its parents.
* JSON is written with sorted keys and an indent of 2. NaN and +/-infinity are
  written as the bare tokens ``NaN``, ``Infinity`` and ``-Infinity`` (Python's
  ``allow_nan`` extension to JSON, read back by :mod:`json`, pandas and most
  JSON5 readers) so that they round-trip; numpy and jax scalars and arrays are
  written as numbers and lists.

Typical use by a training loop::

  record = RunRecord.open(root, suite, task, rule, seed, config)
  with record.lock():
    restored = record.load_checkpoint(template)
    if restored is not None:
      state, steps, extra = restored
      record.truncate_metrics(steps)
    record.mark_running(steps)
    ...  # record.append_metrics(rows); record.save_checkpoint(state, steps)
    record.mark_complete(summary)
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import secrets
import socket
import stat
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from disco_eval.errors import UserError

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_META = "checkpoint.json"
LOCK_FILE = ".lock"

# Config keys that may change between invocations of the same run (they are
# ignored when an existing run's config is compared with a new one).
VOLATILE_CONFIG_KEYS = ("versions", "created", "label")   # label: derived from the rest
# Config keys added after runs were first recorded, with the value an older
# record that lacks them ran with: such a record still matches a new config.
LATER_CONFIG_KEYS = {("train", "learner_microbatches"): 1, ("train", "devices"): 1}
STATUSES = ("running", "complete", "failed")
# The metrics column that truncate_metrics cuts on.
STEP_COLUMN = "env_steps"

_CHECKPOINT_FORMAT = "disco-eval-checkpoint/2"
_SEED_DIR = re.compile(r"seed(\d+)")
_TEMP_NAME = re.compile(r"\..+\.(\d+)\.[0-9a-f]{12}\.tmp")
_INT = re.compile(r"[+-]?\d+")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)
# Packages whose versions are recorded with every run.
_VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "disco-eval")


# --- paths and versions -------------------------------------------------------


def _check_name(kind: str, value: Any) -> str:
  """`value` if it is usable as one folder name, else a UserError."""
  if (not isinstance(value, str) or value in ("", ".", "..")
      or any(c in value for c in "/\\\0\n\r")):
    raise UserError(
        f"invalid {kind} name {value!r} for a run folder: use a non-empty name "
        "without '/', '\\' or line breaks")
  return value


def run_dir(root: Path, suite: str, task: str, rule: str, seed: int) -> Path:
  """The folder of one run: ``<root>/<suite>/<task>/<rule>/seed<seed>``.

  Each name must be a single folder name (no separators, not ``.``/``..``), so
  a run folder always lies inside `root`.
  """
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise UserError(f"invalid seed {seed!r}: seeds are integers >= 0")
  return (Path(root) / _check_name("suite", suite) / _check_name("task", task)
          / _check_name("rule", rule) / f"seed{int(seed)}")


def versions() -> dict[str, str]:
  """Versions of Python and of the packages a result depends on.

  Packages that are not installed read ``"not installed"``; disco-eval run
  from a source tree without being installed reports its ``__version__``.
  """
  out = {"python": platform.python_version()}
  for name in _VERSIONED:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = "not installed"
  if out["disco-eval"] == "not installed":
    from disco_eval import __version__
    out["disco-eval"] = __version__
  return out


class RunBusy(UserError):
  """The run is locked by another process (see :meth:`RunRecord.lock`)."""


# --- atomic writes ------------------------------------------------------------


def _environment_error(path: Path, exc: OSError) -> UserError | None:
  """A one-line UserError for a full disk or a refused write, else None."""
  if exc.errno in _NO_SPACE:
    return UserError(
        f"no space left on the device while writing {path} ({exc.strerror}); "
        "free some space or pass --out DIR on another disk")
  if exc.errno in _NOT_ALLOWED:
    return UserError(
        f"cannot write {path} ({exc.strerror}); pass --out DIR with a "
        "writable folder")
  return None


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


def write_atomic(path: Path, data: bytes) -> None:
  """Replace the file `path` by `data` so that it is never seen half-written.

  Writes a temp file in the same folder, fsyncs it, renames it over `path` and
  fsyncs the folder. On any error (a full disk included) the temp file is
  removed and `path` keeps its old content; a SIGKILL can leave only the
  hidden temp file behind. An existing file's permission bits are kept; a new
  file gets the default ones (umask).

  Raises UserError (chained to the OSError) when the disk is full, the quota
  is exceeded or the write is not allowed; other errors propagate unchanged.
  The folder must exist.
  """
  if not isinstance(data, (bytes, bytearray, memoryview)):
    raise TypeError(f"write_atomic needs bytes, not {type(data).__name__}")
  path = Path(path)
  tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
  try:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
  except OSError as exc:
    raise (_environment_error(path, exc) or exc) from exc
  closed = False
  try:
    with contextlib.suppress(FileNotFoundError):
      os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))
    view = memoryview(data).cast("B")
    while view:
      view = view[os.write(fd, view):]
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


def _json_default(obj: Any) -> Any:
  """JSON form of numpy/jax scalars and arrays and of paths."""
  if isinstance(obj, np.generic):
    return obj.item()
  if hasattr(obj, "__array__"):
    return np.asarray(obj).tolist()
  if isinstance(obj, Path):
    return str(obj)
  raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(obj: Any) -> str:
  """The record's JSON text: sorted keys, indent 2, NaN/inf allowed."""
  return json.dumps(obj, sort_keys=True, indent=2, allow_nan=True,
                    ensure_ascii=False, default=_json_default) + "\n"


def _compact(obj: Any) -> str:
  """Canonical one-line JSON of an already JSON-loaded value."""
  return json.dumps(obj, sort_keys=True, allow_nan=True, ensure_ascii=False,
                    separators=(",", ":"))


def write_json_atomic(path: Path, obj: Any) -> None:
  """Write `obj` as JSON (sorted keys, indent 2, NaN/inf allowed) atomically."""
  write_atomic(Path(path), _dumps(obj).encode("utf-8"))


def _read_json(path: Path) -> Any:
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


def _remove_stale_temps(folder: Path) -> None:
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


# --- config comparison --------------------------------------------------------


def _canonical_config(config: dict) -> dict:
  """`config` as JSON would store it, without the volatile keys."""
  if not isinstance(config, dict):
    raise TypeError(f"a run config must be a dict, not {type(config).__name__}")
  doc = json.loads(_dumps(config))
  for key in VOLATILE_CONFIG_KEYS:
    doc.pop(key, None)
  return doc


_ABSENT = object()


def _with_later_keys(stored: dict, new: dict) -> dict:
  """`stored` with the LATER_CONFIG_KEYS it lacks, at their old values, where
  `new` has them (so that only a real change of those settings differs)."""
  stored = json.loads(json.dumps(stored))
  for (table, key), old_value in LATER_CONFIG_KEYS.items():
    where = stored.get(table)
    if isinstance(where, dict) and key not in where and key in new.get(table, {}):
      where[key] = old_value
  return stored


def _first_difference(old: Any, new: Any, where: str = "") -> tuple[str, Any, Any] | None:
  """(key path, old value, new value) of the first difference, or None."""
  if _compact(old) == _compact(new):
    return None
  if isinstance(old, dict) and isinstance(new, dict):
    for key in sorted(set(old) | set(new)):
      sub = f"{where}.{key}" if where else str(key)
      if key not in old or key not in new:
        return sub, old.get(key, _ABSENT), new.get(key, _ABSENT)
      found = _first_difference(old[key], new[key], sub)
      if found is not None:
        return found
  if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
    for i, (a, b) in enumerate(zip(old, new)):
      found = _first_difference(a, b, f"{where}[{i}]")
      if found is not None:
        return found
  return where or "<config>", old, new


def _show(value: Any, limit: int = 60) -> str:
  """A short one-line rendering of a JSON value for messages."""
  if value is _ABSENT:
    return "absent"
  text = _compact(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."


# --- metrics ------------------------------------------------------------------


def _format_cell(value: Any) -> str:
  """A metrics value as CSV text (floats in round-trip repr, None empty)."""
  if value is None:
    return ""
  if isinstance(value, (bool, np.bool_)):
    return "1" if value else "0"
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    return repr(float(value))
  if isinstance(value, str):
    return value
  if hasattr(value, "__array__") and np.ndim(value) == 0:
    return _format_cell(np.asarray(value).item())
  raise TypeError(f"metrics values must be numbers, strings or None, not {type(value).__name__}")


def _parse_cell(text: str) -> Any:
  """Inverse of _format_cell: int, float, None (empty) or the string."""
  if text == "":
    return None
  if _INT.fullmatch(text):
    return int(text)
  try:
    return float(text)
  except ValueError:
    return text


# --- checkpoints --------------------------------------------------------------


def _dtype_from_name(name: str) -> np.dtype:
  """numpy dtype from its name, ml_dtypes' (bfloat16, float8_*) included."""
  try:
    return np.dtype(name)
  except TypeError:
    import ml_dtypes
    return np.dtype(getattr(ml_dtypes, name))


def _leaf_name(path: str) -> str:
  return path or "<root>"


def _flatten_state(state: Any) -> tuple[dict[str, np.ndarray], list[dict]]:
  """npz entries and leaf descriptions (path, entry, shape, dtype) of a pytree."""
  import jax
  leaves, _ = jax.tree_util.tree_flatten_with_path(state)
  arrays: dict[str, np.ndarray] = {}
  described: list[dict] = []
  for i, (key_path, leaf) in enumerate(leaves):
    path = jax.tree_util.keystr(key_path)
    array = np.asarray(leaf)
    if array.dtype.kind == "V" and array.dtype.fields is None:
      # ml_dtypes (bfloat16, float8): .npy cannot name them; store the bits.
      stored = array.view(np.dtype(f"u{array.dtype.itemsize}"))
    elif array.dtype.kind in "biufcSU":
      stored = array
    else:
      raise TypeError(f"checkpoint leaf {_leaf_name(path)} has unsupported dtype {array.dtype}")
    entry = f"leaf_{i:05d}"
    arrays[entry] = stored
    # Names ("float32", "bfloat16") where they exist; '<U5'-style for text.
    dtype = array.dtype.str if array.dtype.kind in "SU" else array.dtype.name
    described.append({"path": path, "entry": entry, "shape": list(array.shape),
                      "dtype": dtype})
  return arrays, described


def _as_template_leaf(value: np.ndarray, template: Any) -> Any:
  """`value` in the kind of the template leaf (jax array, numpy, Python)."""
  import jax
  if isinstance(template, jax.Array):
    return jax.device_put(value, template.sharding)
  if isinstance(template, jax.ShapeDtypeStruct):
    sharding = getattr(template, "sharding", None)
    return jax.device_put(value, sharding) if sharding is not None else jax.device_put(value)
  if isinstance(template, np.ndarray):
    return value
  if isinstance(template, np.generic):
    return value[()]
  if isinstance(template, (bool, int, float, complex, str, bytes)):
    return value.item()
  return value


# --- the run record -----------------------------------------------------------


class RunRecord:
  """The files of one run: config, status, metrics, summary and checkpoint.

  Create it with :meth:`open`, and do all writes inside :meth:`lock` so that
  two processes never write the same run.
  """

  def __init__(self, path: Path):
    """A record for the run folder `path` (nothing is read or written)."""
    self.path = Path(path)
    # An existing config that matched apart from volatile keys; written under
    # the lock so that a process refused by lock() never rewrites it.
    self._pending_config: dict | None = None

  def __repr__(self) -> str:
    return f"RunRecord({str(self.path)!r})"

  @classmethod
  def open(cls, root: Path, suite: str, task: str, rule: str, seed: int,
           config: dict) -> "RunRecord":
    """The record of a run, creating its folder and config.json if needed.

    If the run already has a config.json that differs from `config` (compared
    as canonical JSON, ignoring VOLATILE_CONFIG_KEYS) a UserError names the
    first differing key. A matching config is rewritten with the new volatile
    values (the stored "created" is kept) when the lock is taken.
    """
    record = cls(run_dir(root, suite, task, rule, seed))
    canonical = _canonical_config(config)
    try:
      record.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
      raise UserError(f"cannot create run folder {record.path} ({exc.strerror}); "
                      "pass --out DIR with a writable folder") from exc
    config_path = record.path / CONFIG_FILE
    try:
      stored = _read_json(config_path)
    except FileNotFoundError:
      write_json_atomic(config_path, config)
      return record
    except (OSError, ValueError) as exc:
      raise UserError(f"run {record.path} has an unreadable {CONFIG_FILE} ({exc}); "
                      "delete that folder or pass --out DIR") from exc
    if not isinstance(stored, dict):
      raise UserError(f"run {record.path} has a {CONFIG_FILE} that is not a JSON "
                      "object; delete that folder or pass --out DIR")
    stored_canonical = {k: v for k, v in stored.items() if k not in VOLATILE_CONFIG_KEYS}
    stored_canonical = _with_later_keys(stored_canonical, canonical)
    difference = _first_difference(stored_canonical, canonical)
    if difference is not None:
      key, old, new = difference
      raise UserError(
          f"run {record.path} was recorded with a different config: {key} is "
          f"{_show(old)} there but {_show(new)} now; pass --out DIR to record this "
          "run elsewhere (or delete that folder to start it over)")
    updated = dict(config)
    if "created" in stored:
      updated["created"] = stored["created"]
    if _dumps(updated) != _dumps(stored):
      record._pending_config = updated
    return record

  # -- locking -----------------------------------------------------------------

  @contextlib.contextmanager
  def lock(self) -> Iterator["RunRecord"]:
    """Hold an exclusive lock on the run for the duration of the block.

    Uses flock(LOCK_EX | LOCK_NB) on ``.lock``: if another process (or another
    lock() in this one) holds it, a UserError names its pid. The kernel drops
    the lock when the process exits or is killed (note: children forked while
    it is held share it until they exit); that UserError is a :class:`RunBusy`.
    On entry, temp files left by killed writers are removed and a pending
    config refresh (see open) is written.
    """
    if not self.path.is_dir():
      raise UserError(f"run folder {self.path} does not exist; create it with "
                      "RunRecord.open")
    fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        raise RunBusy(
            f"run {self.path} is being written by another process "
            f"({self._lock_holder(fd)}); wait for it to end or stop it") from None
      with contextlib.suppress(OSError):  # the pid note is advisory
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
      _remove_stale_temps(self.path)
      _remove_stale_temps(self.path / CHECKPOINT_DIR)
      if self._pending_config is not None:
        write_json_atomic(self.path / CONFIG_FILE, self._pending_config)
        self._pending_config = None
      yield self
    finally:
      os.close(fd)  # releases the flock

  @staticmethod
  def _lock_holder(fd: int) -> str:
    """'pid N' (and ' on HOST' when not this host) from the lock file."""
    try:
      words = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    except OSError:
      words = []
    if not words or not words[0].isdigit():
      return "pid unknown"
    host = words[1] if len(words) > 1 else None
    if host is not None and host != socket.gethostname():
      return f"pid {words[0]} on {host}"
    return f"pid {words[0]}"

  # -- config, status and summary ----------------------------------------------

  def _read_doc(self, name: str) -> Any:
    """A JSON file of the run, None if missing, UserError if corrupt."""
    path = self.path / name
    try:
      return _read_json(path)
    except FileNotFoundError:
      return None
    except (OSError, ValueError) as exc:
      raise UserError(f"run {self.path} has an unreadable {name} ({exc}); "
                      "delete that folder or pass --out DIR") from exc

  @property
  def config(self) -> dict | None:
    """The stored config.json (None before open wrote it)."""
    return self._read_doc(CONFIG_FILE)

  @property
  def status(self) -> dict | None:
    """The stored status.json (None if the run never started)."""
    doc = self._read_doc(STATUS_FILE)
    if doc is not None and (not isinstance(doc, dict) or doc.get("status") not in STATUSES):
      raise UserError(f"run {self.path} has an invalid {STATUS_FILE}; delete that "
                      "folder or pass --out DIR")
    return doc

  @property
  def summary(self) -> dict | None:
    """The stored summary.json (None until mark_complete)."""
    return self._read_doc(SUMMARY_FILE)

  def is_complete(self) -> bool:
    """Whether the run finished (status complete)."""
    status = self.status
    return status is not None and status["status"] == "complete"

  def _write_status(self, status: str, error: str | None, env_steps: int | None) -> None:
    if env_steps is None:
      try:
        env_steps = int((self.status or {}).get("env_steps", 0))
      except (UserError, TypeError, ValueError):
        env_steps = 0
    write_json_atomic(self.path / STATUS_FILE, {
        "status": status,
        "error": error,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "env_steps": int(env_steps),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    })

  def mark_running(self, env_steps: int = 0) -> None:
    """Record that the run is in progress at `env_steps` (also a heartbeat)."""
    self._write_status("running", None, env_steps)

  def mark_complete(self, summary: dict, env_steps: int | None = None) -> None:
    """Write summary.json, then mark the run complete.

    The summary is written first, so a complete status implies a summary.
    `env_steps` defaults to the last recorded value.
    """
    write_json_atomic(self.path / SUMMARY_FILE, summary)
    self._write_status("complete", None, env_steps)

  def mark_failed(self, error: str, env_steps: int | None = None) -> None:
    """Mark the run failed with the message `error`."""
    self._write_status("failed", str(error), env_steps)

  # -- metrics -----------------------------------------------------------------

  def _read_metrics_raw(self) -> tuple[list[str], list[list[str]]]:
    """Header and rows of metrics.csv as text ([], [] if missing)."""
    try:
      text = (self.path / METRICS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
      return [], []
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
      return [], []
    return rows[0], rows[1:]

  def _write_metrics_raw(self, header: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(self.path / METRICS_FILE, buffer.getvalue().encode("utf-8"))

  def append_metrics(self, rows: list[dict]) -> None:
    """Append rows to metrics.csv.

    Crash safety by atomic rewrite: the whole CSV is rewritten through
    write_atomic on every call (metrics are small), so the file is always a
    complete table. The first row ever written fixes the header (in its key
    order); every later row must have exactly those keys (else UserError).
    Values are numbers (floats round-trip exactly, NaN/inf included), strings
    or None; booleans are stored as 1/0.
    """
    if not rows:
      return
    header, raw = self._read_metrics_raw()
    if not header:
      header = list(rows[0].keys())
      if not all(isinstance(key, str) for key in header):
        raise TypeError("metrics column names must be strings")
    for row in rows:
      if set(row) != set(header):
        raise UserError(
            f"run {self.path} metrics.csv has columns {header} but a new row has "
            f"{list(row)}; pass --out DIR to record this run elsewhere")
      raw.append([_format_cell(row[key]) for key in header])
    self._write_metrics_raw(header, raw)

  def read_metrics(self) -> list[dict]:
    """The metrics rows, numbers parsed as int/float and empty cells as None."""
    header, raw = self._read_metrics_raw()
    return [dict(zip(header, map(_parse_cell, row))) for row in raw]

  def truncate_metrics(self, env_steps: int) -> None:
    """Drop the rows logged after `env_steps` (a checkpoint's step count).

    Used on resume so that a resumed run never duplicates rows.
    """
    header, raw = self._read_metrics_raw()
    if not raw:
      return
    if STEP_COLUMN not in header:
      raise ValueError(f"metrics.csv of {self.path} has no {STEP_COLUMN!r} column")
    column = header.index(STEP_COLUMN)
    kept = [row for row in raw if float(row[column]) <= env_steps]
    if len(kept) != len(raw):
      self._write_metrics_raw(header, kept)

  # -- checkpoints -------------------------------------------------------------

  def save_checkpoint(self, state: Any, env_steps: int, extra: dict | None = None,
                      keep: int = 2) -> None:
    """Save `state` (a pytree of arrays) as the run's newest checkpoint.

    The arrays go to a new ``state-*.npz`` first; then ``checkpoint.json``
    (for each of the `keep` newest checkpoints: leaf paths from
    jax.tree_util.tree_flatten_with_path, shapes, dtypes, env_steps, `extra`
    and the npz's sha256) is replaced, which is the commit point; only then
    are npz files no longer listed deleted. A crash at any moment leaves the
    old or the new list loadable. Keeping two lets runs trained together
    (vmapped seeds) resume together from a checkpoint they all have, even if
    a kill came while their newest ones were being written.
    """
    arrays, leaves = _flatten_state(state)
    folder = self.path / CHECKPOINT_DIR
    folder.mkdir(exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    name = f"state-{int(env_steps):012d}-{secrets.token_hex(4)}.npz"
    entry = {
        "npz": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "env_steps": int(env_steps),
        "extra": extra or {},
        "leaves": leaves,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
      older = [c for c in self._checkpoint_entries() if c["env_steps"] != int(env_steps)]
    except UserError:
      older = []
    entries = [entry] + older[:max(0, keep - 1)]
    meta = _dumps({"format": _CHECKPOINT_FORMAT, "checkpoints": entries}).encode("utf-8")
    write_atomic(folder / name, data)
    write_atomic(folder / CHECKPOINT_META, meta)  # the commit point
    listed = {c["npz"] for c in entries}
    for item in os.scandir(folder):
      if item.name.startswith("state-") and item.name.endswith(".npz") and item.name not in listed:
        with contextlib.suppress(FileNotFoundError):
          os.unlink(item.path)

  def _checkpoint_entries(self) -> list[dict]:
    """The committed checkpoints, newest first ([] if none)."""
    folder = self.path / CHECKPOINT_DIR
    fix = f"delete {folder} to start over or pass --out DIR"
    try:
      meta = _read_json(folder / CHECKPOINT_META)
    except FileNotFoundError:
      return []
    except (OSError, ValueError) as exc:
      raise UserError(f"checkpoint {folder} is unreadable ({exc}); {fix}") from exc
    if not isinstance(meta, dict) or meta.get("format") != _CHECKPOINT_FORMAT:
      raise UserError(f"checkpoint {folder} has an unknown format; {fix}")
    return list(meta.get("checkpoints", []))

  def checkpoint_steps(self) -> list[int]:
    """env_steps of the committed checkpoints, newest first."""
    return [int(c["env_steps"]) for c in self._checkpoint_entries()]

  def load_checkpoint(self, template: Any, env_steps: int | None = None
                      ) -> tuple[Any, int, dict] | None:
    """(state, env_steps, extra) of the newest checkpoint (or of the one at
    `env_steps`), or None if there is none.

    The state has the structure of `template` (a pytree of arrays, of
    jax.ShapeDtypeStruct or of scalars); each leaf is matched by its key path
    and must have the template's shape and dtype, else UserError. Leaves come
    back as jax arrays where the template has jax arrays or ShapeDtypeStructs,
    as numpy where it has numpy, as Python scalars where it has those.
    """
    import jax
    folder = self.path / CHECKPOINT_DIR
    fix = f"delete {folder} to start over or pass --out DIR"
    entries = self._checkpoint_entries()
    if env_steps is not None:
      entries = [c for c in entries if int(c["env_steps"]) == int(env_steps)]
      if not entries:
        raise UserError(f"run {self.path} has no checkpoint at {env_steps} env steps; {fix}")
    if not entries:
      return None
    meta = entries[0]
    try:
      data = (folder / meta["npz"]).read_bytes()
      if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"{meta['npz']} does not match its sha256")
      with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        saved = {leaf["path"]: (leaf, npz[leaf["entry"]]) for leaf in meta["leaves"]}
      env_steps = int(meta["env_steps"])
      extra = meta.get("extra") or {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
      raise UserError(f"checkpoint {folder} is unreadable ({exc}); {fix}") from exc

    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    values = []
    for key_path, leaf in leaves:
      path = jax.tree_util.keystr(key_path)
      if path not in saved:
        raise UserError(f"checkpoint {folder} does not fit this learner state: it has no "
                        f"leaf {_leaf_name(path)}; {fix}")
      described, stored = saved.pop(path)
      dtype = _dtype_from_name(described["dtype"])
      shape = tuple(described["shape"])
      want_shape = tuple(np.shape(leaf))
      want_dtype = np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
      if shape != want_shape or dtype != want_dtype:
        raise UserError(
            f"checkpoint {folder} does not fit this learner state: leaf "
            f"{_leaf_name(path)} is {dtype.name}{list(shape)} there but "
            f"{want_dtype.name}{list(want_shape)} is expected; {fix}")
      value = stored.view(dtype) if stored.dtype != dtype else stored
      values.append(_as_template_leaf(value.reshape(shape), leaf))
    if saved:
      raise UserError(f"checkpoint {folder} does not fit this learner state: it has "
                      f"leaves the state lacks ({', '.join(map(_leaf_name, saved))}); {fix}")
    return jax.tree_util.tree_unflatten(treedef, values), env_steps, extra


# --- scanning -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What scan_runs found in one run folder.

  suite/task/rule/seed come from the folder's place under the root (or from
  its config when the place is unexpected). `status` is the status string
  (None if the run never started). `problem` describes anything unreadable or
  inconsistent (None if all is well); the other fields are None where the
  file they come from could not be read.
  """
  path: Path
  suite: str | None
  task: str | None
  rule: str | None
  seed: int | None
  status: str | None
  config: dict | None
  summary: dict | None
  problem: str | None


def _load_for_scan(path: Path, problems: list[str]) -> Any:
  """A JSON object file, None if missing; a problem is noted if unreadable."""
  try:
    doc = _read_json(path)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as exc:
    problems.append(f"{path.name} is unreadable ({exc})")
    return None
  if not isinstance(doc, dict):
    problems.append(f"{path.name} is not a JSON object")
    return None
  return doc


def _named(value: Any) -> Any:
  """A config entry's name: tables such as the rule's carry it as ``name``."""
  return value.get("name") if isinstance(value, dict) else value


def _run_info(root: Path, path: Path) -> RunInfo:
  """RunInfo of the run folder `path` (never raises)."""
  problems: list[str] = []
  parts = path.relative_to(root).parts
  place = len(parts) == 4 and _SEED_DIR.fullmatch(parts[3])
  config = _load_for_scan(path / CONFIG_FILE, problems)
  if config is None and not problems:
    problems.append(f"{CONFIG_FILE} is missing")
  status_doc = _load_for_scan(path / STATUS_FILE, problems)
  summary = _load_for_scan(path / SUMMARY_FILE, problems)
  status = None
  if status_doc is not None:
    status = status_doc.get("status")
    if status not in STATUSES:
      problems.append(f"{STATUS_FILE} has an unknown status {status!r}")
      status = None
  if status == "complete" and summary is None and not (path / SUMMARY_FILE).exists():
    problems.append(f"status is complete but {SUMMARY_FILE} is missing")
  if place:
    suite, task, rule = parts[:3]
    seed: int | None = int(place.group(1))
    for key, value in (("suite", suite), ("task", task), ("rule", rule), ("seed", seed)):
      if config is not None and key in config and _named(config[key]) != value:
        problems.append(f"{CONFIG_FILE} says {key} {_named(config[key])!r} but the folder "
                        f"says {value!r}")
  else:
    problems.append("folder is not at <suite>/<task>/<rule>/seed<k> under the root")
    config_ = config or {}
    suite, task, rule = (_named(config_.get(k)) if isinstance(_named(config_.get(k)), str)
                         else None for k in ("suite", "task", "rule"))
    seed = config_.get("seed") if isinstance(config_.get("seed"), int) else None
  return RunInfo(path=path, suite=suite, task=task, rule=rule, seed=seed, status=status,
                 config=config, summary=summary, problem="; ".join(problems) or None)


def scan_runs(root: Path) -> list[RunInfo]:
  """Every run folder (a folder holding config.json) under `root`.

  Runs whose files are unreadable or corrupt, and folders that cannot be
  listed, are returned with `problem` set; nothing is raised and nothing is
  dropped. Sorted by suite, task, rule, seed and path. A missing root gives [].
  """
  root = Path(root)
  found: list[RunInfo] = []

  def unlistable(exc: OSError) -> None:
    if exc.filename is not None and Path(exc.filename) != root:
      path = Path(exc.filename)
      found.append(RunInfo(path=path, suite=None, task=None, rule=None, seed=None,
                           status=None, config=None, summary=None,
                           problem=f"cannot list folder ({exc.strerror})"))

  if not root.is_dir():
    return []
  for folder, subfolders, files in os.walk(root, onerror=unlistable):
    if CONFIG_FILE in files:
      subfolders[:] = []  # checkpoint/ and the like are not runs
      try:
        found.append(_run_info(root, Path(folder)))
      except Exception as exc:  # noqa: BLE001 - a scan must never raise
        found.append(RunInfo(path=Path(folder), suite=None, task=None, rule=None,
                             seed=None, status=None, config=None, summary=None,
                             problem=f"cannot read run ({type(exc).__name__}: {exc})"))
  return sorted(found, key=lambda r: (r.suite or "", r.task or "", r.rule or "",
                                      r.seed if r.seed is not None else -1, str(r.path)))
