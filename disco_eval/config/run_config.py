"""The resolved, typed and frozen settings of one run (what ``config.json`` stores).

A :class:`RunConfig` is built by :func:`disco_eval.config.resolve.resolve`
only; every later stage (the trainers, the run record, ``bench``, reports)
reads it or the JSON dict it writes (:meth:`RunConfig.to_json`), never the
manifests again.
"""

import copy
import dataclasses
from typing import Any

from disco_eval import provenance, runtime
from disco_eval.config.label import LABEL_KEY, protocol_label
from disco_eval.config.suites import Protocol
from disco_eval.config.train import TrainConfig

RUNTIME_KEY = "runtime"


@dataclasses.dataclass(frozen=True)
class RuleIdentity:
  """Which rule a run trained with."""

  name: str  # the rule's label (manifest name, or a checkpoint's)
  kind: str  # the manifest's kind: disco, actor_critic, ppo, plugin, ...
  sha256: str | None  # of the weights file (learned rules)
  source: str | None  # the weights file's path (learned rules); a plug-in's manifest
  # A plug-in's code (rules.plugins.PluginModule.to_json): {"factory": "my_rule.py:make_rule",
  # "sha256": of the factory's module file, "version": of its package or None}; recorded
  # only for plug-ins, so that a changed source is a changed config on resume.
  module: dict[str, Any] | None = None
  # An input ablation of a Disco rule (rules.variants: "no-yz-bootstrap", "no-yz"), also the
  # name's ":VARIANT" suffix; recorded only for variants, so older configs keep matching.
  variant: str | None = None

  def to_json(self) -> dict[str, Any]:
    doc = {"name": self.name, "kind": self.kind, "sha256": self.sha256, "source": self.source}
    if self.module is not None:
      doc["module"] = dict(self.module)
    if self.variant is not None:
      doc["variant"] = self.variant
    return doc


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One (suite, task, rule)'s resolved settings; the seed is added per run.

  Attributes:
    suite, task: what is trained on.
    protocol: the protocol as run (the manifest's, with ``smoke_*`` settings
      for a small budget and the user's ``protocol.*`` overrides).
    rule: the rule's identity.
    settings: the rule's settings tables (hyperparams, rule, agent,
      optimizer, train), after every override.
    train: the loop's settings (iterations included).
    budget: the env-step budget asked for (``--steps``, else the protocol's).
    overrides: the sweep's ``--set`` overrides, as typed.
    episodes_reproducible: False for tasks whose episodes a seed does not fix
      (e.g. NetHackChallenge refuses seeding); recorded only when False.
    label: the protocol label (:func:`disco_eval.config.label.protocol_label`),
      computed from the fields above when the config is made.
  """

  suite: str
  task: str
  protocol: Protocol
  rule: RuleIdentity
  settings: dict[str, dict[str, Any]]
  train: TrainConfig
  budget: int
  overrides: tuple[tuple[str, str], ...] = ()
  episodes_reproducible: bool = True
  label: str = dataclasses.field(init=False)

  def __post_init__(self):
    object.__setattr__(self, "label", protocol_label(self._fields_json()))

  @property
  def env_steps(self) -> int:
    """Env steps each run trains for: whole iterations covering the budget."""
    return self.train.iterations * self.train.steps_per_iteration

  def _fields_json(self) -> dict[str, Any]:
    """The JSON dict of every field but the label."""
    doc = {
      "suite": self.suite,
      "task": self.task,
      "protocol": {"name": self.protocol.name, **copy.deepcopy(self.protocol.settings)},
      "rule": self.rule.to_json(),
      "settings": copy.deepcopy(self.settings),
      "train": dataclasses.asdict(self.train),
      "env_steps": self.env_steps,
      "budget": self.budget,
      "overrides": dict(self.overrides),
    }
    if not self.episodes_reproducible:
      doc["episodes_reproducible"] = False
    return doc

  def to_json(self) -> dict[str, Any]:
    """The dict ``config.json`` stores (without the per-run seed, versions
    and creation time), the protocol label under ``"label"``."""
    return {**self._fields_json(), LABEL_KEY: self.label}

  def to_record_json(self) -> dict[str, Any]:
    """:meth:`to_json` and, under ``"runtime"``, the machine the run computes
    on (:func:`disco_eval.runtime.environment`: backend, device kind and
    count, jax/jaxlib versions, deterministic ops, the environment variables
    that can change results). The runtime is recorded, not matched: a run
    resumed on another machine is the same run (``VOLATILE_CONFIG_KEYS``).
    Initialises JAX's backend: call it where the run computes.

    Under ``"provenance"``, the command line and the code (version, git
    commit and dirty flag) that made the run, and the sha256 of the data
    files it reads (:mod:`disco_eval.provenance`), volatile like the runtime."""
    return {
      **self.to_json(),
      RUNTIME_KEY: runtime.environment(),
      provenance.PROVENANCE_KEY: provenance.current(self.suite),
    }
