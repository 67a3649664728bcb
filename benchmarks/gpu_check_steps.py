"""The steps of benchmarks/gpu_check.sh: one command measured, and the table of them all.

``python3 benchmarks/gpu_check_steps.py run NAME FOLDER -- ARGS...`` runs
``disco-eval ARGS...`` in this process (the same code as the command line),
writes its standard output to ``FOLDER/NAME.out`` and, to ``FOLDER/NAME.json``,
its exit status, wall seconds, each device's memory afterwards (the peak
in use during the command: this process did nothing else) and JAX's own
compile timings (``jax.monitoring``: seconds tracing, lowering and compiling
or loading from the persistent cache; cache hits and misses).

``python3 benchmarks/gpu_check_steps.py table FOLDER`` prints the markdown
table of every step found in FOLDER (for docs/benchmarks.md).
"""

import contextlib
import io
import json
import sys
import time
from pathlib import Path

GIB = 1024**3
# jax.monitoring events (jax/_src/dispatch.py, compiler.py, compilation_cache.py).
COMPILE_EVENTS = {
  "/jax/core/compile/jaxpr_trace_duration": "trace_s",
  "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
  "/jax/core/compile/backend_compile_duration": "compile_or_load_s",
}
CACHE_EVENTS = {
  "/jax/compilation_cache/cache_hits": "cache_hits",
  "/jax/compilation_cache/cache_misses": "cache_misses",
}


def _compile_counters() -> dict[str, float]:
  """A dict that JAX's monitoring events add their compile timings and cache
  counts into from now on."""
  import jax.monitoring

  totals = {name: 0.0 for name in (*COMPILE_EVENTS.values(), *CACHE_EVENTS.values())}

  def on_duration(event, seconds, **_):
    if event in COMPILE_EVENTS:
      totals[COMPILE_EVENTS[event]] += seconds

  def on_event(event, **_):
    if event in CACHE_EVENTS:
      totals[CACHE_EVENTS[event]] += 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)
  return totals


def run_step(name: str, folder: Path, args: list[str]) -> int:
  """Runs ``disco-eval ARGS`` here; records its output, status, wall time and memory."""
  import typer

  from disco_eval import runtime
  from disco_eval.cli import app
  from disco_eval.errors import UserError

  buf, rc, error = io.StringIO(), 0, None
  compiles = _compile_counters()
  t0 = time.perf_counter()
  with contextlib.redirect_stdout(buf):
    try:
      # standalone_mode=False: click returns an exit status instead of exiting.
      result = app(args, prog_name="disco-eval", standalone_mode=False)
      rc = result if isinstance(result, int) and not isinstance(result, bool) else 0
    except (typer.Exit, SystemExit) as e:
      rc = int(getattr(e, "exit_code", getattr(e, "code", 1)) or 0)
    except UserError as e:
      rc, error = 1, str(e)
    except Exception as e:  # noqa: BLE001 - recorded: the table says the step failed
      rc, error = 1, f"{type(e).__name__}: {e}"
  wall = time.perf_counter() - t0
  (folder / f"{name}.out").write_text(buf.getvalue())
  step = {
    "name": name,
    "args": args,
    "rc": rc,
    "error": error,
    "wall_s": wall,
    "memory": runtime.device_memory(),
    "compile": compiles,
  }
  (folder / f"{name}.json").write_text(json.dumps(step, indent=2))
  print(f"{name}: exit {rc} in {wall:.1f} s" + (f" ({error})" if error else ""), file=sys.stderr)
  return rc


def _load(folder: Path, name: str) -> tuple[dict | None, object]:
  """(step record, parsed JSON output or None) of step `name`."""
  meta = folder / f"{name}.json"
  if not meta.is_file():
    return None, None
  step = json.loads(meta.read_text())
  try:
    out = json.loads((folder / f"{name}.out").read_text())
  except (OSError, ValueError):
    out = None
  return step, out


def _peak(step: dict) -> str:
  peaks = [m["peak_bytes_in_use"] for m in step.get("memory", []) if m.get("peak_bytes_in_use")]
  return f"{max(peaks) / GIB:.2f} GiB" if peaks else "not reported"


def _bench_rows(suite: str, res: dict) -> list[tuple[str, str]]:
  rows = [
    (f"{suite}: env-only steps/s", f"{res['env_steps_per_s']:,.0f}"),
    (
      f"{suite}: training steps/s, 1 seed",
      f"{res['train_steps_per_s']:,.0f} ({res['train_over_env_ratio']:.0%} of env-only)",
    ),
  ]
  lr = res["learner"]
  rows.append(
    (
      f"{suite}: learner step",
      f"{lr['step_s'] * 1000:.1f} ms, rule {lr['rule_s'] * 1000:.1f} ms ({lr['rule_share']:.0%})",
    )
  )
  if "one_seed" in res:
    sp = res["one_seed"]["split_per_iteration"]
    rows.append(
      (
        f"{suite}: per iteration",
        f"env {sp['env_s']:.3f}, policy {sp['policy_s']:.3f}, host {sp['host_s']:.3f}, "
        f"learner {sp['learner_s']:.3f} s",
      )
    )
  for mode, v in res["scaling"].items():
    rows.append(
      (
        f"{suite}: {res['seeds']} seed{'s' if res['seeds'] != 1 else ''}, {mode.replace('_', ' ')}",
        f"{v['steps_per_s']:,.0f} steps/s; wall {v['wall_vs_one_seed']:.2f}x one seed's",
      )
    )
  return rows


