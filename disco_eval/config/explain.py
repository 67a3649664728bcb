"""Every item of a resolved run config with its value and where the value comes from.

``disco-eval config`` prints this before a run spends GPU days: the
configuration :func:`disco_eval.config.resolve.resolve` gives (nothing is
resolved here), item by item, each with its source:

* protocol items (budget, evaluation, metric...): the suite manifest's
  ``[protocols.NAME.sources]``;
* loop items (``train.*``): the protocol's source where the protocol sets
  them, ``rules/RULE.toml [train]`` where the rule's manifest does, else
  ``default`` (the declaration in ``disco_eval/config/train.py``);
* the rule's tables (``hyperparams``, ``rule``, ``agent``, ``optimizer``):
  the rule manifest's ``[sources.suites.SUITE]`` for a value its
  ``[suites.SUITE]`` sets, its ``[sources]`` for its own tables, the suite
  manifest's ``[agent_sources]`` for the torso the suite brings;
  ``default`` for a declared setting the manifest leaves out; otherwise the
  place the value is written, marked "no source recorded";
* a ``--set`` override: ``--set`` (the user's).
"""

from typing import Any, Mapping

from disco_eval.config.manifests import RuleManifest
from disco_eval.config.run_config import RunConfig
from disco_eval.config.suites import SuiteManifest
from disco_eval.config.train import LOOP_SETTINGS, OPTIMIZER_SETTINGS

DEFAULT = "default"
NO_SOURCE = "no source recorded"
_LATER_OPTIMIZER = {s.name for s in OPTIMIZER_SETTINGS if s.later}
_LOOP_DEFAULTS = {s.name: s.default for s in LOOP_SETTINGS}


def _set_keys(config: RunConfig) -> set[str]:
  """The ``table.key`` names the user's ``--set`` changed (aliases as typed:
  ``lr`` is ``optimizer.learning_rate``)."""
  keys = set()
  for key, _ in config.overrides:
    name = str(key).split(".", 1)[1] if str(key).count(".") >= 2 else str(key)
    keys.add("optimizer.learning_rate" if name == "lr" else name)
  return keys


def _rule_source(
  dotted: str, suite: SuiteManifest, manifest: RuleManifest, set_keys: set[str]
) -> str:
  """Where the rule-table item `dotted` (``optimizer.weight_decay``) gets its value."""
  if dotted in set_keys:
    return "--set"
  rule_file = f"rules/{manifest.path.name}" if manifest.path.name else manifest.name
  per_suite = manifest.suites.get(suite.name, {})
  if dotted in per_suite:
    cited = manifest.sources.get("suites", {}).get(suite.name, {}).get(dotted)
    return cited or f"{rule_file} [suites.{suite.name}] ({NO_SOURCE})"
  table, key = dotted.split(".", 1)
  if table == "agent" and key in suite.raw.get("agent", {}):
    cited = suite.raw.get("agent_sources", {}).get(key)
    return cited or f"suites/{suite.path.name} [agent] ({NO_SOURCE})"
  if dotted in manifest.sources:
    return manifest.sources[dotted]
  if table == "optimizer" and key in _LATER_OPTIMIZER and key not in _own(manifest, table):
    return f"{DEFAULT} (OptimizerSettings, disco_eval/config/train.py)"
  return f"{rule_file} [{table}] ({NO_SOURCE})"


def _own(manifest: RuleManifest, table: str) -> Mapping[str, Any]:
  """The keys the manifest file itself writes in `table` (before declared
  defaults were filled in); the optimiser's later settings count as written
  only where they differ from their defaults."""
  values = getattr(manifest, table)
  if table != "optimizer":
    return values
  defaults = {s.name: s.default for s in OPTIMIZER_SETTINGS if s.later}
  return {k: v for k, v in values.items() if k not in defaults or v != defaults[k]}


def _train_source(key: str, config: RunConfig, manifest: RuleManifest, set_keys: set[str]) -> str:
  """Where the loop item `key` gets its value."""
  if f"train.{key}" in set_keys:
    return "--set"
  if key in manifest.train:
    return f"rules/{manifest.path.name} [train] ({NO_SOURCE})"
  if key == "iterations":
    return "derived: the budget over env steps per iteration, rounded up"
  if config.protocol.get(key) is not None:
    return config.protocol.sources.get(key) or NO_SOURCE
  return f"{DEFAULT} (TrainConfig, disco_eval/config/train.py)"


def explain(config: RunConfig, suite: SuiteManifest, manifest: RuleManifest) -> list[dict]:
  """The items of `config`, each ``{"item", "value", "source"}``: the
  protocol's, the loop's (``train.*``), then the rule's tables
  (``optimizer.*``...), in their order; plus ``derived.*`` rows (env steps
  per learner step, learner steps per seed) computed from the loop."""
  set_keys = _set_keys(config)
  rows = [{"item": "protocol", "value": config.protocol.name, "source": "--protocol or default"}]
  for key, value in config.protocol.settings.items():
    if isinstance(value, dict) or key in _LOOP_DEFAULTS:
      continue  # normalisation constants, per-task tables; loop items are train.* below
    source = "--set" if f"protocol.{key}" in set_keys else config.protocol.sources.get(key)
    rows.append({"item": f"protocol.{key}", "value": value, "source": source or NO_SOURCE})
  train = config.train
  for key in _LOOP_DEFAULTS:
    value = getattr(train, key)
    rows.append(
      {
        "item": f"train.{key}",
        "value": value,
        "source": _train_source(key, config, manifest, set_keys),
      }
    )
  for table, values in config.settings.items():
    if table == "train":
      continue
    for key, value in values.items():
      dotted = f"{table}.{key}"
      rows.append(
        {"item": dotted, "value": value, "source": _rule_source(dotted, suite, manifest, set_keys)}
      )
  per = train.env_steps_per_learner_step
  learner_steps = train.iterations * train.updates_per_iteration
  rows += [
    {
      "item": "derived.learner_batch",
      "value": train.learner_batch,
      "source": "derived: sample_entries x num_envs trajectories",
    },
    {
      "item": "derived.env_steps_per_learner_step",
      "value": per,
      "source": "derived: env steps per iteration / learner steps per iteration",
    },
    {
      "item": "derived.learner_steps_per_seed",
      "value": learner_steps,
      "source": "derived: iterations x updates_per_iteration",
    },
  ]
  return rows
