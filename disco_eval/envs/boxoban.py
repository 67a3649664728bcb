"""Boxoban levels: parse the public level files, cache them as arrays.

The public set (github deepmind/boxoban-levels, Apache-2.0) is a folder of
text files of 1,000 levels each::

  unfiltered/{train,valid,test}/NNN.txt   900,000 / 100,000 / 1,000 levels
  medium/{train,valid}/NNN.txt            450,000 / 50,000
  hard/NNN.txt                            3,332

Each level is a header line ``; N`` followed by 10 rows of 10 characters:
``#`` wall, space floor, ``.`` target, ``$`` box, ``@`` player, and (not in
the public files, but accepted) ``*`` box on a target and ``+`` player on a
target. Blank lines separate levels.

A split is converted once into ``paths.home()/data/boxoban/<split>.npz``:

  levels      int8 [N, 10, 10], one cell code per cell (``CODES``)
  level_ids   int32 [N], the number ``N`` of each level's header
  file_index  int32 [N], which of ``files`` each level comes from
  files       str [F], the source files, relative to the set's root

``data pull boxoban`` fills the cache, either from a local folder laid out
like the repository (``--from DIR``) or by downloading the repository's
archive (its sha256 is recorded on the first download and checked on every
later use). ``boxoban.json`` next to the arrays records where they came from.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import socket
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from disco_eval import __version__, paths, store
from disco_eval.errors import UserError

ARCHIVE_URL = "https://github.com/deepmind/boxoban-levels/archive/refs/heads/master.zip"
ARCHIVE_NAME = "boxoban-levels-master.zip"
RECORD_NAME = "boxoban.json"
SIZE = 10

# Cell codes of the cached arrays.
FLOOR, WALL, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = range(7)
CODES = {
  " ": FLOOR,
  "#": WALL,
  ".": TARGET,
  "$": BOX,
  "*": BOX_ON_TARGET,
  "@": PLAYER,
  "+": PLAYER_ON_TARGET,
}
CHARS = {code: char for char, code in CODES.items()}

# Split name -> folder of its text files inside the repository.
SPLITS = {
  "unfiltered-train": "unfiltered/train",
  "unfiltered-valid": "unfiltered/valid",
  "unfiltered-test": "unfiltered/test",
  "medium-train": "medium/train",
  "medium-valid": "medium/valid",
  "hard": "hard",
}

_INVALID = 127
_TABLE = bytes(CODES.get(chr(i), _INVALID) for i in range(256))


# --- parsing -------------------------------------------------------------------


def parse_levels(text: str | bytes, source: str = "<text>") -> tuple[np.ndarray, np.ndarray]:
  """All levels of one Boxoban file.

  Returns (codes int8 [N, 10, 10], level_ids int32 [N]). Rows shorter than 10
  characters (trailing spaces stripped) are padded with floor. Any malformed
  level (wrong size, unknown character, not exactly one player, as many
  boxes as targets) is a UserError naming `source` and the line.
  """
  data = text.encode() if isinstance(text, str) else bytes(text)
  lines = data.replace(b"\r\n", b"\n").split(b"\n")
  blocks: list[bytes] = []
  ids: list[int] = []
  header_line = 0
  rows: list[bytes] | None = None

  def close() -> None:
    if rows is None:
      return
    if len(rows) != SIZE:
      raise UserError(
        f"{source}:{header_line}: level '{ids[-1]}' has {len(rows)} rows, expected {SIZE}"
      )
    blocks.append(b"".join(rows))

  for number, line in enumerate(lines, start=1):
    stripped = line.strip()
    if stripped.startswith(b";"):
      close()
      try:
        ids.append(int(stripped[1:].strip() or b"-1"))
      except ValueError:
        raise UserError(
          f"{source}:{number}: malformed level header '{stripped.decode(errors='replace')}'"
        ) from None
      header_line, rows = number, []
    elif not stripped:
      continue
    elif rows is None:
      raise UserError(f"{source}:{number}: level rows before the first '; N' header")
    else:
      row = line.rstrip(b"\r")
      if len(row) > SIZE:
        raise UserError(f"{source}:{number}: row of {len(row)} characters, expected {SIZE}")
      rows.append(row.ljust(SIZE, b" "))
  close()
  if not blocks:
    return np.zeros((0, SIZE, SIZE), np.int8), np.zeros((0,), np.int32)
  flat = np.frombuffer(b"".join(blocks).translate(_TABLE), np.uint8)
  codes = flat.reshape(len(blocks), SIZE, SIZE)
  bad = np.argwhere(codes == _INVALID)
  if len(bad):
    i, r, c = bad[0]
    char = chr(blocks[i][r * SIZE + c])
    raise UserError(
      f"{source}: level '{ids[i]}' has the unknown character {char!r} at row {r}, column {c}"
    )
  codes = codes.astype(np.int8)
  _check_levels(codes, np.asarray(ids), source)
  return codes, np.asarray(ids, np.int32)


def _check_levels(codes: np.ndarray, ids: np.ndarray, source: str) -> None:
  players = np.sum((codes == PLAYER) | (codes == PLAYER_ON_TARGET), axis=(1, 2))
  boxes = np.sum((codes == BOX) | (codes == BOX_ON_TARGET), axis=(1, 2))
  targets = np.sum(
    (codes == TARGET) | (codes == BOX_ON_TARGET) | (codes == PLAYER_ON_TARGET), axis=(1, 2)
  )
  for what, bad in (
    ("not exactly one player", players != 1),
    ("not as many boxes as targets", boxes != targets),
    ("no box", boxes == 0),
  ):
    if np.any(bad):
      i = int(np.argmax(bad))
      raise UserError(f"{source}: level '{ids[i]}' has {what}")


def render_level(codes: np.ndarray) -> str:
  """The text rows (10 lines) of one level's codes [10, 10]."""
  return "\n".join("".join(CHARS[int(c)] for c in row) for row in np.asarray(codes))


