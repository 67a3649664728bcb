"""Running a sweep: unit by unit in this process, or one unit in a worker."""

from typing import Callable

from disco_eval.config import suites
from disco_eval.errors import UserError
from disco_eval.rules import weights
from disco_eval.runs import stop
from disco_eval.runs.plan import plan_sweep, run_config
from disco_eval.runs.spec import Progress, RunResult, SweepSpec, Unit
from disco_eval.runs.unit_runs import train_unit_runs


def run_unit(
  spec: SweepSpec, unit: Unit, on_progress: Callable[[Progress], None] = lambda p: None, rule=None
) -> list[RunResult]:
  """Runs one unit of a sweep; returns one result per seed.

  Everything is derived from `spec` and `unit` (the rule is resolved again
  unless `rule`, the one resolved while planning, is given), so a worker
  process can run a unit planned elsewhere. A run locked by another process
  is left alone and reported "busy".
  """
  suite = suites.load_suite(spec.suite)
  suite.protocol(spec.protocol)  # an unknown protocol fails before the rule loads
  if rule is None:
    rule = weights.resolve_rule(spec.rules[unit.rule_index], among=spec.rules)
  if rule.label != unit.label:
    raise UserError(
      f"rule '{spec.rules[unit.rule_index]}' is '{rule.label}' here but was "
      f"'{unit.label}' when the sweep was planned; install the same "
      "rules on every machine"
    )
  config = run_config(spec, suite, unit.task, rule, unit.overrides)
  return train_unit_runs(spec, suite, config, rule, unit.seeds, on_progress)


def run_sweep(
  spec: SweepSpec, on_progress: Callable[[Progress], None] = lambda p: None, seeds_per_unit: int = 0
) -> list[RunResult]:
  """Runs the sweep rule x task x seed in this process, unit after unit;
  returns one result per run. Each unit's memory is projected first
  (runs.memory) unless ``spec.memory_check`` is off. A stop requested by a
  signal (runs.stop) ends it between chunks or units with stop.Interrupted."""
  plan = plan_sweep(spec, seeds_per_unit)
  if spec.memory_check:  # before any record: a unit that cannot fit is refused here
    from disco_eval.runs import memory

    memory.check_plan(spec, plan)
  on_progress(plan.announce)
  results = []
  for unit in plan.units:
    stop.check(0)  # a stop asked for between units: the next has not started
    results += run_unit(spec, unit, on_progress, plan.rules[unit.rule_index])
  return results
