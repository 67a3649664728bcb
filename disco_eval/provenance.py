"""Where a run came from: the command line and the code that made it.

Every run's ``config.json`` holds, under ``"provenance"``::

  {"command": ["disco-eval", "run", "catch", ...],   # the command line (null: used as a library)
   "version": "0.1.0",                               # disco-eval's version
   "git": {"commit": "<sha>", "dirty": false,        # when run from a git checkout
           "diff_sha256": "<sha256 of `git diff HEAD`>" or null},
   "data": {"boxoban": {"<split>": "<sha256>"}}}      # Sokoban: the level sets read

``git`` is null when disco-eval is not imported from a git checkout (e.g.
installed from a wheel). ``dirty`` says whether tracked files differ from the
commit or untracked files lie in the package's folder; ``diff_sha256``
fingerprints those differences (``git diff HEAD`` and the untracked files of
``disco_eval/``), so that runs of the same uncommitted code can be told apart
from runs of other code. Provenance is recorded, not matched: like the
runtime it is one of the config's volatile keys (store.config_match), and a
resumed run keeps the provenance of the invocation that created it.

The command line is the one given to the ``disco-eval`` process; processes it
starts (e.g. a local Ray instance) read it from ``DISCO_EVAL_COMMAND``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from disco_eval import __version__

PROVENANCE_KEY = "provenance"
COMMAND_ENV = "DISCO_EVAL_COMMAND"


def note_command(argv: list[str] | None = None) -> None:
  """Remembers the invoking command line (default ``sys.argv``) for this
  process and the processes it starts."""
  argv = list(sys.argv if argv is None else argv)
  if argv:
    argv[0] = Path(argv[0]).name
    if argv[0] in ("__main__.py", "cli"):
      argv[0] = "disco-eval"
  os.environ[COMMAND_ENV] = json.dumps(argv)


def command() -> list[str] | None:
  """The command line noted by :func:`note_command`, or None (disco-eval
  used as a library: the process's own command line says nothing of it)."""
  noted = os.environ.get(COMMAND_ENV)
  if noted:
    try:
      argv = json.loads(noted)
      if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
        return argv
    except ValueError:
      pass
  return None


def command_line(argv: list[str]) -> str:
  """`argv` as one shell-quoted line."""
  return shlex.join(argv)


def _git(root: Path, *args: str) -> str | None:
  """The output of ``git -C root ARGS`` or None when git fails."""
  try:
    done = subprocess.run(
      ["git", "-C", str(root), *args], capture_output=True, timeout=20, check=False
    )
  except (OSError, subprocess.SubprocessError):
    return None
  return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any] | None:
  """{"commit", "dirty", "diff_sha256"} of the checkout disco-eval is imported
  from, or None when it is not a git checkout (or git is missing)."""
  root = Path(__file__).resolve().parent.parent
  if not (root / ".git").exists():
    return None
  commit = _git(root, "rev-parse", "HEAD")
  if not commit:
    return None
  diff = _git(root, "diff", "HEAD", "--no-color", "--no-ext-diff")
  untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--", "disco_eval")
  if diff is None or untracked is None:
    return {"commit": commit.strip(), "dirty": None, "diff_sha256": None}
  digest = hashlib.sha256(diff.encode())
  for name in sorted(untracked.splitlines()):  # new modules not yet committed
    digest.update(name.encode() + b"\0")
    try:
      digest.update(hashlib.sha256((root / name).read_bytes()).digest())
    except OSError:
      pass
  dirty = bool(diff.strip() or untracked.strip())
  digest = digest.hexdigest() if dirty else None
  return {"commit": commit.strip(), "dirty": dirty, "diff_sha256": digest}


def data_fingerprint(suite: str) -> dict[str, Any] | None:
  """The sha256 of the cached data files a suite's runs read (Sokoban: the
  Boxoban level splits, as ``data pull boxoban`` recorded them), or None."""
  if suite != "sokoban":
    return None
  from disco_eval.envs import boxoban  # here: only Sokoban's runs need it

  try:
    splits = boxoban.read_record().get("splits") or {}
  except Exception:  # noqa: BLE001 - an unreadable record is reported where levels load
    return None
  if not splits:
    return None
  return {"boxoban": {k: v.get("sha256") for k, v in sorted(splits.items())}}


def data_difference(old: dict, new: dict, where: str = "") -> str | None:
  """The first data file (key path) that `old` (a recorded fingerprint)
  lists and `new` lacks or holds with another sha256; None if none (files
  that only `new` lists, e.g. splits pulled later, do not count)."""
  for key in sorted(old):
    a, b = old[key], new.get(key) if isinstance(new, dict) else None
    if isinstance(a, dict):
      found = data_difference(a, b if isinstance(b, dict) else {}, f"{where}{key}.")
      if found is not None:
        return found
    elif a != b:
      return f"{where}{key}: sha256 {str(a)[:12]} there, {str(b)[:12] if b else 'absent'} here"
  return None


def current(suite: str | None = None) -> dict[str, Any]:
  """This process's provenance (see the module's docstring); with `suite`,
  the fingerprint of the data its runs read too (``"data"``)."""
  git = git_state()
  doc = {"command": command(), "version": __version__, "git": dict(git) if git else None}
  data = data_fingerprint(suite) if suite else None
  if data is not None:
    doc["data"] = data
  return doc


def code_difference(recorded: dict | None, now: dict | None = None) -> str | None:
  """Why the code now differs from the code a run recorded (a phrase), or None
  when it is the same as far as the records tell."""
  if not isinstance(recorded, dict):
    return "the run records no provenance (it was made before disco-eval recorded its code)"
  now = current() if now is None else now
  if recorded.get("version") != now["version"]:
    return f"it was made by disco-eval {recorded.get('version')}, this is {now['version']}"
  old, new = recorded.get("git"), now["git"]
  if old is None and new is None:
    return None
  if old is None or new is None:
    where = "a git checkout" if old else "an installed package"
    return f"it was made from {where}, this disco-eval is not"
  if old.get("commit") != new.get("commit"):
    return f"it was made at commit {str(old.get('commit'))[:12]}, this is {new['commit'][:12]}"
  if old.get("dirty") or new.get("dirty"):
    if old.get("diff_sha256") != new.get("diff_sha256"):
      return "the uncommitted changes of the checkout differ from those it was made with"
  return None
