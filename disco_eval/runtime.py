"""The machine a run computes on: backend, determinism, compile cache, recorded environment.

Three things must happen before JAX initialises its backend (the first
``jax.devices()`` or computation), so the command line calls them first:

* :func:`setup_compile_cache`: a persistent compilation cache under
  ``$DISCO_EVAL_HOME/jax-cache`` (``DISCO_EVAL_COMPILE_CACHE=off`` turns it
  off, ``=PATH`` moves it), so that a second start of the same program reads
  its executable instead of compiling it again;
* :func:`apply_determinism`: ``--xla_gpu_deterministic_ops=true`` in
  ``XLA_FLAGS`` (``disco-eval run --deterministic``, or
  ``DISCO_EVAL_DETERMINISTIC=1``): deterministic scatters and autotuning on
  NVIDIA GPUs; a no-op on the CPU, whose programs are deterministic already;
* :func:`check_backend`: a GPU on the machine while JAX computes on the CPU
  (a CPU-only jaxlib) is refused, with the fix, unless allowed.

:func:`environment` is what each run records of all this (``config.json``,
key ``runtime``; not part of which runs are the same run: a run resumed on
another machine is still that run). :func:`backend_label` is its short form
for reports.
"""

import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

from disco_eval import paths
from disco_eval.errors import UserError

CACHE_ENV = "DISCO_EVAL_COMPILE_CACHE"  # "off"/"0": no cache; a path: cache there
DETERMINISTIC_ENV = "DISCO_EVAL_DETERMINISTIC"  # "1": deterministic XLA ops
CACHE_FOLDER = "jax-cache"
# Programs that compile faster than this are not cached: reading and writing
# an entry costs about as much. Our choice; JAX's own default is 1 s.
MIN_COMPILE_SECONDS = 0.5
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
# Environment variables (besides every JAX_* one) that can change what a run
# computes or how fast: XLA's flags and the GPU memory allocator's settings.
RESULT_ENV_VARS = (
  "XLA_FLAGS",
  "XLA_PYTHON_CLIENT_PREALLOCATE",
  "XLA_PYTHON_CLIENT_MEM_FRACTION",
  "XLA_PYTHON_CLIENT_ALLOCATOR",
  "CUDA_VISIBLE_DEVICES",
  "TF_CPP_MIN_LOG_LEVEL",
  CACHE_ENV,
  DETERMINISTIC_ENV,
)
CUDA_FIX = 'pip install -e ".[cuda12]"'
_OFF = ("0", "off", "false", "no", "")


def compile_cache_dir(env: Mapping[str, str] | None = None) -> Path | None:
  """Where the persistent compilation cache lives, None when it is off."""
  env = os.environ if env is None else env
  value = env.get(CACHE_ENV)
  if value is None:
    return paths.home() / CACHE_FOLDER
  if value.strip().lower() in _OFF:
    return None
  return Path(value).expanduser()


def setup_compile_cache(enabled: bool = True) -> Path | None:
  """Turns on JAX's persistent compilation cache (see the module doc).

  Sets ``JAX_COMPILATION_CACHE_DIR`` and the minimum compile time in the
  environment (read when jax is imported, so that processes started from
  this one use the cache too) and, if jax is imported already, in its
  config. A cache folder the user set with ``JAX_COMPILATION_CACHE_DIR``
  wins. ``enabled=False`` (``--no-compile-cache``) records
  ``DISCO_EVAL_COMPILE_CACHE=off`` and leaves the cache off.

  Returns:
    The cache folder, or None when the cache is off.
  """
  if not enabled:
    os.environ[CACHE_ENV] = "off"
  folder = compile_cache_dir()
  if folder is None:
    return None
  folder = Path(os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(folder)))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(MIN_COMPILE_SECONDS))
  if "jax" in sys.modules:  # already imported: its config read the environment before
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    min_secs = float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_secs)
  return folder


def cache_status(folder: Path | None = None) -> dict[str, Any]:
  """The cache folder, whether it is on, its entries and their bytes."""
  folder = compile_cache_dir() if folder is None else folder
  if folder is None:
    return {"enabled": False, "dir": None, "entries": 0, "bytes": 0}
  files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
  return {
    "enabled": True,
    "dir": str(folder),
    "entries": len(files),
    "bytes": sum(p.stat().st_size for p in files),
  }


def _backends_initialised() -> bool:
  """Whether this process's JAX has set up its backends (XLA_FLAGS read)."""
  bridge = sys.modules.get("jax._src.xla_bridge")
  return bool(getattr(bridge, "_backends", None))


def apply_determinism(on: bool, strict: bool = True) -> bool:
  """Asks XLA for deterministic ops when `on` (or ``DISCO_EVAL_DETERMINISTIC=1``).

  Adds :data:`DETERMINISTIC_FLAG` to ``XLA_FLAGS`` and sets
  ``DISCO_EVAL_DETERMINISTIC=1`` (worker processes inherit both). XLA reads
  its flags once, when the backend starts: asking after that is a UserError
  (`strict`), else changes nothing.

  Returns:
    Whether deterministic ops are asked for.
  """
  on = on or os.environ.get(DETERMINISTIC_ENV, "").strip().lower() not in _OFF
  if not on:
    return deterministic()
  if not deterministic():
    if _backends_initialised():
      if not strict:
        return False
      raise UserError(
        "--deterministic must be set before JAX starts its backend; "
        f"set XLA_FLAGS={DETERMINISTIC_FLAG} in the environment instead"
      )
    flags = os.environ.get("XLA_FLAGS", "").split()
    flags = [f for f in flags if not f.startswith("--xla_gpu_deterministic_ops")]
    os.environ["XLA_FLAGS"] = " ".join([*flags, DETERMINISTIC_FLAG])
  os.environ[DETERMINISTIC_ENV] = "1"
  return True