def convert_files(files: Iterable[tuple[str, Callable[[], bytes]]]) -> dict[str, np.ndarray]:
  """Parses (name, reader) pairs, in the given order, into one split's arrays."""
  all_codes, all_ids, all_index, names = [], [], [], []
  for name, read in files:
    codes, ids = parse_levels(read(), name)
    all_codes.append(codes)
    all_ids.append(ids)
    all_index.append(np.full((len(ids),), len(names), np.int32))
    names.append(name)
  if not names:
    raise ValueError("no files")
  return {
    "levels": np.concatenate(all_codes),
    "level_ids": np.concatenate(all_ids),
    "file_index": np.concatenate(all_index),
    "files": np.asarray(names, dtype=str),
  }


# --- the cache -----------------------------------------------------------------


def data_dir() -> Path:
  """Where the converted splits live: ``paths.home()/data/boxoban``."""
  return paths.home() / "data" / "boxoban"


def split_path(split: str) -> Path:
  return data_dir() / f"{split}.npz"


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise UserError(f"unknown Boxoban split '{split}'; splits: {', '.join(SPLITS)}")


def load_split(split: str) -> dict[str, np.ndarray]:
  """All arrays of a cached split (see the module doc)."""
  _check_split(split)
  path = split_path(split)
  if not path.is_file():
    raise UserError(
      f"Boxoban levels '{split}' are not in the cache ({path}); run "
      f"`disco-eval data pull boxoban` (or `--from DIR` with a copy of "
      f"github.com/deepmind/boxoban-levels)"
    )
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise UserError(
      f"cached Boxoban split {path} is unreadable ({e}); run `disco-eval data pull boxoban --force`"
    ) from None
  levels = arrays.get("levels")
  if levels is None or levels.ndim != 3 or levels.shape[1:] != (SIZE, SIZE):
    raise UserError(
      f"cached Boxoban split {path} is malformed; run `disco-eval data pull boxoban --force`"
    )
  return arrays


def load_levels(split: str) -> np.ndarray:
  """The cell codes int8 [N, 10, 10] of a cached split."""
  return load_split(split)["levels"]


def _save_split(split: str, arrays: dict[str, np.ndarray]) -> dict:
  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  data = buf.getvalue()
  store.write_atomic(split_path(split), data)
  return {
    "levels": int(len(arrays["levels"])),
    "files": int(len(arrays["files"])),
    "sha256": hashlib.sha256(data).hexdigest(),
  }


def read_record() -> dict:
  """The cache record (boxoban.json): source, archive sha256, splits; {} if none."""
  path = data_dir() / RECORD_NAME
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    raise UserError(f"{path} is unreadable ({e}); delete it and pull again") from None


def cached_record() -> dict | None:
  """The cache record if it lists splits and every one of them is in the
  cache (so a pull has nothing to do), else None."""
  record = read_record()
  splits = record.get("splits") or {}
  if not splits or not all(split_path(split).is_file() for split in splits):
    return None
  return record


def _write_record(record: dict) -> None:
  store.write_atomic(
    data_dir() / RECORD_NAME,
    (json.dumps(store.versioned(record), indent=2, sort_keys=True) + "\n").encode(),
  )


def _mkdir(folder: Path) -> None:
  """Creates the cache folder `folder`; a link below $DISCO_EVAL_HOME is refused."""
  try:
    store.atomic.make_dirs(folder, paths.home())
  except OSError as e:
    raise UserError(f"can't create the cache folder {folder}: {e.strerror or e}") from None


# --- pulling -------------------------------------------------------------------


def import_folder(root: Path) -> dict:
  """Converts the splits found in `root` (laid out like the repository).

  Returns the record written to ``boxoban.json``: {source, splits: {split:
  {levels, files, sha256}}}. Splits absent from `root` are left as they are.
  """
  root = Path(root).expanduser()
  if not root.is_dir():
    raise UserError(f"--from {root}: no such folder")
  found = {split: sorted((root / sub).glob("*.txt")) for split, sub in SPLITS.items()}
  found = {k: v for k, v in found.items() if v}
  if not found:
    raise UserError(
      f"--from {root}: no level files found; expected the layout of "
      f"github.com/deepmind/boxoban-levels (unfiltered/train/*.txt, "
      f"unfiltered/test/*.txt, hard/*.txt, ...)"
    )
  _mkdir(data_dir())
  record = read_record()
  splits = dict(record.get("splits", {}))
  for split, files in found.items():
    arrays = convert_files((f.relative_to(root).as_posix(), f.read_bytes) for f in files)
    splits[split] = _save_split(split, arrays)
  record.update({"source": str(root.resolve()), "splits": splits})
  _write_record(record)
  return record


