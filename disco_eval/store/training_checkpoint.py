"""A run's training checkpoint: the learner state it resumes from.

(The frozen weights of a learned rule are not a checkpoint here: see
:mod:`disco_eval.rules.weights`.) The folder ``<run>/checkpoint/`` holds::

  checkpoint.json  format, and for each kept checkpoint (newest first): the
                   structure (leaf paths, shapes, dtypes), env_steps, extra
                   metadata and the name and sha256 of its arrays file
  state-*.npz      the arrays, one entry per pytree leaf (a zip of .npy
                   files, stored uncompressed: ``numpy.load`` reads it)

The arrays file is streamed: leaf after leaf, each array's bytes go to the
open temp file in pieces of at most 16 MiB while the sha256 is updated with
the same bytes (no in-memory copy of the whole state, no second pass to hash
it); the file is fsynced once and renamed into place
(:func:`~disco_eval.store.atomic.atomic_writer`). The device-to-host copy of
the next leaf is started while a leaf is written.

Writing ``checkpoint.json`` is the commit point: the arrays file is written
before it and unlisted arrays files are deleted only after it, so a crash at
any moment leaves the old or the new list loadable. The two newest are kept
by default.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from disco_eval.errors import UserError
from disco_eval.store.atomic import (
  atomic_writer,
  dumps,
  link_error,
  make_dirs,
  read_json,
  write_atomic,
)
from disco_eval.store.layout import CHECKPOINT_DIR, CHECKPOINT_META
from disco_eval.store.schema import versioned

_CHECKPOINT_FORMAT = "disco-eval-checkpoint/2"
_PIECE = 16 << 20  # bytes written, or read while hashing, at a time


def _fix(folder: Path) -> str:
  """The advice closing every message about an unusable checkpoint."""
  return f"delete {folder} to start over or pass --out DIR"


def _dtype_from_name(name: str) -> np.dtype:
  """numpy dtype from its name, ml_dtypes' (bfloat16, float8_*) included."""
  try:
    return np.dtype(name)
  except TypeError:
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, name))


def _leaf_name(path: str) -> str:
  return path or "<root>"


def _stored(array: np.ndarray, path: str) -> np.ndarray:
  """`array` as the npz stores it (ml_dtypes' bits as unsigned integers)."""
  if array.dtype.kind == "V" and array.dtype.fields is None:
    # ml_dtypes (bfloat16, float8): .npy cannot name them; store the bits.
    return array.view(np.dtype(f"u{array.dtype.itemsize}"))
  if array.dtype.kind in "biufcSU":
    return array
  raise TypeError(f"checkpoint leaf {_leaf_name(path)} has unsupported dtype {array.dtype}")


def _describe(path: str, entry: str, leaf: Any) -> dict:
  """The leaf description checkpoint.json keeps (path, entry, shape, dtype),
  from the leaf's shape and dtype alone (no copy to the host)."""
  dtype = np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
  # Names ("float32", "bfloat16") where they exist; '<U5'-style for text.
  name = dtype.str if dtype.kind in "SU" else dtype.name
  return {"path": path, "entry": entry, "shape": list(np.shape(leaf)), "dtype": name}


def _flatten_state(state: Any) -> tuple[list[tuple[str, Any]], list[dict]]:
  """[(npz entry, leaf)] and leaf descriptions of a pytree."""
  import jax

  leaves, _ = jax.tree_util.tree_flatten_with_path(state)
  pairs, described = [], []
  for i, (key_path, leaf) in enumerate(leaves):
    path, entry = jax.tree_util.keystr(key_path), f"leaf_{i:05d}"
    if hasattr(leaf, "dtype"):
      _stored(np.empty((0,), leaf.dtype), path)  # an unsupported dtype fails before any write
    pairs.append((entry, leaf))
    described.append(_describe(path, entry, leaf))
  return pairs, described


class _Hashing:
  """A write-only file passing its bytes on to `sink`, hashing them (sha256)."""

  def __init__(self, sink: Any):
    self.sink, self.sha = sink, hashlib.sha256()

  def write(self, data) -> int:
    self.sha.update(data)
    return self.sink.write(data)

  def flush(self) -> None:
    """Nothing is buffered here."""


def _write_npy(out: Any, array: np.ndarray) -> None:
  """`array` as a .npy file into `out`: the header, then the array's own
  bytes in pieces of at most 16 MiB (no copy of a C-ordered array)."""
  array = np.ascontiguousarray(array)
  header = np.lib.format.header_data_from_array_1_0(array)
  try:
    np.lib.format.write_array_header_1_0(out, header)
  except ValueError:  # a header too long for format 1.0
    np.lib.format.write_array_header_2_0(out, header)
  flat = array.reshape(-1).view(np.uint8)
  for i in range(0, flat.size, _PIECE):
    out.write(flat[i : i + _PIECE])


