"""``disco-eval doctor``: what this machine offers a run, and the fix for what is missing.

:func:`checks` returns one :class:`Check` per item: Python and package
versions, JAX's backend and devices, device and host memory, CPUs and
EnvPool's threads, the system libraries ProcGen needs (Qt5, through
EnvPool), the persistent compilation cache and the environment variables a
run records (:mod:`disco_eval.runtime`). A check that fails and is
``required`` makes the command exit 1; the others only say what a suite or
a speed-up would need.
"""

import ctypes.util
import dataclasses
import os
import platform
import subprocess
from importlib import metadata
from typing import Callable

from disco_eval import runtime

GIB = 1024**3
# (package, required, what needs it)
PACKAGES = (
  ("jax", True, "every run"),
  ("jaxlib", True, "every run"),
  ("flax", True, "every run"),
  ("optax", True, "every run"),
  ("numpy", True, "every run"),
  ("envpool", False, "the procgen suite"),
  ("crafter", False, "the crafter suite"),
  ("nle", False, "the nethack suite"),
)
# Shared libraries EnvPool's ProcGen module links against (Ubuntu/Debian packages).
QT5_LIBRARIES = (("Qt5Gui", "libqt5gui5"), ("Qt5Core", "libqt5core5a"))


@dataclasses.dataclass(frozen=True)
class Check:
  """One line of the report.

  Attributes:
    name: what is checked (``backend``, ``jax``, ``libQt5Gui``, ...).
    value: what was found, in words.
    ok: whether it is there and usable.
    required: whether a run cannot do without it (a failed required check
      makes ``doctor`` exit 1).
    fix: what to do when not ok.
  """

  name: str
  value: str
  ok: bool = True
  required: bool = False
  fix: str | None = None

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def _version(name: str) -> str | None:
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return None


def package_checks(version: Callable[[str], str | None] = _version) -> list[Check]:
  """Python's and each package's version (:data:`PACKAGES`)."""
  py = platform.python_version()
  rows = [
    Check(
      "python",
      py,
      ok=tuple(map(int, py.split(".")[:2])) >= (3, 11),
      required=True,
      fix="use Python 3.11 or newer",
    )
  ]
  for name, required, what in PACKAGES:
    found = version(name)
    rows.append(
      Check(
        name,
        found or "not installed",
        ok=found is not None,
        required=required,
        fix=None if found else f"pip install -e . (needed by {what})",
      )
    )
  return rows


def backend_checks(find_gpu: Callable[[], str | None] | None = None) -> list[Check]:
  """JAX's backend and devices; a GPU on the machine that JAX does not use fails
  (`find_gpu`, default :func:`disco_eval.runtime.gpu_present`)."""
  evidence = (find_gpu or runtime.gpu_present)()
  try:
    import jax

    backend, devices = jax.default_backend(), jax.devices()
  except Exception as e:  # noqa: BLE001 - a broken jaxlib/CUDA install is the finding
    return [
      Check(
        "backend",
        f"JAX cannot start: {e}".splitlines()[0],
        ok=False,
        required=True,
        fix=runtime.CUDA_FIX if evidence else "pip install -e .",
      )
    ]
  unused_gpu = bool(evidence) and backend == "cpu"
  kinds = sorted({d.device_kind for d in devices})
  return [
    Check(
      "backend",
      backend + (f" (a GPU is present: {evidence})" if evidence else ""),
      ok=not unused_gpu,
      required=True,
      fix=f"JAX's CUDA build: {runtime.CUDA_FIX}" if unused_gpu else None,
    ),
    Check("devices", f"{len(devices)} x {', '.join(kinds)}"),
  ]


def memory_checks() -> list[Check]:
  """Each device's memory (where its backend reports it) and the host's RAM."""
  rows = []
  for d in runtime.device_memory():
    limit = d["bytes_limit"]
    text = f"{limit / GIB:.1f} GiB" if limit else "not reported by this backend"
    rows.append(Check(f"memory {d['device']}", text))
  host = runtime.host_memory_bytes()
  if host["total"]:
    avail = host["available"] or 0
    rows.append(Check("host RAM", f"{host['total'] / GIB:.1f} GiB ({avail / GIB:.1f} available)"))
  return rows


def cpu_checks() -> list[Check]:
  """CPUs this process may use and the threads EnvPool steps ProcGen with."""
  total = os.cpu_count() or 1
  usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
  return [
    Check("CPUs", f"{usable} usable of {total}"),
    # envs/procgen.py passes num_threads=0, which EnvPool reads as
    # min(batch_size, std::thread::hardware_concurrency()) (sail-sg/envpool,
    # envpool/core/async_envpool.h): all the machine's CPUs, not the usable ones.
    Check("EnvPool threads", f"0 = EnvPool's default: min(envs per pool, {total} CPUs)"),
  ]


def _ldconfig_names() -> str | None:
  """The text of ``ldconfig -p`` (the linker cache), or None without ldconfig."""
  for exe in ("ldconfig", "/sbin/ldconfig"):
    try:
      return subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
      continue
  return None


def library_checks(linker_cache: str | None = None) -> list[Check]:
  """The Qt5 libraries EnvPool's ProcGen needs (found in ``ldconfig -p``)."""
  cache = _ldconfig_names() if linker_cache is None else linker_cache
  rows = []
  for lib, package in QT5_LIBRARIES:
    found = f"lib{lib}.so" in cache if cache else ctypes.util.find_library(lib) is not None
    rows.append(
      Check(
        f"lib{lib}",
        "found" if found else "not found",
        ok=found,
        fix=None if found else f"apt-get install {package} (ProcGen through EnvPool needs it)",
      )
    )
  return rows


def cache_checks() -> list[Check]:
  """The persistent compilation cache, determinism and the recorded variables."""
  status = runtime.cache_status()
  if status["enabled"]:
    cache = Check(
      "compile cache",
      f"{status['dir']} ({status['entries']} files, {status['bytes'] / 2**20:.1f} MiB)",
    )
  else:
    cache = Check(
      "compile cache",
      f"off ({runtime.CACHE_ENV} is set)",
      ok=False,
      fix=f"unset {runtime.CACHE_ENV} to reuse compiled programs across starts",
    )
  env = runtime.recorded_env()
  return [
    cache,
    Check("deterministic ops", "on" if runtime.deterministic() else "off (runs default)"),
    Check("recorded env", ", ".join(f"{k}={v}" for k, v in env.items()) or "none set"),
  ]


def checks(find_gpu: Callable[[], str | None] | None = None) -> list[Check]:
  """Every check, in the order the report prints them."""
  return [
    *backend_checks(find_gpu),
    *memory_checks(),
    *package_checks(),
    *cpu_checks(),
    *library_checks(),
    *cache_checks(),
  ]


def failed_required(rows: list[Check]) -> list[Check]:
  """The required checks that failed (``doctor`` exits 1 when any did)."""
  return [c for c in rows if c.required and not c.ok]
