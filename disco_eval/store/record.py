"""The record of one run: its config, status, metrics, summary and lock.

A :class:`RunRecord` owns the run folder ``<root>/<suite>/<task>/<rule>/seed<k>/``
(see :mod:`disco_eval.store` for its files). Every file is written through
:func:`~disco_eval.store.atomic.write_atomic`; the training checkpoint is kept by
:mod:`disco_eval.store.training_checkpoint`, to which the record delegates.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from disco_eval.errors import UserError
from disco_eval.store import config_match, damage, training_checkpoint
from disco_eval.store.atomic import (
  make_dirs,
  open_nofollow,
  read_json,
  refuse_links,
  remove_stale_temps,
  write_json_atomic,
)
from disco_eval.store.layout import (
  CHECKPOINT_DIR,
  CONFIG_FILE,
  FINISHED_STATUSES,
  LOCK_FILE,
  METRICS_FILE,
  STATUS_FILE,
  STATUSES,
  SUMMARY_FILE,
  run_dir,
)
from disco_eval.store.metrics import (
  STEP_COLUMN,
  append_rows,
  format_cell,
  parse_cell,
  read_header,
  read_table,
  torn,
  write_table,
)
from disco_eval.store.schema import versioned


class RunBusy(UserError):
  """The run is locked by another process (see :meth:`RunRecord.lock`)."""


def _write_record(path: Path, doc: dict) -> None:
  """Writes one of the run's JSON files, with its ``schema_version``."""
  write_json_atomic(path, versioned(doc))