def import_archive(archive: Path) -> dict:
  """Converts every split of the repository's zip archive (read in place)."""
  try:
    zf = zipfile.ZipFile(archive)
  except (OSError, zipfile.BadZipFile) as e:
    raise UserError(
      f"{archive} is not a readable zip archive ({e}); delete it and pull again"
    ) from None
  with zf:
    members = [n for n in zf.namelist() if n.endswith(".txt")]
    splits = dict(read_record().get("splits", {}))
    for split, sub in SPLITS.items():
      chosen = sorted(n for n in members if n.split("/", 1)[-1].rsplit("/", 1)[0] == sub)
      if not chosen:
        continue
      arrays = convert_files((n.split("/", 1)[-1], (lambda n=n: zf.read(n))) for n in chosen)
      splits[split] = _save_split(split, arrays)
  if not splits:
    raise UserError(f"{archive} holds no Boxoban level files")
  record = read_record()
  record.update({"source": str(archive), "splits": splits})
  _write_record(record)
  return record


def pull(
  source: Path | None = None, *, url: str = ARCHIVE_URL, force: bool = False, timeout: float = 30.0
) -> dict:
  """Fills the cache with the converted splits; returns the cache record.

  With `source`, imports that folder. Otherwise, if the cache already holds
  every split it records (:func:`cached_record`), converts nothing and
  downloads nothing (works offline) unless `force`, but still checks a cached
  archive's sha256; else uses the archive in the cache (downloading it first
  if missing or `force`): the archive's sha256 is recorded on the first
  download and checked on every later use.
  """
  if source is not None:
    return import_folder(source)
  folder = data_dir()
  archive = folder / ARCHIVE_NAME
  cached = None if force else cached_record()
  if cached is not None:
    if archive.is_file():
      _check_archive(archive, cached.get("archive_sha256"), _sha256_file(archive))
    return cached
  _mkdir(folder)
  record = read_record()
  known = record.get("archive_sha256")
  if force or not archive.is_file():
    found = _download(url, archive, timeout, known)
  else:
    found = _sha256_file(archive)
  _check_archive(archive, known, found)
  if not known:
    record["archive_sha256"] = found
    record["archive_url"] = url
    _write_record(record)
  result = import_archive(archive)
  return result


def _check_archive(archive: Path, known: str | None, found: str) -> None:
  """UserError if the archive's sha256 `found` is not the one recorded."""
  if known and found != known:
    raise UserError(
      f"checksum mismatch for {archive}: recorded {known} on the first "
      f"download, found {found}; delete it (and {archive.parent / RECORD_NAME}) "
      f"to download it afresh"
    )


def _sha256_file(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _download(url: str, dest: Path, timeout: float, expected: str | None) -> str:
  """Streams `url` into a temp file, checks it, renames it onto `dest`."""
  by_hand = (
    f"download {ARCHIVE_URL} yourself and place it at {dest}, or unpack it and "
    f"run `disco-eval data pull boxoban --from DIR`"
  )
  tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
  digest = hashlib.sha256()
  received = 0
  request = urllib.request.Request(url, headers={"User-Agent": f"disco-eval/{__version__}"})
  try:
    try:
      fd = store.atomic.open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
      with open(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
        for chunk in iter(lambda: response.read(1 << 20), b""):
          out.write(chunk)
          digest.update(chunk)
          received += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    except urllib.error.HTTPError as e:
      raise UserError(f"download of {url} failed: HTTP {e.code}; {by_hand}") from None
    except urllib.error.URLError as e:
      raise UserError(f"`disco-eval` can't reach {url}: {_one_line(e.reason)}; {by_hand}") from None
    except (TimeoutError, socket.timeout):
      raise UserError(
        f"download of {url} timed out after {timeout:g}s ({received} bytes); {by_hand}"
      ) from None
    except (http.client.HTTPException, ConnectionError) as e:
      raise UserError(
        f"download of {url} was interrupted after {received} bytes ({_one_line(e)}); {by_hand}"
      ) from None
    found = digest.hexdigest()
    if expected and found != expected:
      raise UserError(
        f"checksum mismatch for {url}: recorded {expected} on the first "
        f"download, received {found} (nothing was saved); {by_hand}"
      )
    os.replace(tmp, dest)
  finally:
    tmp.unlink(missing_ok=True)
  return found


def _one_line(reason: object) -> str:
  if isinstance(reason, OSError) and reason.strerror:
    return " ".join(reason.strerror.split())
  return " ".join((str(reason) or type(reason).__name__).split())