def deterministic(env: Mapping[str, str] | None = None) -> bool:
  """Whether ``XLA_FLAGS`` asks for deterministic GPU ops (the last setting wins)."""
  env = os.environ if env is None else env
  value = None
  for flag in env.get("XLA_FLAGS", "").split():
    name, _, setting = flag.partition("=")
    if name == "--xla_gpu_deterministic_ops":
      value = setting.strip().lower() in ("", "true", "1")
  return bool(value)


def gpu_present(
  which: Callable[[str], str | None] = shutil.which, driver: Path = Path("/proc/driver/nvidia")
) -> str | None:
  """What shows an NVIDIA GPU on this machine (``nvidia-smi`` on PATH, the
  driver's /proc folder), or None."""
  if which("nvidia-smi"):
    return "nvidia-smi is on PATH"
  if driver.exists():
    return f"{driver} exists"
  return None


def check_backend(
  allow_cpu: bool,
  backend: str | None = None,
  find_gpu: Callable[[], str | None] | None = None,
) -> None:
  """A UserError when a GPU is present but JAX computes on the CPU.

  Args:
    allow_cpu: run on the CPU anyway (``--allow-cpu``).
    backend: JAX's backend (default: ``jax.default_backend()``).
    find_gpu: what shows a GPU on this machine, or None (default: :func:`gpu_present`).
  """
  if allow_cpu:
    return
  evidence = (find_gpu or gpu_present)()
  if not evidence:
    return
  if backend is None:
    import jax

    backend = jax.default_backend()
  if backend == "cpu":
    raise UserError(
      f"this machine has a GPU ({evidence}) but JAX runs on the CPU: install JAX's CUDA "
      f"build with {CUDA_FIX} (or pass --allow-cpu to train on the CPU anyway)"
    )


def _version(name: str) -> str:
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return "not installed"


def recorded_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
  """The environment variables that can change results and are set, sorted."""
  env = os.environ if env is None else env
  names = {n for n in env if n.startswith("JAX_")} | {n for n in RESULT_ENV_VARS if n in env}
  return {n: env[n] for n in sorted(names)}


def environment() -> dict[str, Any]:
  """What a run records of the machine it computes on (``config.json`` key ``runtime``).

  Initialises JAX's backend (call it where the run computes).
  """
  import jax

  devices = jax.devices()
  cache = compile_cache_dir()
  return {
    "backend": jax.default_backend(),
    "device_kind": devices[0].device_kind if devices else None,
    "device_count": len(devices),
    "jax": jax.__version__,
    "jaxlib": _version("jaxlib"),
    "python": platform.python_version(),
    "deterministic": deterministic(),
    "compile_cache": str(cache) if cache else None,
    "env": recorded_env(),
  }


CPU_CHECKPOINT_EVERY = 10  # chunks between checkpoints on the CPU unless given


def checkpoint_every(given: int | None, backend: str) -> int | None:
  """Chunks between checkpoints of a run on `backend` (``jax.default_backend()``):
  `given` (``--checkpoint-every N``) when given; else CPU_CHECKPOINT_EVERY on
  the CPU and None (by the clock only: ``--checkpoint-minutes``) on
  accelerators, where a chunk takes seconds and a checkpoint every few chunks
  would stall the device for a large part of the wall time."""
  if given is not None:
    return given
  return CPU_CHECKPOINT_EVERY if backend == "cpu" else None


def backend_label(config: Mapping[str, Any] | None) -> str:
  """A run's backend in a few words, from its stored config: e.g.
  ``gpu: NVIDIA H200 x1, deterministic`` or ``cpu``; ``unknown`` for records
  written before the backend was recorded."""
  runtime = (config or {}).get("runtime")
  if not isinstance(runtime, Mapping) or not runtime.get("backend"):
    return "unknown"
  text = str(runtime["backend"])
  kind, count = runtime.get("device_kind"), runtime.get("device_count")
  if text != "cpu" and kind:
    text += f": {kind}" + (f" x{count}" if isinstance(count, int) else "")
  if runtime.get("deterministic"):
    text += ", deterministic"
  return text


def device_memory() -> list[dict[str, Any]]:
  """Per device: its kind and, where the backend reports them (GPUs), the
  bytes in use, the peak in use and the limit (``Device.memory_stats``)."""
  import jax

  rows = []
  for d in jax.devices():
    try:
      stats = d.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
      stats = {}
    rows.append(
      {
        "device": str(d),
        "kind": d.device_kind,
        "bytes_in_use": stats.get("bytes_in_use"),
        "peak_bytes_in_use": stats.get("peak_bytes_in_use"),
        "bytes_limit": stats.get("bytes_limit"),
      }
    )
  return rows


def host_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> dict[str, int | None]:
  """Total and available host RAM in bytes (None where /proc/meminfo is absent)."""
  out: dict[str, int | None] = {"total": None, "available": None}
  try:
    lines = meminfo.read_text().splitlines()
  except OSError:
    return out
  for line in lines:
    name, _, rest = line.partition(":")
    key = {"MemTotal": "total", "MemAvailable": "available"}.get(name)
    if key and rest.split():
      out[key] = int(rest.split()[0]) * 1024
  return out
