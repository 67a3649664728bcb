"""Where a run's files lie, and the versions every run records.

Every run owns one folder, ``<root>/<suite>/<task>/<rule>/seed<k>/``, holding
the files named here (see :mod:`disco_eval.store` for what each one holds).
"""

from __future__ import annotations

import contextlib
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from disco_eval import __version__
from disco_eval.errors import UserError

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_META = "checkpoint.json"
LOCK_FILE = ".lock"

STATUSES = ("running", "complete", "failed", "diverged", "interrupted")
# Statuses of a run that has ended and is not trained again by a rerun.
FINISHED_STATUSES = ("complete", "diverged")

# Packages whose versions are recorded with every run.
_VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "disco-eval")
# Environment packages, recorded when installed (config.fingerprint compares the suite's).
_ENV_PACKAGES = ("envpool", "gymnax", "craftax", "crafter", "nle")


def _check_name(kind: str, value: Any) -> str:
  """`value` if it is usable as one folder name, else a UserError."""
  if not isinstance(value, str) or value in ("", ".", "..") or any(c in value for c in "/\\\0\n\r"):
    raise UserError(
      f"invalid {kind} name {value!r} for a run folder: use a non-empty name "
      "without '/', '\\' or line breaks"
    )
  return value


def run_dir(root: Path, suite: str, task: str, rule: str, seed: int) -> Path:
  """The folder of one run: ``<root>/<suite>/<task>/<rule>/seed<seed>``.

  Each name must be a single folder name (no separators, not ``.``/``..``), so
  a run folder always lies inside `root`.
  """
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise UserError(f"invalid seed {seed!r}: seeds are integers >= 0")
  return (
    Path(root)
    / _check_name("suite", suite)
    / _check_name("task", task)
    / _check_name("rule", rule)
    / f"seed{int(seed)}"
  )


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
  for name in _ENV_PACKAGES:
    with contextlib.suppress(metadata.PackageNotFoundError):
      out[name] = metadata.version(name)
  if out["disco-eval"] == "not installed":
    out["disco-eval"] = __version__
  return out
