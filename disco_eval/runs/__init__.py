"""Sweeps: train every (rule, task, seed) of a suite and record each run.

* :mod:`~disco_eval.runs.spec`: the sweep spec, units, progress events, results;
* :mod:`~disco_eval.runs.plan`: a spec cut into units, each run's config;
* :mod:`~disco_eval.runs.sweep`: running the units (here, or one in a worker);
* :mod:`~disco_eval.runs.unit_runs`: the runs of one unit (rule, task, seeds): records, resume;
* :mod:`~disco_eval.runs.seeds`: training them chunk by chunk (a ``train.seed_group``);
* :mod:`~disco_eval.runs.context`: what those read (trainer, rule, suite, task, settings);
* :mod:`~disco_eval.runs.final`: final score and summary;
* :mod:`~disco_eval.runs.parts`: env, rule, agent and optimiser of a (rule, task).
"""

from disco_eval.runs.plan import Plan, plan_sweep
from disco_eval.runs.spec import Progress, RunResult, SweepSpec, Unit
from disco_eval.runs.sweep import run_sweep, run_unit

__all__ = [
  "Plan",
  "Progress",
  "RunResult",
  "SweepSpec",
  "Unit",
  "plan_sweep",
  "run_sweep",
  "run_unit",
]
