"""`disco-eval bench`: throughput of the training loop, by kind of suite.

``run_bench`` resolves the suite, protocol, rule and ``--set`` overrides as
`run` does, then measures with :mod:`disco_eval.bench.jax_suites` (pure-JAX
envs) or :mod:`disco_eval.bench.host_suites` (host-stepped tasks), chosen by
the task's contract (:mod:`disco_eval.envs.base`). ``report_rows`` turns a
result into table rows; ``device_description``, ``header`` and
``learner_split`` are shared by both (:mod:`disco_eval.bench.common`).
"""

import dataclasses
from typing import Any

from disco_eval.bench.common import device_description, header, learner_split, median_time
from disco_eval.bench.cost import cost_rows, run_cost
from disco_eval.bench.host_suites import run_host_bench
from disco_eval.bench.jax_suites import env_steps_per_s, run_jax_bench
from disco_eval.bench.rows import report_rows
from disco_eval.config import resolve, suites
from disco_eval.envs.base import HostTask
from disco_eval.errors import UserError
from disco_eval.rules import weights
from disco_eval.runs.parts import build_parts
from disco_eval.runs.plan import rule_identity

__all__ = [
  "cost_rows",
  "device_description",
  "env_steps_per_s",
  "header",
  "learner_split",
  "median_time",
  "report_rows",
  "run_bench",
  "run_cost",
  "run_host_bench",
  "run_jax_bench",
]


def _check_counts(seeds: int, repeats: int, chunk: int) -> None:
  if seeds < 1:
    raise UserError(f"--seeds must be at least 1, got {seeds}")
  if repeats < 1:
    raise UserError(f"--repeats must be at least 1, got {repeats}")
  if chunk < 1:
    raise UserError(f"--chunk must be at least 1, got {chunk}")


def run_bench(
  suite_name: str,
  rule_spec: str = "disco103",
  seeds: int = 4,
  protocol: str | None = None,
  task: str | None = None,
  overrides: tuple[tuple[str, str], ...] = (),
  chunk: int = 4,
  repeats: int = 3,
  cost: bool = False,
) -> dict[str, Any]:
  """Runs every measurement; returns a JSON-able dict.

  Host-stepped suites (ProcGen, Crafter, NetHack) are measured by
  :func:`disco_eval.bench.host_suites.run_host_bench` (`chunk` unused there).
  With `cost`, nothing runs: XLA's cost analyses of the protocol's learner
  and policy steps (:func:`disco_eval.bench.cost.run_cost`).
  """
  _check_counts(seeds, repeats, chunk)
  suite = suites.load_suite(suite_name)
  task = suite.check_tasks([task] if task else None)[0]
  rule = weights.resolve_rule(rule_spec)
  run = resolve.resolve(
    suite, task, rule_identity(rule), rule.manifest, protocol=protocol, overrides=overrides
  )
  proto, settings, cfg = run.protocol, run.settings, run.train
  # Learning from the first iteration, so that every timed chunk learns.
  cfg = dataclasses.replace(cfg, chunk=chunk, min_buffer=1)
  parts = build_parts(suite, task, rule, settings, cfg.frame_stack)
  if cost:
    return run_cost(suite, proto, task, rule, parts, run.train)
  if isinstance(parts[0], HostTask):
    return run_host_bench(suite, proto, task, rule, parts, cfg, seeds, repeats)
  return run_jax_bench(suite, proto, task, rule, parts, cfg, seeds, chunk, repeats)