def _failed(name: str, step: dict | None) -> list[tuple[str, str]]:
  if step is None:
    return [(name, "not measured (step skipped)")]
  return [(name, f"failed (exit {step['rc']}): {step.get('error') or 'see ' + name + '.out'}")]


def _run_rows(folder: Path) -> list[tuple[str, str]]:
  """Checkpoint overhead and the compile cache's second start, from the timed runs."""
  cold, _ = _load(folder, "run_cold")
  warm, _ = _load(folder, "run_warm")
  ckpt, _ = _load(folder, "run_ckpt")
  rows = []
  info = folder / "runs.json"
  n_ckpt = json.loads(info.read_text()).get("checkpoints") if info.is_file() else None
  if cold and warm and not cold["rc"] and not warm["rc"]:
    rows.append(
      (
        "compile cache: a run's first / second start, wall",
        f"{cold['wall_s']:.1f} s / {warm['wall_s']:.1f} s (same run, fresh results folder)",
      )
    )
    c, w = cold.get("compile", {}), warm.get("compile", {})
    if c and w:
      rows.append(
        (
          "compile cache: compile (or load) seconds, first / second start",
          f"{c['compile_or_load_s']:.1f} s / {w['compile_or_load_s']:.1f} s "
          f"({w['cache_hits']:.0f} cache hits; tracing+lowering {c['trace_s'] + c['lower_s']:.1f}"
          f" / {w['trace_s'] + w['lower_s']:.1f} s)",
        )
      )
  if ckpt and warm and not ckpt["rc"] and not warm["rc"]:
    extra = ckpt["wall_s"] - warm["wall_s"]
    per = f", {extra / n_ckpt:.2f} s per checkpoint" if n_ckpt else ""
    rows.append(
      (
        "checkpoints: run without / with",
        f"{warm['wall_s']:.1f} s / {ckpt['wall_s']:.1f} s (+{extra / warm['wall_s']:.0%}"
        f"{per}, {n_ckpt} checkpoints)",
      )
    )
  return rows or [("checkpoints, compile cache", "not measured (runs failed or skipped)")]


def table(folder: Path) -> str:
  """The markdown table of every step in `folder`."""
  rows: list[tuple[str, str]] = []
  _, doctor = _load(folder, "doctor")
  if isinstance(doctor, list):
    found = {r["name"]: r["value"] for r in doctor}
    rows.append(("backend, devices", f"{found.get('backend')}; {found.get('devices')}"))
    rows.append(("versions", f"jax {found.get('jax')}, jaxlib {found.get('jaxlib')}"))
  for suite in ("catch", "sokoban", "procgen"):
    step, res = _load(folder, f"bench_{suite}")
    if step and not step["rc"] and isinstance(res, dict):
      rows += _bench_rows(suite, res)
    else:
      rows += _failed(f"{suite}: bench", step)
  rows += _run_rows(folder)
  step, res = _load(folder, "verify")
  if step and isinstance(res, dict):
    worst = max(c["max_rel_err"] for f in res["files"] for c in f["checks"])
    verdict = "pass" if res["ok"] else "FAIL"
    rows.append(
      ("rules verify disco103", f"{verdict}: {len(res['files'])} files, max rel err {worst:.2e}")
    )
  else:
    rows += _failed("rules verify disco103", step)
  peaks = []
  for meta in sorted(folder.glob("*.json")):
    step, _ = _load(folder, meta.stem)
    if step and "memory" in step:
      peaks.append((f"peak device memory: {meta.stem}", _peak(step)))
  if all(value == "not reported" for _, value in peaks):
    peaks = [("peak device memory", "not reported by this backend")]
  rows += peaks
  lines = ["| measurement | value |", "|---|---|"]
  lines += [f"| {k} | {v} |" for k, v in rows]
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  if len(argv) >= 3 and argv[0] == "run":
    name, folder = argv[1], Path(argv[2])
    args = argv[4:] if len(argv) > 3 and argv[3] == "--" else argv[3:]
    folder.mkdir(parents=True, exist_ok=True)
    return run_step(name, folder, args)
  if len(argv) == 2 and argv[0] == "table":
    print(table(Path(argv[1])))
    return 0
  print(__doc__, file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
