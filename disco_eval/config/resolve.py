"""One order of precedence from manifests, protocol and overrides to a run config.

Lowest first:

1. the suite's protocol (budget, loop settings, evaluation);
2. the rule manifest's tables, the suite's ``[agent]`` table (the torso for
   its observations) over the rule's ``[agent]``;
3. the rule manifest's ``[suites.SUITE]`` table;
4. the user's ``--set`` overrides, global or scoped to the rule (``RULE.KEY``,
   ``lr`` for ``optimizer.learning_rate``), with ``train.*`` over the rule's
   ``[train]`` table over the protocol's loop, and ``protocol.*`` over the
   protocol's evaluation settings;
5. command-line flags: ``--steps`` (the budget), ``--protocol``.

:func:`resolve` returns the :class:`~disco_eval.config.run_config.RunConfig`
of one (suite, task, rule); the functions before it are its steps.
"""

import copy
import dataclasses
import math
from typing import Any, Iterable, Mapping, NamedTuple

from disco_eval.config import manifests, validate
from disco_eval.config import overrides as over
from disco_eval.config.run_config import RuleIdentity, RunConfig
from disco_eval.config.suites import OVERRIDE_SEP, Protocol, SuiteManifest
from disco_eval.config.train import LOOP_SETTINGS, TrainConfig


def rule_settings(
  manifest: manifests.RuleManifest,
  suite: SuiteManifest,
  rule_over: Mapping[str, Any] | None = None,
  protocol: Protocol | None = None,
) -> dict:
  """A rule's settings tables for a suite (every run's, and every test's).

  Precedence, lowest first: the rule's defaults, the suite's ``[agent]`` table
  (the torso for its observations, which may bring keys of its own), the
  protocol's ``agent`` table (a named override's network, e.g. Atari's
  ``cpu-small``: it shows in the label), the rule manifest's ``[suites.SUITE]``
  overrides, then its ``[suites.SUITE.protocols.PROTOCOL]`` overrides (one
  protocol's: e.g. PPO's 4-worker batch on ProcGen's ``disco``), the user's
  ``--set`` (`rule_over`, ``{"table.key": value}``).
  """
  tables = manifest.settings()
  tables["agent"].update(copy.deepcopy(suite.raw.get("agent", {})))
  if protocol is not None and isinstance(protocol.get("agent"), dict):
    tables["agent"].update(copy.deepcopy(protocol.get("agent")))
  tables = manifests.apply_overrides(
    tables, manifest.suites.get(suite.name, {}), f"{manifest.path}: [suites.{suite.name}]"
  )
  if protocol is not None:
    base = protocol.name.split(OVERRIDE_SEP)[0]
    tables = manifests.apply_overrides(
      tables,
      manifest.suites.get(f"{suite.name}/{base}", {}),
      f"{manifest.path}: [suites.{suite.name}.protocols.{base}]",
    )
  return manifests.apply_overrides(tables, rule_over or {}, f"rule '{manifest.name}'")


def _loop_values(protocol: Protocol, train_over: dict[str, str]) -> dict[str, Any]:
  """The protocol's loop settings with the ``train.*`` overrides, each as
  its declared type (:class:`~disco_eval.config.train.TrainConfig`)."""
  declared = {s.name: s for s in LOOP_SETTINGS if s.settable}
  vals = {k: s.type(protocol.get(k)) for k, s in declared.items() if protocol.get(k) is not None}
  for k, v in train_over.items():
    if k in declared:
      vals[k] = declared[k].parse(f"train.{k}", v)
  return vals


def budget(protocol: Protocol, steps: int | None) -> int:
  """The env-step budget asked for: `steps` (``--steps``), else the
  protocol's; a UserError unless it is a positive integer."""
  asked = steps if steps is not None else protocol.get("env_steps")
  if isinstance(asked, float) and asked.is_integer():
    asked = int(asked)
  validate.check_budget(asked)
  return asked