def _write_npz(path: Path, pairs: list[tuple[str, Any]], described: list[dict]) -> str:
  """Streams the leaves into the npz file `path` (atomically); its sha256."""
  with atomic_writer(path) as sink:
    out = _Hashing(sink)
    # An unseekable file: zipfile writes each member once, in order.
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
      for i, ((entry, leaf), leaf_info) in enumerate(zip(pairs, described)):
        if i + 1 < len(pairs) and hasattr(pairs[i + 1][1], "copy_to_host_async"):
          pairs[i + 1][1].copy_to_host_async()  # overlaps the next transfer with this write
        array = _stored(np.asarray(leaf), leaf_info["path"])
        with zf.open(f"{entry}.npy", "w", force_zip64=True) as member:
          _write_npy(member, array)
        del array
  return out.sha.hexdigest()


def _as_template_leaf(value: np.ndarray, template: Any) -> Any:
  """`value` in the kind of the template leaf (jax array, numpy, Python)."""
  import jax

  if isinstance(template, jax.Array):
    return jax.device_put(value, template.sharding)
  if isinstance(template, jax.ShapeDtypeStruct):
    sharding = template.sharding
    return jax.device_put(value, sharding) if sharding is not None else jax.device_put(value)
  if isinstance(template, np.ndarray):
    return value
  if isinstance(template, np.generic):
    return value[()]
  if isinstance(template, (bool, int, float, complex, str, bytes)):
    return value.item()
  return value


def entries(run_path: Path) -> list[dict]:
  """The committed checkpoints of the run folder `run_path`, newest first
  ([] if none); UserError if checkpoint.json is unreadable."""
  folder = Path(run_path) / CHECKPOINT_DIR
  try:
    meta = read_json(folder / CHECKPOINT_META)
  except FileNotFoundError:
    return []
  except (OSError, ValueError) as exc:
    raise UserError(f"checkpoint {folder} is unreadable ({exc}); {_fix(folder)}") from exc
  if not isinstance(meta, dict) or meta.get("format") != _CHECKPOINT_FORMAT:
    raise UserError(f"checkpoint {folder} has an unknown format; {_fix(folder)}")
  return list(meta.get("checkpoints", []))


def steps(run_path: Path) -> list[int]:
  """env_steps of the committed checkpoints, newest first."""
  return [int(c["env_steps"]) for c in entries(run_path)]


def save(
  run_path: Path, state: Any, env_steps: int, extra: dict | None = None, keep: int = 2
) -> None:
  """Save `state` (a pytree of arrays) as the newest checkpoint of a run.

  The arrays are streamed to a new ``state-*.npz`` first (hashed as they
  are written, see the module's docstring); then ``checkpoint.json``
  (for each of the `keep` newest checkpoints: leaf paths from
  jax.tree_util.tree_flatten_with_path, shapes, dtypes, env_steps, `extra`
  and the npz's sha256) is replaced, which is the commit point; only then
  are npz files no longer listed deleted. A crash at any moment leaves the
  old or the new list loadable. Keeping two lets runs trained together
  (vmapped seeds) resume together from a checkpoint they all have, even if
  a kill came while their newest ones were being written.
  """
  pairs, leaves = _flatten_state(state)
  folder = Path(run_path) / CHECKPOINT_DIR
  make_dirs(folder, Path(run_path))
  name = f"state-{int(env_steps):012d}-{secrets.token_hex(4)}.npz"
  sha = _write_npz(folder / name, pairs, leaves)
  entry = {
    "npz": name,
    "sha256": sha,
    "env_steps": int(env_steps),
    "extra": extra or {},
    "leaves": leaves,
    "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
  }
  try:
    older = [c for c in entries(run_path) if c["env_steps"] != int(env_steps)]
  except UserError:
    older = []
  kept = [entry] + older[: max(0, keep - 1)]
  meta = dumps(versioned({"format": _CHECKPOINT_FORMAT, "checkpoints": kept})).encode("utf-8")
  write_atomic(folder / CHECKPOINT_META, meta)  # the commit point
  _delete_unlisted(folder, {c["npz"] for c in kept})


def remove(run_path: Path) -> None:
  """Deletes the checkpoints of a finished run: checkpoint.json first (the
  list, so that a kill midway leaves no listed file missing), then the npz
  files, then the folder. A link there is refused (never followed)."""
  folder = Path(run_path) / CHECKPOINT_DIR
  if os.path.islink(folder):
    raise link_error(folder)
  if not folder.is_dir():
    return
  with contextlib.suppress(FileNotFoundError):
    os.unlink(folder / CHECKPOINT_META)
  _delete_unlisted(folder, set())
  with contextlib.suppress(OSError):  # not empty: something else lies there
    os.rmdir(folder)


def _delete_unlisted(folder: Path, listed: set[str]) -> None:
  """Delete the ``state-*.npz`` files of `folder` that are not `listed`."""
  for item in os.scandir(folder):
    if item.name.startswith("state-") and item.name.endswith(".npz") and item.name not in listed:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(item.path)


