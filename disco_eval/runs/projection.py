"""What a sweep will cost, before it runs: units, env steps, wall time,
device memory and disk, projected from a short measurement on this machine.

:func:`project` plans the sweep exactly as ``run`` does
(:func:`~disco_eval.runs.plan.plan_sweep`: the same options, settings and
checks), then measures, for each rule and each size of seed group, the
first unit's trainer here: a first chunk of `iterations` iterations
(compilation included), `repeats` more chunks (their median time per
iteration) and one final evaluation. Every unit of that rule and group size
is projected from it (other tasks of the suite are assumed to run at the
measured task's rate, which holds for suites whose tasks share one
environment and network, e.g. ProcGen's games, only roughly).

Projected wall time of a unit = (first chunk - one steady chunk) +
iterations x seconds per iteration + seeds x the evaluation; units add up
one after another, as the local launcher runs them. The measured chunks
learn from their first iteration (``min_buffer`` 1, as ``bench`` does), so
the projection slightly overstates a run whose learner starts later.
Device memory is XLA's memory analysis of the compiled chunk program
(arguments + outputs + temporaries - aliased buffers), pure-JAX trainers
only. Disk per run: the two kept checkpoints (one more while a third is
being written: the peak is three) of the training state's bytes, and the
metrics rows (one per iteration) at the measured bytes per row.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Any

import jax
import numpy as np

from disco_eval.config import suites
from disco_eval.errors import UserError
from disco_eval.runs.final import final_figures
from disco_eval.runs.parts import build_parts
from disco_eval.runs.plan import plan_sweep, run_config
from disco_eval.runs.seeds import metrics_rows
from disco_eval.runs.spec import SweepSpec, Unit
from disco_eval.store.metrics import format_cell
from disco_eval.train.seed_group import SeedGroup
from disco_eval.train.trainers import make_trainer

KEPT_CHECKPOINTS = 3  # the two kept, and a third while it is written
RECORD_FILES_BYTES = 16_384  # config, status, summary: a generous bound


@dataclasses.dataclass
class Measured:
  """One trainer measured on this machine (seconds, bytes)."""

  rule: str
  task: str
  seeds: int
  iterations: int  # per timed chunk
  steps_per_iteration: int
  first_chunk_s: float  # compilation included
  iteration_s: float  # median over the timed chunks, all seeds of the unit
  eval_s: float  # one seed's final evaluation (compilation included)
  state_bytes: int  # one seed's training state (the checkpoint's arrays)
  device_bytes: int | None  # the compiled chunk program's memory (None: not known)
  metrics_row_bytes: float


def _check(iterations: int, repeats: int) -> None:
  if iterations < 1:
    raise UserError(f"--iterations must be at least 1, got {iterations}")
  if repeats < 1:
    raise UserError(f"--repeats must be at least 1, got {repeats}")


def _tree_bytes(tree) -> int:
  return int(sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _row_bytes(m, count: int, spi: int) -> float:
  """Bytes per metrics.csv row of seed 0's rows of a chunk's metrics."""
  rows = metrics_rows(m, 0, 0, count, spi)
  text = "".join(",".join(format_cell(v) for v in row.values()) + "\n" for row in rows)
  return len(text.encode("utf-8")) / max(1, len(rows))


def _timed(fn) -> tuple[float, Any]:
  t = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - t, out


def _time_chunks(trainer, rule, seeds, k: int, repeats: int):
  """(first chunk s, median chunk s, seed 0's parameters, last metrics) of
  chunks of `k` iterations of a fresh seed group."""
  group = SeedGroup(trainer, seeds)

  def chunk(start: int):
    m = group.run_chunk(rule.params, start, k)
    group.block()
    return m

  first, m = _timed(lambda: chunk(0))
  times = []
  for r in range(repeats):
    t, m = _timed(lambda i=k * (r + 1): chunk(i))
    times.append(t)
  return first, statistics.median(times), group.params_of(0), m


def _eval_s(trainer, suite, task: str, protocol, params) -> float:
  """Seconds of one final evaluation (0 for protocols scored on training
  episodes, which need no evaluation)."""
  if protocol.typed.score_from.startswith("training episodes"):
    return 0.0
  key = jax.random.PRNGKey(0)
  return _timed(lambda: final_figures(trainer, suite, task, protocol, params, key, []))[0]


def measure(spec: SweepSpec, suite, rule, unit: Unit, iterations: int, repeats: int) -> Measured:
  """Measures the trainer of `unit` (its rule `rule` resolved) on this machine."""
  config = run_config(spec, suite, unit.task, rule, unit.overrides)
  k = max(1, min(iterations, config.train.iterations))
  cfg = dataclasses.replace(config.train, chunk=k, min_buffer=1)
  env, rule_obj, agent, opt = build_parts(suite, unit.task, rule, config.settings, cfg)
  trainer = make_trainer(env, agent, rule_obj, opt, cfg, config.protocol)
  try:
    one = jax.eval_shape(lambda: trainer.init(0))
    first, chunk_s, params, m = _time_chunks(trainer, rule, unit.seeds, k, repeats)
    m = jax.device_get(m)
    eval_s = _eval_s(trainer, suite, unit.task, config.protocol, params)
    device = trainer.chunk_device_bytes(one, rule.params, len(unit.seeds))
  finally:
    trainer.close()
  return Measured(
    rule=unit.label,
    task=unit.task,
    seeds=len(unit.seeds),
    iterations=k,
    steps_per_iteration=cfg.steps_per_iteration,
    first_chunk_s=first,
    iteration_s=chunk_s / k,
    eval_s=eval_s,
    state_bytes=_tree_bytes(one),
    device_bytes=device,
    metrics_row_bytes=_row_bytes(m, k, cfg.steps_per_iteration),
  )


def _unit_row(unit: Unit, me: Measured) -> dict[str, Any]:
  """The projection of one unit from the measurement `me`."""
  its = unit.env_steps // me.steps_per_iteration
  seeds = len(unit.seeds)
  compile_s = max(0.0, me.first_chunk_s - me.iteration_s * me.iterations)
  wall = compile_s + its * me.iteration_s + seeds * me.eval_s
  disk = seeds * (
    KEPT_CHECKPOINTS * me.state_bytes + its * me.metrics_row_bytes + RECORD_FILES_BYTES
  )
  return {
    "rule": unit.label,
    "task": unit.task,
    "seeds": list(unit.seeds),
    "env_steps_per_run": unit.env_steps,
    "env_steps": unit.env_steps * seeds,
    "iterations": its,
    "wall_s": wall,
    "device_bytes": me.device_bytes,
    "disk_bytes": int(disk),
    "measured_on": me.task,
  }


def project(
  spec: SweepSpec, seeds_per_unit: int = 0, iterations: int = 3, repeats: int = 2
) -> dict[str, Any]:
  """The sweep's units and their projected costs (a JSON-able dict; see the
  module docstring). Bad options are one-line UserErrors, as for ``run``."""
  _check(iterations, repeats)
  plan = plan_sweep(spec, seeds_per_unit)
  suite = suites.load_suite(spec.suite)
  measured: dict[tuple[int, int], Measured] = {}
  rows = []
  for unit in plan.units:
    key = (unit.rule_index, len(unit.seeds))
    if key not in measured:
      measured[key] = measure(spec, suite, plan.rules[unit.rule_index], unit, iterations, repeats)
    rows.append(_unit_row(unit, measured[key]))
  device_known = [r["device_bytes"] for r in rows if r["device_bytes"] is not None]
  return {
    "suite": spec.suite,
    "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
    "units": rows,
    "runs": sum(len(r["seeds"]) for r in rows),
    "env_steps": sum(r["env_steps"] for r in rows),
    "wall_s": sum(r["wall_s"] for r in rows),
    "device_bytes": max(device_known) if device_known else None,
    "disk_bytes": sum(r["disk_bytes"] for r in rows),
    "measurements": [dataclasses.asdict(m) for m in measured.values()],
  }
