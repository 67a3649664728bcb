"""The steps of benchmarks/gpu_check.sh: one command measured, and the table of them all.

``python3 benchmarks/gpu_check_steps.py run NAME FOLDER -- ARGS...`` runs
``disco-eval ARGS...`` in this process (the same code as the command line)
and appends one line to ``FOLDER/results.jsonl`` the moment it ends: its
name, exit status, wall seconds, output (parsed when it is JSON), each
device's memory afterwards (the peak in use during the command: this process
did nothing else) and JAX's own compile timings (``jax.monitoring``: seconds
tracing, lowering and compiling or loading from the persistent cache; cache
hits and misses). One file for every step: the device returns few files.

``python3 benchmarks/gpu_check_steps.py procgen NAME FOLDER -- ARGS...``
measures ProcGen's learner step and policy step on synthetic frames (no
environment: for a machine where EnvPool's ProcGen cannot load), in float32
and with a bfloat16 torso: XLA's cost analysis and median wall seconds.
ARGS: ``--protocol P`` and ``--set KEY=VALUE`` as for ``bench``.

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
# The bench steps of the check, in the table's order.
BENCHES = (
  "bench_catch",
  "bench_minatar_disco103",
  "bench_minatar_ppo",
  "bench_craftax",
  "bench_sokoban",
  "bench_procgen",
)
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


def _record(folder: Path, step: dict) -> None:
  """Appends `step` to FOLDER/results.jsonl, flushed at once."""
  with open(folder / "results.jsonl", "a") as f:
    f.write(json.dumps(step) + "\n")
    f.flush()


def _parsed(text: str):
  try:
    return json.loads(text)
  except ValueError:
    return text[-4000:]


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
  step = {
    "name": name,
    "args": args,
    "rc": rc,
    "error": error,
    "wall_s": wall,
    "memory": runtime.device_memory(),
    "compile": compiles,
    "output": _parsed(buf.getvalue()),
  }
  _record(folder, step)
  print(f"{name}: exit {rc} in {wall:.1f} s" + (f" ({error})" if error else ""), file=sys.stderr)
  return rc


def _procgen_parts(args: list[str]):
  """(suite, rule, agent, optimiser, cfg, env-like spec) of ProcGen's coinrun
  under ARGS (``--protocol``, ``--set``, ``--rule``), without EnvPool."""
  import types

  import numpy as np

  from disco_eval.agents.networks import Agent
  from disco_eval.config import resolve, suites
  from disco_eval.envs import procgen
  from disco_eval.rules import weights
  from disco_eval.rules.registry import build_manifest_rule
  from disco_eval.runs.plan import rule_identity
  from disco_eval.train.optim import make_optimizer

  protocol, rule_spec, sets = None, "disco103", []
  it = iter(args)
  for a in it:
    if a == "--protocol":
      protocol = next(it)
    elif a == "--rule":
      rule_spec = next(it)
    elif a == "--set":
      key, value = next(it).split("=", 1)
      sets.append((key, value))
  suite = suites.load_suite("procgen")
  rule = weights.resolve_rule(rule_spec)
  run = resolve.resolve(
    suite, "coinrun", rule_identity(rule), rule.manifest, protocol=protocol, overrides=tuple(sets)
  )
  settings = run.settings
  rule_obj = build_manifest_rule(rule.manifest, settings, rule.label)
  n = procgen.NUM_ACTIONS
  spec = types.SimpleNamespace(observation_shape=procgen.OBSERVATION_SHAPE, num_actions=n)
  agent = Agent(settings["agent"], rule_obj.output_spec(n), n, spec.observation_shape)
  spec.observation_dtype = np.uint8
  return run, rule, rule_obj, agent, make_optimizer(settings["optimizer"]), spec


def _synthetic_batch(spec, cfg, key):
  import jax
  import jax.numpy as jnp

  from disco_eval.rules.base import Rollout

  length, b = cfg.rollout_len, cfg.sample_entries * cfg.num_envs
  k1, k2, k3 = jax.random.split(key, 3)
  obs = jax.random.randint(k1, (length, b) + tuple(spec.observation_shape), 0, 256, jnp.int32)
  return Rollout(
    observations=obs.astype(jnp.uint8),
    actions=jax.random.randint(k2, (length, b), 0, spec.num_actions, jnp.int32),
    rewards=jnp.zeros((length, b), jnp.float32),
    discounts=(jax.random.uniform(k3, (length, b)) > 0.01).astype(jnp.float32),
    behaviour_logits=jnp.zeros((length, b, spec.num_actions), jnp.float32),
  )


def _procgen_one(args: list[str]) -> dict:
  """Cost analysis and median seconds of ProcGen's learner and policy steps."""
  import jax

  from disco_eval.bench.common import median_time
  from disco_eval.bench.cost import abstract_inputs, compiled_cost
  from disco_eval.rules.base import acting_logits
  from disco_eval.train.learner import Learner

  run, rule, rule_obj, agent, opt, spec = _procgen_parts(args)
  cfg = run.train
  learner = Learner(agent, rule_obj, opt, cfg)
  x = abstract_inputs(
    spec, rule_obj, agent, opt, rule.params, cfg, obs_dtype=spec.observation_dtype
  )

  def step(p, o, r, rp, b, k):
    return learner.step(p, o, r, rp, b, k)[:4]

  def policy(p, obs, k):
    return jax.random.categorical(k, acting_logits(rule_obj, agent.apply(p, obs), 0.0))

  key = jax.random.PRNGKey(0)
  params = agent.init(key)
  state = (params, opt.init(params), rule_obj.init_state(key, params))
  batch = _synthetic_batch(spec, cfg, key)
  obs = batch.observations[0, : cfg.num_envs]
  jstep, jpolicy = jax.jit(step), jax.jit(policy)
  learner_s = median_time(lambda: jstep(*state, rule.params, batch, key), 3)
  policy_s = median_time(lambda: jpolicy(params, obs, key), 5)
  args_ = (x["params"], x["opt_state"], x["rule_state"], x["rule_params"], x["batch"], x["key"])
  return {
    "protocol": run.protocol.name,
    "torso_dtype": run.settings["agent"].get("torso_dtype", "float32"),
    "batch_trajectories": cfg.sample_entries * cfg.num_envs,
    "num_envs": cfg.num_envs,
    "rollout_len": cfg.rollout_len,
    "updates_per_iteration": cfg.updates_per_iteration,
    "learner_step_s": learner_s,
    "policy_step_s": policy_s,
    "learner_cost": compiled_cost(step, *args_),
    "policy_cost": compiled_cost(policy, x["params"], x["obs"], x["key"]),
  }


