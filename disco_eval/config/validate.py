"""Every setting of a run checked before anything runs: types, ranges, relations.

One place says which values a run may use. :func:`check_run_config` checks a
resolved :class:`~disco_eval.config.run_config.RunConfig` (the rule's settings
tables, the training loop, the protocol's evaluation, the budget);
:func:`check_loop_fields` the loop's sizes alone (before they divide the
budget); :func:`check_sweep` the sweep's own numbers (seeds, ``--steps``,
``--checkpoint-every``). Each problem is one :class:`UserError` line naming
the key, the value and the allowed range, e.g.::

  optimizer.learning_rate = nan is out of range: a finite number > 0 (set with --set optimizer.learning_rate=...)

The ranges of the rule tables go by key: exact names first
(:data:`EXACT`), then the parts of a name (:data:`BY_NAME`: any discount or
gamma in [0, 1], any lambda in [0, 1], any cost >= 0, ...); every other
number must at least be finite. The loop's and the protocol's ranges are
those their settings declare (:mod:`disco_eval.config.setting`). Nothing here
imports anything above :mod:`disco_eval.config`.
"""

import dataclasses
from typing import Any, Iterable, Mapping

from disco_eval.config.run_config import RunConfig
from disco_eval.config.setting import (
  AT_LEAST_2,
  BUDGET,
  FINITE,
  NON_NEGATIVE,
  POSITIVE,
  POSITIVE_INT,
  SEED,
  UNIT,
  Range,
)
from disco_eval.config.suites import PROTOCOL_SETTINGS, Protocol
from disco_eval.config.train import LOOP_SETTINGS, OPTIMIZER_SETTINGS, TrainConfig
from disco_eval.errors import UserError

# Settings of the rule tables with a range of their own ("table.key").
EXACT: dict[str, Range] = {
  **{f"optimizer.{s.name}": s.allowed for s in OPTIMIZER_SETTINGS if s.allowed is not None},
  "agent.head_init_std": NON_NEGATIVE,
  # DPO's drift scales and the evolved DQN losses' exploration (rules/dpo.py, rules/dqn.py)
  "hyperparams.drift_alpha": POSITIVE,
  "hyperparams.drift_beta": POSITIVE,
  "rule.epsilon_start": UNIT,
  "rule.epsilon_end": UNIT,
  "rule.eval_epsilon": UNIT,
  "rule.epsilon_decay_steps": POSITIVE_INT,
  "rule.target_update_period": POSITIVE_INT,
}
# Settings that take one of a few names ("table.key": the names).
CHOICES: dict[str, tuple[str, ...]] = {
  "agent.torso_dtype": ("float32", "bfloat16"),  # agents/dtypes.py
  "optimizer.lr_schedule": ("constant", "cosine"),  # train/optim.py
}
# Settings of [hyperparams] and [rule] by the parts of their key, first match
# wins: (part, where it must be: "in", "end" or "is", range).
BY_NAME: tuple[tuple[str, str, Range], ...] = (
  ("discount", "in", UNIT),
  ("gamma", "in", UNIT),
  ("lambda", "in", UNIT),
  ("cost", "end", NON_NEGATIVE),
  ("eps", "end", POSITIVE),  # clip_eps, ema_eps
  ("num_bins", "is", AT_LEAST_2),
  ("ema_decay", "is", UNIT),
  ("target_params_coeff", "is", UNIT),
  ("max_abs_value", "is", POSITIVE),
  ("num_", "start", POSITIVE_INT),  # num_epochs, num_minibatches
  ("_size", "end", POSITIVE_INT),  # prediction_size
)
# The loop's settings and the protocol's items, by name: their declared ranges.
LOOP: dict[str, Range] = {s.name: s.allowed for s in LOOP_SETTINGS if s.allowed is not None}
PROTOCOL: dict[str, Range] = {s.name: s.allowed for s in PROTOCOL_SETTINGS if s.allowed is not None}


def out_of_range(key: str, value: Any, allowed: str, hint: str | None = None) -> UserError:
  """The one-line error for `key` = `value` outside `allowed`; `hint` says
  how to set it (default: ``--set KEY=...``)."""
  how = hint or f"--set {key}=..."
  return UserError(f"{key} = {value!r} is out of range: {allowed} (set with {how})")


def check(key: str, value: Any, allowed: Range, hint: str | None = None) -> None:
  """A UserError unless `value` is in `allowed` (see :func:`out_of_range`)."""
  if not allowed.allows(value):
    raise out_of_range(key, value, allowed.text, hint)


def _matches(name: str, part: str, where: str) -> bool:
  """Whether key `name` holds `part` at `where` ("in", "end", "start", "is")."""
  tests = {
    "in": part in name,
    "end": name.endswith(part),
    "start": name.startswith(part),
    "is": name == part,
  }
  return tests[where]


def setting_range(table: str, name: str, value: Any) -> Range | None:
  """The range of setting `table`.`name` (None: any value of its type).

  Exact entries first, then (for [hyperparams] and [rule]) the parts of the
  name; any other number must be finite, any integer of [agent] (sizes,
  channels) positive. Booleans and strings have no range.
  """
  key = f"{table}.{name}"
  if key in EXACT:
    return EXACT[key]
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  if table in ("hyperparams", "rule"):
    for part, where, found in BY_NAME:
      if _matches(name, part, where):
        return found
  if table == "agent" and isinstance(value, int):
    return POSITIVE_INT
  return FINITE if isinstance(value, float) else None