def _file_sha256(path: Path) -> str:
  """sha256 of the file `path`, read in pieces of 16 MiB."""
  sha, buffer = hashlib.sha256(), bytearray(_PIECE)
  view = memoryview(buffer)
  with open(path, "rb") as f:
    while n := f.readinto(buffer):
      sha.update(view[:n])
  return sha.hexdigest()


def _read_arrays(folder: Path, meta: dict) -> tuple[dict[str, tuple[dict, np.ndarray]], int, dict]:
  """({leaf path: (description, stored array)}, env_steps, extra) of the
  checkpoint `meta` (one entry of checkpoint.json), its sha256 checked."""
  try:
    path = folder / meta["npz"]
    if _file_sha256(path) != meta["sha256"]:
      raise ValueError(f"{meta['npz']} does not match its sha256")
    with np.load(path, allow_pickle=False) as npz:
      saved = {leaf["path"]: (leaf, npz[leaf["entry"]]) for leaf in meta["leaves"]}
    return saved, int(meta["env_steps"]), meta.get("extra") or {}
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
    raise UserError(f"checkpoint {folder} is unreadable ({exc}); {_fix(folder)}") from exc


def _fit_template(folder: Path, template: Any, saved: dict[str, tuple[dict, np.ndarray]]) -> Any:
  """The pytree of `template`'s structure holding the `saved` arrays, each
  checked against the template leaf's shape and dtype (else UserError)."""
  import jax

  fix = _fix(folder)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
  values = []
  for key_path, leaf in leaves:
    path = jax.tree_util.keystr(key_path)
    if path not in saved:
      raise UserError(
        f"checkpoint {folder} does not fit this learner state: it has no "
        f"leaf {_leaf_name(path)}; {fix}"
      )
    described, stored = saved.pop(path)
    dtype = _dtype_from_name(described["dtype"])
    shape = tuple(described["shape"])
    want_shape = tuple(np.shape(leaf))
    want_dtype = np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    if shape != want_shape or dtype != want_dtype:
      raise UserError(
        f"checkpoint {folder} does not fit this learner state: leaf "
        f"{_leaf_name(path)} is {dtype.name}{list(shape)} there but "
        f"{want_dtype.name}{list(want_shape)} is expected; {fix}"
      )
    value = stored.view(dtype) if stored.dtype != dtype else stored
    values.append(_as_template_leaf(value.reshape(shape), leaf))
  if saved:
    raise UserError(
      f"checkpoint {folder} does not fit this learner state: it has "
      f"leaves the state lacks ({', '.join(map(_leaf_name, saved))}); {fix}"
    )
  return jax.tree_util.tree_unflatten(treedef, values)


def _check_entry(folder: Path, entry: dict) -> None:
  """UserError unless a checkpoint entry's env_steps agrees with its npz's
  name (written together by :func:`save`; a disagreement is an edit)."""
  try:
    named = int(str(entry["npz"]).split("-")[1])
    ok = named == int(entry["env_steps"]) and int(entry["env_steps"]) >= 0
  except (KeyError, IndexError, TypeError, ValueError):
    ok = False
  if not ok:
    raise UserError(
      f"checkpoint {folder} lists {entry.get('npz')!r} at {entry.get('env_steps')!r} env "
      f"steps, which its name contradicts; {_fix(folder)}"
    )


def check_resume_point(run_path: Path, iteration: int, env_steps: int, train: Any) -> None:
  """UserError unless a checkpoint's iteration counter and its env_steps
  agree for the run's loop settings `train` (its steps_per_iteration): a
  resume takes its position from the saved counters, cross-checked."""
  spi = int(getattr(train, "steps_per_iteration", 0) or 0)
  total = int(getattr(train, "iterations", 0) or 0)
  if spi <= 0 or iteration < 0 or iteration * spi != env_steps or iteration > total:
    folder = Path(run_path) / CHECKPOINT_DIR
    raise UserError(
      f"checkpoint {folder} says iteration {iteration} at {env_steps} env steps, which does "
      f"not fit this run ({spi} env steps per iteration, {total} iterations); {_fix(folder)}"
    )


def load(
  run_path: Path, template: Any, env_steps: int | None = None
) -> tuple[Any, int, dict] | None:
  """(state, env_steps, extra) of the newest checkpoint of a run (or of the
  one at `env_steps`), or None if there is none.

  The state has the structure of `template` (a pytree of arrays, of
  jax.ShapeDtypeStruct or of scalars); each leaf is matched by its key path
  and must have the template's shape and dtype, else UserError. Leaves come
  back as jax arrays where the template has jax arrays or ShapeDtypeStructs,
  as numpy where it has numpy, as Python scalars where it has those.
  """
  folder = Path(run_path) / CHECKPOINT_DIR
  found = entries(run_path)
  if env_steps is not None:
    found = [c for c in found if int(c["env_steps"]) == int(env_steps)]
    if not found:
      raise UserError(f"run {run_path} has no checkpoint at {env_steps} env steps; {_fix(folder)}")
  if not found:
    return None
  _check_entry(folder, found[0])
  saved, steps_done, extra = _read_arrays(folder, found[0])
  return _fit_template(folder, template, saved), steps_done, extra
