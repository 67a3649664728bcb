"""The protocol label of a run: which runs measured the same thing.

Runs may be compared when they ran one suite under one label: the protocol's
name (``BASE+OVERRIDE`` for a suite's named override, e.g.
``disco+cpu-small-batch``), with ``@STEPS`` when the step budget is not the
protocol's, ``+KEY=VALUE`` for each ``protocol.*`` override (e.g.
``scoreboard-1m@40000+eval_episodes=8``), ``+policy_lag=1`` for a
host-stepped run whose actor lagged the learner by one iteration
(:data:`LABELLED_TRAIN_KEYS`: a different algorithm, not a different speed),
and ``+torso=DTYPE`` when the agent's torso computes in another dtype than
float32 (``agent.torso_dtype``, e.g. ``disco+torso=bfloat16``): such runs
measure a different computation.

The label is a pure function of a run's config (the JSON dict that
``config.json`` stores, see :meth:`disco_eval.config.run_config.RunConfig.to_json`).
It is computed once, when the config is resolved, and stored beside it under
``"label"``; :func:`run_label` derives it for records written before that.
"""

from typing import Any, Mapping

from disco_eval.config.train import LOOP_SETTINGS, OPTIMIZER_SETTINGS, steps_per_iteration_of

# Loop settings that do not change what a run measures (runs that differ only
# in these still compare without a warning): declared ``measured=False``.
IGNORED_TRAIN_KEYS = tuple(s.name for s in LOOP_SETTINGS if not s.measured)
LABEL_KEY = "label"
# Loop settings shown in the label when not at their default: declared ``labelled``.
LABELLED_TRAIN_DEFAULTS = {s.name: s.default for s in LOOP_SETTINGS if s.labelled}
LABELLED_TRAIN_KEYS = tuple(LABELLED_TRAIN_DEFAULTS)
# Optimiser settings whose ``--set`` override the label shows (``+weight_decay=0.1``): declared
# ``labelled``. The learning rate is not: a tuning sweep's values are told apart by
# ``compare --select`` (docs/reports.md).
LABELLED_OPTIMIZER_KEYS = tuple(f"optimizer.{s.name}" for s in OPTIMIZER_SETTINGS if s.labelled)
DEFAULT_TORSO_DTYPE = "float32"  # as agents/dtypes.py (not imported: config comes first)


def protocol_name(config: Mapping[str, Any] | None) -> str | None:
  """The protocol's name in a stored config (a table with ``name``, or a
  plain string in some older records); None if it names none."""
  protocol = (config or {}).get("protocol")
  if isinstance(protocol, dict) and isinstance(protocol.get("name"), str):
    return protocol["name"]
  return protocol if isinstance(protocol, str) else None


def torso_dtype(config: Mapping[str, Any]) -> str:
  """The stored ``settings.agent.torso_dtype`` (float32 for older records)."""
  agent = (config.get("settings") or {}).get("agent")
  value = agent.get("torso_dtype") if isinstance(agent, Mapping) else None
  return value if isinstance(value, str) and value else DEFAULT_TORSO_DTYPE


def _protocol_changes(config: Mapping[str, Any]) -> str:
  """``+KEY=VALUE`` for each ``protocol.*`` override and each override of a
  labelled optimiser setting, sorted, then for each labelled loop setting off
  its protocol's value (or default), then ``+torso=DTYPE`` unless the
  torso computes in float32."""
  overrides = config.get("overrides") or {}
  changed = sorted(
    str(k).split(".", 1)[1] + "=" + str(v)
    for k, v in overrides.items()
    if str(k).startswith("protocol.") or str(k) in LABELLED_OPTIMIZER_KEYS
  )
  train = config.get("train")
  train = train if isinstance(train, Mapping) else {}
  protocol = config.get("protocol")
  protocol = protocol if isinstance(protocol, Mapping) else {}
  # Off the protocol's value where the protocol sets one (e.g. the paper's
  # frame_stack), else off the declared default.
  changed += [
    f"{k}={train[k]}"
    for k, default in LABELLED_TRAIN_DEFAULTS.items()
    if train.get(k, default) not in (protocol.get(k, default), None)
  ]
  dtype = torso_dtype(config)
  if dtype != DEFAULT_TORSO_DTYPE:
    changed.append(f"torso={dtype}")
  return "".join(f"+{c}" for c in changed)


def protocol_label(
  config: Mapping[str, Any] | None, name: str | None = None, env_steps: int | None = None
) -> str | None:
  """``name``, or ``name@STEPS`` when the budget is not the protocol's.

  Args:
    config: a run config as stored (old records included).
    name: the protocol's name (default: the config's, see protocol_name).
    env_steps: the run's env steps (default: the config's ``env_steps``).

  The budget counts as the protocol's when it is the protocol's
  ``env_steps`` rounded up to whole iterations (the loop's steps per iteration).
  The budget asked for (``budget``) wins over the steps run: rules whose
  iterations differ in size stop at slightly different env steps and still
  share a label. None when the config names no protocol.
  """
  config = config or {}
  name = name if name is not None else protocol_name(config)
  if name is None:
    return None
  stored_steps = config.get("env_steps")
  if env_steps is None and isinstance(stored_steps, int) and not isinstance(stored_steps, bool):
    env_steps = stored_steps
  protocol = config.get("protocol")
  budget = protocol.get("env_steps") if isinstance(protocol, dict) else None
  asked = config.get("budget")
  if isinstance(asked, int) and isinstance(budget, (int, float)):
    env_steps = budget if asked == budget else asked
  if env_steps is None or not isinstance(budget, (int, float)):
    return name
  suffix = _protocol_changes(config)
  if budget <= env_steps < budget + steps_per_iteration_of(config.get("train") or {}):
    return name + suffix
  return f"{name}@{env_steps}{suffix}"


def run_label(
  config: Mapping[str, Any] | None, name: str | None = None, env_steps: int | None = None
) -> str | None:
  """The stored label of a config, else the one :func:`protocol_label`
  derives (records written before the label was stored)."""
  stored = (config or {}).get(LABEL_KEY)
  if isinstance(stored, str) and stored:
    return stored
  return protocol_label(config, name, env_steps)
