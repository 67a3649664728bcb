"""Times the learner step and a training iteration on 1 and on N devices.

Usage (on the CPU, N simulated devices share the machine's cores):
  XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
    python benchmarks/bench_devices.py --rule /path/to/disco_103.npz --devices 1 2

Pure-JAX suites only (default catch, its reference loop). For each device
count: the median of ``--repeats`` jitted learner steps on one batch sampled
from a replay buffer (batch split over the devices, parameters replicated)
and the median time per iteration of ``--chunk``-iteration chunks of the
compiled loop (learning from the first iteration), in wall-clock and in
process CPU seconds (the latter less sensitive to other processes on a
shared machine). Prints JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from disco_eval.bench import device_description  # noqa: E402
from disco_eval.config import resolve, suites  # noqa: E402
from disco_eval.rules import weights  # noqa: E402
from disco_eval.runs.parts import build_parts  # noqa: E402
from disco_eval.train import devices, replay  # noqa: E402
from disco_eval.train.loop import Trainer  # noqa: E402


def _median(fn, repeats: int) -> tuple[float, float]:
  """Median wall-clock and process CPU seconds of `fn` (after a warm-up)."""
  jax.block_until_ready(fn())  # compile and warm up
  wall, cpu = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    wall.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
  return float(np.median(wall)), float(np.median(cpu))


def measure(suite_name: str, rule_spec: str, n: int, chunk: int, repeats: int) -> dict:
  suite = suites.load_suite(suite_name)
  protocol = suite.protocol(None)
  task = suite.check_tasks(None)[0]
  rule = weights.resolve_rule(rule_spec)
  settings = resolve.rule_settings(rule.manifest, suite, {})
  cfg = resolve.rule_train_config(protocol, None, settings, {"devices": str(n)})
  cfg = dataclasses.replace(cfg, chunk=chunk, min_buffer=1)
  env, rule_obj, agent, opt = build_parts(suite, task, rule, settings)
  trainer = Trainer(env, agent, rule_obj, opt, cfg)
  state, _ = trainer.run_chunk(trainer.init(0), rule.params, 0, chunk)  # a filled buffer
  batch = replay.sample(state.buffer, jax.random.PRNGKey(0), cfg.sample_entries)
  if trainer.mesh is not None:
    batch = devices.put(batch, trainer.mesh, 1)
  step = jax.jit(trainer.learner_step)
  key = jax.random.PRNGKey(1)
  learner, learner_cpu = _median(
    lambda: step(state.params, state.opt_state, state.rule_state, rule.params, batch, key)[:4],
    repeats,
  )
  it = [chunk]

  def one_chunk():
    nonlocal state
    state, m = trainer.run_chunk(state, rule.params, it[0], chunk)
    it[0] += chunk
    return state

  iteration, iteration_cpu = _median(one_chunk, repeats)
  return {
    "devices": n,
    "learner_step_s": learner,
    "learner_step_cpu_s": learner_cpu,
    "iteration_s": iteration / chunk,
    "iteration_cpu_s": iteration_cpu / chunk,
    "batch_trajectories": cfg.sample_entries * cfg.num_envs,
    "num_envs": cfg.num_envs,
    "rollout_len": cfg.rollout_len,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--suite", default="catch")
  parser.add_argument("--rule", default="disco103", help="rule name or PATH.npz")
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
  parser.add_argument("--chunk", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  rows = [measure(args.suite, args.rule, n, args.chunk, args.repeats) for n in args.devices]
  print(
    json.dumps(
      {
        "device": device_description(),
        "jax": jax.__version__,
        "suite": args.suite,
        "rule": args.rule,
        "results": rows,
      },
      indent=2,
    )
  )


if __name__ == "__main__":
  main()
