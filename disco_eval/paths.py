"""Where disco-eval keeps things: the project root and the user cache.

``$DISCO_EVAL_HOME`` overrides the cache folder (default: the user's cache
directory, ``$XDG_CACHE_HOME/disco-eval`` or ``~/.cache/disco-eval``).
"""

import os
from pathlib import Path

from disco_eval.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent


def home() -> Path:
  """The cache folder (rules, data). Not created here."""
  env = os.environ.get("DISCO_EVAL_HOME")
  if env:
    return Path(env).expanduser()
  xdg = os.environ.get("XDG_CACHE_HOME")
  base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
  return base / "disco-eval"


def manifest_dir(kind: str) -> Path:
  """Folder of the built-in manifests of `kind` ('rules' or 'suites').

  ``$DISCO_EVAL_MANIFESTS`` may point at a folder holding ``rules/`` and
  ``suites/`` to use instead of the ones shipped with the project. Otherwise a
  checkout (or an editable install of one) reads the folders at its top, and an
  installed wheel the copies it carries in ``disco_eval/manifests/`` (setup.py).
  """
  env = os.environ.get("DISCO_EVAL_MANIFESTS")
  if env:
    root = Path(env)
  elif (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / kind).is_dir():
    root = PROJECT_ROOT
  else:
    root = PACKAGE_DIR / "manifests"
  folder = root / kind
  if not folder.is_dir():
    raise UserError(
      f"no {kind} manifests at {folder}; reinstall disco-eval (pip install disco-eval, or "
      "pip install -e . in a checkout) or set DISCO_EVAL_MANIFESTS to a folder holding "
      "rules/ and suites/"
    )
  return folder