def train_config(protocol: Protocol, steps: int | None, train_over: dict[str, str]) -> TrainConfig:
  """The loop settings of a protocol, with a step budget and overrides;
  each loop size is checked (:mod:`disco_eval.config.validate`) before it
  divides the budget."""
  cfg = TrainConfig(**_loop_values(protocol, train_over))
  validate.check_loop_fields(cfg)
  asked = budget(protocol, steps)
  iterations = math.ceil(asked / cfg.steps_per_iteration)
  cfg = dataclasses.replace(cfg, iterations=iterations)
  if "min_buffer" not in train_over and iterations < 2 * cfg.min_buffer:
    # A small budget would end before learning starts: learn from half-way
    # (recorded in the run's config as the min_buffer used).
    cfg = dataclasses.replace(cfg, min_buffer=max(1, iterations // 2))
  return cfg


def rule_train_config(
  protocol: Protocol, steps: int | None, settings: dict, train_over: dict[str, str]
) -> TrainConfig:
  """Loop settings of one rule: the protocol's, then the rule manifest's
  ``[train]`` table (e.g. PPO's on-policy loop), then ``--set train.*``."""
  merged = {k: str(v) for k, v in settings.get("train", {}).items()}
  merged.update(train_over)
  return train_config(protocol, steps, merged)


def effective_protocol(
  protocol: Protocol, cfg: TrainConfig, protocol_over: dict[str, int]
) -> Protocol:
  """The protocol a sweep runs: the manifest's, with the user's
  ``protocol.*`` overrides and, for a budget below the protocol's (a small,
  off-protocol run, labelled ``NAME@STEPS`` in reports), the protocol's
  ``smoke_*`` evaluation settings (e.g. NetHack's 4,096 evaluation episodes
  of ~25k steps each become a few short ones). Both are recorded in the run's
  config; ``smoke = true`` marks the second."""
  settings = dict(protocol.settings)
  full = protocol.get("env_steps")
  if isinstance(full, (int, float)) and cfg.iterations * cfg.steps_per_iteration < full:
    smoke = {k[len("smoke_") :]: v for k, v in settings.items() if k.startswith("smoke_")}
    if smoke:
      settings.update(smoke)
      settings["smoke"] = True
  settings.update(protocol_over)
  return dataclasses.replace(protocol, settings=settings)


class RulePlan(NamedTuple):
  """A rule's resolved parts for a suite (the same for every task)."""

  settings: dict[str, dict[str, Any]]
  train: TrainConfig
  protocol: Protocol


def rule_plan(
  suite: SuiteManifest,
  protocol: Protocol,
  steps: int | None,
  manifest: manifests.RuleManifest,
  scoped: Iterable[tuple[str, str]],
) -> RulePlan:
  """Settings, loop and protocol of one rule from its scoped overrides
  (:func:`disco_eval.config.overrides.scope_overrides`)."""
  split = over.split_overrides(scoped)
  settings = rule_settings(manifest, suite, split.rule, protocol)
  cfg = rule_train_config(protocol, steps, settings, split.train)
  return RulePlan(settings, cfg, effective_protocol(protocol, cfg, split.protocol))


def resolve(
  suite: SuiteManifest,
  task: str,
  rule: RuleIdentity,
  manifest: manifests.RuleManifest,
  *,
  protocol: str | None = None,
  steps: int | None = None,
  overrides: over.Overrides = (),
  scoped: over.Overrides | None = None,
) -> RunConfig:
  """The run config of `rule` on `task` of `suite`.

  Args:
    suite, task: the suite manifest and one of its tasks.
    rule, manifest: the rule's identity and its manifest.
    protocol: the protocol's name (``--protocol``; default: the suite's).
    steps: the env-step budget (``--steps``; default: the protocol's).
    overrides: the sweep's ``--set`` pairs as typed (recorded as such).
    scoped: the pairs that apply to this rule, aliases expanded (default:
      `overrides` scoped to this rule alone).

  Every setting is checked (:func:`disco_eval.config.validate.check_run_config`):
  a value out of range is a one-line UserError, before anything runs.
  """
  if scoped is None:
    scoped = over.scope_overrides(overrides, [rule.name])[rule.name]
  plan = rule_plan(suite, suite.protocol(protocol), steps, manifest, scoped)
  config = RunConfig(
    suite=suite.name,
    task=task,
    protocol=plan.protocol,
    rule=rule,
    settings=plan.settings,
    train=plan.train,
    budget=budget(plan.protocol, steps),
    overrides=tuple(overrides),
  )
  validate.check_run_config(config)
  return config