def _check_value(key: str, table: str, name: str, value: Any) -> None:
  """One setting (a list: each element) against its range."""
  if key in CHOICES:
    if value not in CHOICES[key]:
      raise out_of_range(key, value, "one of " + ", ".join(CHOICES[key]))
    return
  if isinstance(value, (list, tuple)):
    for item in value:
      found = setting_range(table, name, item)
      if found is not None and not found.allows(item):
        raise out_of_range(key, list(value), f"a list of which each is {found.text}")
    return
  found = setting_range(table, name, value)
  if found is not None:
    check(key, value, found)


def check_settings(settings: Mapping[str, Mapping[str, Any]]) -> None:
  """The rule's settings tables (hyperparams, rule, agent, optimizer; the
  manifest's [train] table is checked as the loop, see
  :func:`check_loop`). A categorical value needs ``num_bins >= 2``; a scalar
  one (``categorical_value = false``) uses one bin."""
  scalar_value = (settings.get("rule") or {}).get("categorical_value") is False
  for table in ("hyperparams", "rule", "agent", "optimizer"):
    for name, value in (settings.get(table) or {}).items():
      if name == "num_bins" and scalar_value:
        check(f"{table}.{name}", value, POSITIVE_INT)
        continue
      _check_value(f"{table}.{name}", table, name, value)


def check_loop_fields(cfg: TrainConfig) -> None:
  """Each loop setting alone against :data:`LOOP` (``train.KEY``)."""
  values = dataclasses.asdict(cfg)
  for name, allowed in LOOP.items():
    check(f"train.{name}", values[name], allowed)


def _check_divides(key: str, value: int, total: int, what: str) -> None:
  """A UserError unless `value` divides `total` (the size `what`)."""
  if total % value:
    raise out_of_range(key, value, f"a divisor of {what} = {total}")


def learner_batch(cfg: TrainConfig) -> int:
  """Trajectories in one learner batch (:attr:`TrainConfig.learner_batch`)."""
  return cfg.learner_batch


def _passes(rule_table: Mapping[str, Any]) -> tuple[int, int]:
  """(num_epochs, num_minibatches) of a rule's [rule] table, each checked
  (1, 1 if unset: one pass over the whole batch)."""
  epochs, minibatches = rule_table.get("num_epochs", 1), rule_table.get("num_minibatches", 1)
  check("rule.num_epochs", epochs, POSITIVE_INT)
  check("rule.num_minibatches", minibatches, POSITIVE_INT)
  return epochs, minibatches


def check_loop(cfg: TrainConfig, rule_table: Mapping[str, Any] | None = None) -> None:
  """The loop's settings and their relations, with the rule's [rule] table
  (``num_epochs`` x ``num_minibatches`` passes, as
  :class:`disco_eval.train.learner.Learner` splits the batch)."""
  check_loop_fields(cfg)
  cap = cfg.buffer_capacity
  for name, value in (("min_buffer", cfg.min_buffer), ("sample_entries", cfg.sample_entries)):
    if value > cap:
      raise out_of_range(
        f"train.{name}", value, f"an integer in [1, train.buffer_capacity = {cap}]"
      )
  if cfg.num_envs % cfg.devices:
    raise out_of_range(
      "train.num_envs", cfg.num_envs, f"a multiple of train.devices = {cfg.devices}"
    )
  batch = learner_batch(cfg)
  what = "the learner batch (train.sample_entries x train.num_envs trajectories)"
  _check_divides("train.learner_microbatches", cfg.learner_microbatches, batch, what)
  epochs, minibatches = _passes(rule_table or {})
  _check_divides("rule.num_minibatches", minibatches, batch, what)
  # The learner runs the agent on one minibatch (PPO-style passes) or one
  # microbatch at a time; on a mesh each piece is split over the devices.
  if epochs * minibatches > 1:
    key, piece = "rule.num_minibatches", batch // minibatches
  else:
    key, piece = "train.learner_microbatches", batch // cfg.learner_microbatches
  if piece % cfg.devices:
    value = minibatches if key == "rule.num_minibatches" else cfg.learner_microbatches
    raise out_of_range(
      key,
      value,
      f"a divisor of the learner batch ({batch} trajectories) into pieces of a "
      f"multiple of train.devices = {cfg.devices} trajectories",
    )


def check_protocol(protocol: Protocol) -> None:
  """The protocol's budget and evaluation sizes, where it sets them."""
  for name, allowed in PROTOCOL.items():
    value = protocol.get(name)
    if value is not None:
      check(f"protocol.{name}", value, allowed)


def check_run_config(config: RunConfig) -> None:
  """Every setting of a resolved run config: the rule's tables, the loop
  (with the rule's passes), the protocol and the budget (``--steps``)."""
  check_settings(config.settings)
  check_loop(config.train, config.settings.get("rule"))
  check_protocol(config.protocol)
  check_budget(config.budget)


def check_budget(steps: Any) -> None:
  """The env-step budget: a positive integer (``--steps``)."""
  check("--steps", steps, BUDGET, hint="--steps N")


def check_sweep(seeds: Iterable[Any], steps: Any, checkpoint_every: Any) -> None:
  """The sweep's own numbers: at least one seed, each >= 0; the budget
  (``--steps``, None: the protocol's); chunks between checkpoints >= 1
  (None: the backend's default)."""
  seeds = list(seeds)
  if not seeds:
    raise out_of_range("--seeds", 0, POSITIVE_INT.text, hint="--seeds N")
  for seed in seeds:
    check("seed", seed, SEED, hint="--seed-start N")
  if steps is not None:
    check_budget(steps)
  if checkpoint_every is not None:
    check("--checkpoint-every", checkpoint_every, POSITIVE_INT, hint="--checkpoint-every N")