def procgen_step(name: str, folder: Path, args: list[str]) -> int:
  """Records ProcGen's synthetic-frame measurement (float32 and bfloat16 torso)."""
  from disco_eval import runtime

  t0, out, rc, error = time.perf_counter(), {}, 0, None
  try:
    for dtype in ("float32", "bfloat16"):
      out[dtype] = _procgen_one([*args, "--set", f"agent.torso_dtype={dtype}"])
  except Exception as e:  # noqa: BLE001 - recorded: the table says the step failed
    rc, error = 1, f"{type(e).__name__}: {e}"
  wall = time.perf_counter() - t0
  step = {"name": name, "args": args, "rc": rc, "error": error, "wall_s": wall}
  _record(folder, {**step, "memory": runtime.device_memory(), "output": out})
  print(f"{name}: exit {rc} in {wall:.1f} s" + (f" ({error})" if error else ""), file=sys.stderr)
  return rc


def _all(folder: Path) -> dict[str, dict]:
  """Every recorded step of FOLDER by name (the last record of a name wins)."""
  steps = {}
  path = folder / "results.jsonl"
  if path.is_file():
    for line in path.read_text().splitlines():
      try:
        rec = json.loads(line)
      except ValueError:
        continue
      steps[rec["name"]] = rec
  return steps


def _load(folder: Path, name: str) -> tuple[dict | None, object]:
  """(step record, parsed JSON output or None) of step `name`."""
  step = _all(folder).get(name)
  if step is None:
    return None, None
  out = step.get("output")
  return step, out if isinstance(out, (dict, list)) else None


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
  """The compile cache's second start, from the same run started twice."""
  cold, _ = _load(folder, "run_cold")
  warm, _ = _load(folder, "run_warm")
  rows = []
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
  return rows or [("compile cache", "not measured (runs failed or skipped)")]


def _procgen_rows(folder: Path) -> list[tuple[str, str]]:
  step, res = _load(folder, "procgen_synthetic")
  if not step or step["rc"] or not isinstance(res, dict):
    return _failed("procgen (synthetic frames)", step)
  rows = []
  for dtype, r in res.items():
    lc, pc = r["learner_cost"], r["policy_cost"]
    steps = r["num_envs"] * r["rollout_len"]
    per_iter = (
      r["updates_per_iteration"] * r["learner_step_s"] + r["rollout_len"] * r["policy_step_s"]
    )
    rows.append(
      (
        f"procgen synthetic, torso {dtype}: learner step ({r['batch_trajectories']} traj.)",
        f"{r['learner_step_s'] * 1000:.1f} ms, {lc['bytes_accessed'] / 1e9:.2f} GB accessed, "
        f"{lc['flops'] / 1e9:.1f} GFLOP",
      )
    )
    rows.append(
      (
        f"procgen synthetic, torso {dtype}: policy step ({r['num_envs']} frames)",
        f"{r['policy_step_s'] * 1000:.2f} ms, {pc['bytes_accessed'] / 1e6:.1f} MB accessed",
      )
    )
    rows.append(
      (
        f"procgen synthetic, torso {dtype}: device-bound steps/s (learner + policy, no env)",
        f"{steps / per_iter:,.0f}",
      )
    )
  return rows


def table(folder: Path) -> str:
  """The markdown table of every step in `folder`."""
  rows: list[tuple[str, str]] = []
  _, doctor = _load(folder, "doctor")
  if isinstance(doctor, list):
    found = {r["name"]: r["value"] for r in doctor}
    rows.append(("backend, devices", f"{found.get('backend')}; {found.get('devices')}"))
    rows.append(("versions", f"jax {found.get('jax')}, jaxlib {found.get('jaxlib')}"))
  for name in BENCHES:
    step, res = _load(folder, name)
    label = name.removeprefix("bench_")
    if step and not step["rc"] and isinstance(res, dict):
      rows += _bench_rows(label, res)
    elif step or name != "bench_procgen":  # the real ProcGen is skipped where it cannot load
      rows += _failed(f"{label}: bench", step)
  rows += _procgen_rows(folder)
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
  for name, step in _all(folder).items():
    if "memory" in step:
      peaks.append((f"peak device memory: {name}", _peak(step)))
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
  if len(argv) >= 3 and argv[0] == "procgen":
    name, folder = argv[1], Path(argv[2])
    args = argv[4:] if len(argv) > 3 and argv[3] == "--" else argv[3:]
    folder.mkdir(parents=True, exist_ok=True)
    return procgen_step(name, folder, args)
  if len(argv) == 2 and argv[0] == "table":
    print(table(Path(argv[1])))
    return 0
  print(__doc__, file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