class RunRecord:
  """The files of one run: config, status, metrics, summary and checkpoint.

  Create it with :meth:`open`, and do all writes inside :meth:`lock` so that
  two processes never write the same run.
  """

  def __init__(self, path: Path, root: Path | None = None):
    """A record for the run folder `path` (nothing is read or written);
    `root` is the results folder it lies in (default: four levels up, as
    :func:`~disco_eval.store.layout.run_dir` places runs). No folder between
    the root and the run may be a symbolic link (see :meth:`check_links`)."""
    self.path = Path(path)
    parents = self.path.parents
    self.root = Path(root) if root is not None else (parents[3] if len(parents) > 3 else None)
    # An existing config that matched apart from volatile keys; written under
    # the lock so that a process refused by lock() never rewrites it.
    self._pending_config: dict | None = None

  def __repr__(self) -> str:
    return f"RunRecord({str(self.path)!r})"

  @classmethod
  def open(
    cls, root: Path, suite: str, task: str, rule: str, seed: int, config: dict
  ) -> "RunRecord":
    """The record of a run, creating its folder and config.json if needed.

    If the run already has a config.json that differs from `config` (compared
    as canonical JSON, ignoring VOLATILE_CONFIG_KEYS, see config_match) a
    UserError names the first differing key. A matching config is rewritten
    with the new volatile values (the stored "created" is kept) when the lock
    is taken.

    A damaged record (see :mod:`disco_eval.store.damage`: config.json lost
    while other files remain, metrics.csv lost while the status says the run
    trained, an unreadable file, a folder holding no run files) is refused
    with a one-line UserError saying what is damaged and how to redo the run;
    nothing in the folder is written or removed.
    """
    record = cls(run_dir(root, suite, task, rule, seed), root)
    config = versioned(config)
    canonical = config_match.canonical_config(config)
    try:
      make_dirs(record.path, record.root)
    except OSError as exc:
      raise UserError(
        f"cannot create run folder {record.path} ({exc.strerror}); "
        "pass --out DIR with a writable folder"
      ) from exc
    found = damage.find_damage(record.path)
    if found is not None and found.reason == "link":
      raise UserError(
        f"run folder {record.path} holds a symbolic link where records belong "
        f"({found.detail}); nothing was written through it: remove the link or pass --out DIR"
      )
    if found is not None and found.reason != "empty":
      raise UserError(
        f"damaged run record: {found.detail}; nothing in it was changed: remove "
        f"{record.path} to train it again, or pass --out DIR"
      )
    stored = record._stored_config()
    if stored is None:
      _write_record(record.path / CONFIG_FILE, config)
      return record
    config_match.check_same_run(record.path, stored, canonical)
    record._pending_config = config_match.refreshed_config(config, stored)
    return record

  def _stored_config(self) -> dict | None:
    """The config.json of the run (None if missing), UserError if unusable."""
    try:
      stored = read_json(self.path / CONFIG_FILE)
    except FileNotFoundError:
      return None
    except (OSError, ValueError) as exc:
      raise UserError(
        f"run {self.path} has an unreadable {CONFIG_FILE} ({exc}); "
        "delete that folder or pass --out DIR"
      ) from exc
    if not isinstance(stored, dict):
      raise UserError(
        f"run {self.path} has a {CONFIG_FILE} that is not a JSON "
        "object; delete that folder or pass --out DIR"
      )
    return stored

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
    self.check_links()
    if not self.path.is_dir():
      raise UserError(f"run folder {self.path} does not exist; create it with RunRecord.open")
    fd = open_nofollow(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        raise RunBusy(
          f"run {self.path} is being written by another process "
          f"({self._lock_holder(fd)}); wait for it to end or stop it"
        ) from None
      with contextlib.suppress(OSError):  # the pid note is advisory
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
      remove_stale_temps(self.path)
      remove_stale_temps(self.path / CHECKPOINT_DIR)
      if self._pending_config is not None:
        _write_record(self.path / CONFIG_FILE, self._pending_config)
        self._pending_config = None
      yield self
    finally:
      os.close(fd)  # releases the flock

  def check_links(self) -> None:
    """UserError in one line if the run folder, a folder between it and the
    root, or an entry where a record file belongs is a symbolic link."""
    refuse_links(self.path, self.root)
    found = damage.find_damage(self.path)
    if found is not None and found.reason == "link":
      raise UserError(
        f"run folder {self.path} holds a symbolic link where records belong "
        f"({found.detail}); nothing was written through it: remove the link or pass --out DIR"
      )

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
      return read_json(path)
    except FileNotFoundError:
      return None
    except (OSError, ValueError) as exc:
      raise UserError(
        f"run {self.path} has an unreadable {name} ({exc}); delete that folder or pass --out DIR"
      ) from exc

  @property
  def config(self) -> dict | None:
    """The stored config.json (None before open wrote it)."""
    return self._read_doc(CONFIG_FILE)

  @property
  def status(self) -> dict | None:
    """The stored status.json (None if the run never started)."""
    doc = self._read_doc(STATUS_FILE)
    if doc is not None and (not isinstance(doc, dict) or doc.get("status") not in STATUSES):
      raise UserError(
        f"run {self.path} has an invalid {STATUS_FILE}; delete that folder or pass --out DIR"
      )
    return doc

  @property
  def summary(self) -> dict | None:
    """The stored summary.json (None until mark_complete)."""
    return self._read_doc(SUMMARY_FILE)

  def is_complete(self) -> bool:
    """Whether the run finished (status complete)."""
    status = self.status
    return status is not None and status["status"] == "complete"

  def is_finished(self) -> bool:
    """Whether the run ended for good (complete or diverged): a rerun skips it."""
    status = self.status
    return status is not None and status["status"] in FINISHED_STATUSES

  @property
  def divergence(self) -> dict | None:
    """{"iteration", "env_steps"} where the run's loss or parameters were
    first seen non-finite (see :meth:`note_divergence`), else None."""
    try:
      status = self.status or {}
    except UserError:
      return None
    found = status.get("diverged")
    return found if isinstance(found, dict) else None

  def _write_status(self, status: str, error: str | None, env_steps: int | None) -> None:
    """Write status.json; a divergence noted at or before `env_steps` is kept
    (one noted later is dropped: a resume from an earlier checkpoint meets it
    again)."""
    try:
      old = self.status or {}
    except UserError:
      old = {}
    if env_steps is None:
      try:
        env_steps = int(old.get("env_steps", 0))
      except (TypeError, ValueError):
        env_steps = 0
    doc = {
      "status": status,
      "error": error,
      "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
      "env_steps": int(env_steps),
      "host": socket.gethostname(),
      "pid": os.getpid(),
    }
    found = old.get("diverged")
    if isinstance(found, dict) and int(found.get("env_steps", 0)) <= int(env_steps):
      doc["diverged"] = found
    _write_record(self.path / STATUS_FILE, doc)

  def note_divergence(self, iteration: int, env_steps: int) -> None:
    """Record that the loss or the parameters became non-finite at
    `iteration` (`env_steps` env steps); the first noted one is kept. The
    status stays running until :meth:`mark_complete` makes it diverged."""
    if self.divergence is not None:
      return
    status = self.status or {"status": "running", "env_steps": 0}
    steps = max(int(status.get("env_steps", 0)), int(env_steps))
    _write_record(
      self.path / STATUS_FILE,
      {
        **status,
        "env_steps": steps,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "diverged": {"iteration": int(iteration), "env_steps": int(env_steps)},
      },
    )

  def mark_running(self, env_steps: int = 0) -> None:
    """Record that the run is in progress at `env_steps` (also a heartbeat)."""
    self._write_status("running", None, env_steps)

  def mark_complete(self, summary: dict, env_steps: int | None = None) -> None:
    """Write summary.json, then mark the run complete, or diverged when a
    divergence was noted (:meth:`note_divergence`).

    The summary is written first, so a finished status implies a summary. A
    diverged run's summary gets ``"diverged": {"iteration", "env_steps"}``
    beside its evaluated figures (non-finite ones are written as null).
    `env_steps` defaults to the last recorded value.
    """
    found = self.divergence
    if found is not None and (env_steps is None or found["env_steps"] <= env_steps):
      _write_record(self.path / SUMMARY_FILE, {**summary, "diverged": found})
      self._write_status(
        "diverged",
        f"loss or parameters non-finite at iteration {found['iteration']} "
        f"({found['env_steps']} env steps)",
        env_steps,
      )
      return
    _write_record(self.path / SUMMARY_FILE, summary)
    self._write_status("complete", None, env_steps)
    training_checkpoint.remove(self.path)  # kept only to resume an unfinished run

  def mark_interrupted(self, env_steps: int) -> None:
    """Record that the run was stopped by a signal at `env_steps` (it resumes)."""
    self._write_status("interrupted", None, env_steps)

  def mark_failed(self, error: str, env_steps: int | None = None) -> None:
    """Mark the run failed with the message `error`."""
    self._write_status("failed", str(error), env_steps)

  # -- metrics -----------------------------------------------------------------

  def _read_metrics_raw(self) -> tuple[list[str], list[list[str]]]:
    """Header and rows of metrics.csv as text ([], [] if missing)."""
    return read_table(self.path / METRICS_FILE)

  def _write_metrics_raw(self, header: list[str], rows: list[list[str]]) -> None:
    write_table(self.path / METRICS_FILE, header, rows)

  def append_metrics(self, rows: list[dict]) -> None:
    """Append rows to metrics.csv.

    The rows are appended (one write, one fsync; the table is not read or
    rewritten): a kill can tear only the last line, which readers ignore and
    the next append or truncation cuts off (see :mod:`disco_eval.store.metrics`).
    The first row ever written fixes the header (in its key order); every
    later row must have exactly those keys (else UserError).
    Values are numbers (floats round-trip exactly, NaN/inf included), strings
    or None; booleans are stored as 1/0.
    """
    if not rows:
      return
    header, raw = read_header(self.path / METRICS_FILE), []
    if not header:
      header = list(rows[0].keys())
      if not all(isinstance(key, str) for key in header):
        raise TypeError("metrics column names must be strings")
    for row in rows:
      if set(row) != set(header):
        raise UserError(
          f"run {self.path} metrics.csv has columns {header} but a new row has "
          f"{list(row)}; pass --out DIR to record this run elsewhere"
        )
      raw.append([format_cell(row[key]) for key in header])
    append_rows(self.path / METRICS_FILE, header, raw)

  def read_metrics(self) -> list[dict]:
    """The metrics rows, numbers parsed as int/float and empty cells as None."""
    header, raw = self._read_metrics_raw()
    return [dict(zip(header, map(parse_cell, row))) for row in raw]

  def truncate_metrics(self, env_steps: int) -> None:
    """Drop the rows logged after `env_steps` (a checkpoint's step count).

    Used on resume so that a resumed run never duplicates rows.
    """
    header, raw = self._read_metrics_raw()
    if not raw:
      if header and torn(self.path / METRICS_FILE):
        self._write_metrics_raw(header, raw)
      return
    if STEP_COLUMN not in header:
      raise ValueError(f"metrics.csv of {self.path} has no {STEP_COLUMN!r} column")
    column = header.index(STEP_COLUMN)
    kept = [row for row in raw if float(row[column]) <= env_steps]
    if len(kept) != len(raw) or torn(self.path / METRICS_FILE):
      self._write_metrics_raw(header, kept)

  # -- checkpoints -------------------------------------------------------------

  def save_checkpoint(
    self, state: Any, env_steps: int, extra: dict | None = None, keep: int = 2
  ) -> None:
    """Save `state` (a pytree of arrays) as the run's newest checkpoint, keeping
    the `keep` newest (see :func:`disco_eval.store.training_checkpoint.save`)."""
    training_checkpoint.save(self.path, state, env_steps, extra, keep)

  def checkpoint_steps(self) -> list[int]:
    """env_steps of the committed checkpoints, newest first."""
    return training_checkpoint.steps(self.path)

  def load_checkpoint(
    self, template: Any, env_steps: int | None = None
  ) -> tuple[Any, int, dict] | None:
    """(state, env_steps, extra) of the newest checkpoint (or of the one at
    `env_steps`), or None if there is none; the state has `template`'s
    structure (see :func:`disco_eval.store.training_checkpoint.load`)."""
    return training_checkpoint.load(self.path, template, env_steps)


def _running_status(path: Path) -> dict | None:
  """status.json of the run folder `path` when it says ``running``, else None."""
  try:
    doc = read_json(Path(path) / STATUS_FILE)
  except (OSError, ValueError):
    return None
  return doc if isinstance(doc, dict) and doc.get("status") == "running" else None


def writer_elsewhere(path: Path) -> str | None:
  """``"HOST (pid N)"`` when the run folder `path` says ``running`` and names
  another host as its writer: whether that process lives cannot be checked
  from here. None otherwise. Reads only."""
  doc = _running_status(path)
  host = None if doc is None else doc.get("host")
  if not isinstance(host, str) or not host or host == socket.gethostname():
    return None
  pid = doc.get("pid")
  return f"{host} (pid {pid})" if isinstance(pid, int) else host


def writer_gone(path: Path) -> bool:
  """Whether the run folder `path` says ``running`` but the process that
  wrote it is gone: its status names this host and a pid that no longer
  exists (a writer killed by the kernel's OOM killer or SIGKILL leaves no
  status behind). False when unknown (another host, no pid). Reads only."""
  doc = _running_status(path)
  if doc is None:
    return False
  pid = doc.get("pid")
  if doc.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
    return False
  if pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except PermissionError:
    return False
  return False
