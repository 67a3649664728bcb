"""Sweep planning: a spec cut into units of work, and each unit's run config.

A sweep is planned into units (:class:`~disco_eval.runs.spec.Unit`: one rule,
one task and the seeds trained together). A unit is small and picklable and
names its rule by its place in the spec, so that a worker of a cluster
(``disco_eval.launch``) runs it from the spec alone. Every setting of a run
comes from :func:`disco_eval.config.resolve.resolve`.
"""

import dataclasses
from typing import Any

from disco_eval.config import overrides as over
from disco_eval.config import resolve, suites, validate
from disco_eval.config.run_config import RuleIdentity, RunConfig
from disco_eval.errors import UserError
from disco_eval.rules import registry, weights
from disco_eval.runs.spec import Progress, SweepSpec, Unit


@dataclasses.dataclass
class Plan:
  """A sweep planned into units, with the "plan" event that announces it and
  the rules resolved while planning (by index; reused by an in-process run)."""

  units: list[Unit]
  announce: Progress
  rules: dict[int, Any]


def rule_identity(rule: weights.ResolvedRule) -> RuleIdentity:
  """The identity a run config records of a resolved rule."""
  return RuleIdentity(
    name=rule.label,
    kind=rule.manifest.kind,
    sha256=rule.sha256,
    source=str(rule.path) if rule.path else None,
    module=rule.module.to_json() if rule.module else None,
    variant=rule.variant,
  )


def run_config(
  spec: SweepSpec,
  suite: suites.SuiteManifest,
  task: str,
  rule: weights.ResolvedRule,
  scoped: over.Overrides,
) -> RunConfig:
  """The resolved config of `rule` on `task` in the sweep `spec`."""
  return resolve.resolve(
    suite,
    task,
    rule_identity(rule),
    rule.manifest,
    protocol=spec.protocol,
    steps=spec.steps,
    overrides=spec.overrides,
    scoped=scoped,
  )


def _seed_groups(seeds: tuple[int, ...], per_unit: int) -> list[tuple[int, ...]]:
  """`seeds` cut into groups of `per_unit` (0: one group of all)."""
  if per_unit < 0:
    raise UserError(f"--seeds-per-unit must be 0 (all seeds together) or more, got {per_unit}")
  size = per_unit or len(seeds)
  return [seeds[i : i + size] for i in range(0, len(seeds), size)]


def _resolve_rules(spec: SweepSpec) -> list[weights.ResolvedRule]:
  """The spec's rules, resolved and checked (distinct labels, manifest keys
  that their kind declares)."""
  resolved = [weights.resolve_rule(r, among=spec.rules) for r in spec.rules]
  labels = [r.label for r in resolved]
  if len(set(labels)) != len(labels):
    raise UserError(f"the same rule is named twice: {', '.join(labels)}")
  for rule in resolved:
    registry.check_manifest(rule.manifest)
  return resolved


def _announce(spec: SweepSpec, runs: int, total_steps: int, protocol: suites.Protocol) -> Progress:
  """The "plan" event: how many runs, and whether the evaluation is small."""
  smoke = ""
  if protocol.typed.smoke:
    smoke = "; off-protocol budget, small evaluation: " + ", ".join(
      f"{k[6:]}={protocol.get(k[6:])}" for k in protocol.settings if k.startswith("smoke_")
    )
  return Progress(
    "plan", "", "", tuple(spec.seeds), total_steps=total_steps, message=f"{runs} runs{smoke}"
  )


# Protocol settings only the host-stepped loop applies (train/host_loop.py): a
# pure-JAX suite would record them, label the run with them, and ignore them.
HOST_ONLY_PROTOCOL_KEYS = ("protocol.eval_max_steps", "protocol.eval_envs")


def _refuse_unapplied(suite: suites.SuiteManifest, overrides) -> None:
  """A one-line UserError for a ``--set`` this suite's backend cannot apply."""
  if suite.backend != "jax":
    return
  for key, value in overrides:
    if key in HOST_ONLY_PROTOCOL_KEYS:
      raise UserError(
        f"--set {key}={value}: the {suite.name} suite evaluates in JAX, where {key} has no "
        "effect; leave it out (it applies to host-stepped suites such as procgen or crafter)"
      )


def plan_sweep(spec: SweepSpec, seeds_per_unit: int = 0) -> Plan:
  """Checks the spec and cuts the sweep into units: rule by rule, task by
  task, the seeds in groups of `seeds_per_unit` (0: all seeds of a (rule,
  task) trained together, as :func:`disco_eval.runs.sweep.run_sweep` does).

  Every setting of every rule is checked here
  (:mod:`disco_eval.config.validate`), before any record is opened: a value
  out of range is a one-line UserError and nothing is written."""
  suite = suites.load_suite(spec.suite)
  base_protocol = suite.protocol(spec.protocol)
  tasks = suite.check_tasks(list(spec.tasks))
  validate.check_sweep(spec.seeds, spec.steps, spec.checkpoint_every)
  groups = _seed_groups(tuple(spec.seeds), seeds_per_unit)
  over.split_overrides(spec.overrides)  # unknown train./protocol. keys fail before any work
  _refuse_unapplied(suite, spec.overrides)
  resolved = _resolve_rules(spec)
  scoped_all = over.scope_overrides(spec.overrides, [r.label for r in resolved])
  units, budgets, protocol = [], [], None
  for index, rule in enumerate(resolved):
    scoped = scoped_all[rule.label]
    run_config(spec, suite, tasks[0], rule, scoped)  # checks every setting (same for all tasks)
    plan = resolve.rule_plan(suite, base_protocol, spec.steps, rule.manifest, scoped)
    protocol = protocol or plan.protocol
    total = plan.train.iterations * plan.train.steps_per_iteration
    budgets.append(total)
    units += [
      Unit(index, rule.label, task, seeds, scoped, total) for task in tasks for seeds in groups
    ]
  runs = len(resolved) * len(tasks) * len(spec.seeds)
  announce = _announce(spec, runs, sum(budgets) * len(tasks) * len(spec.seeds), protocol)
  return Plan(units, announce, dict(enumerate(resolved)))
