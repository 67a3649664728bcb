"""Sweeps: train every (rule, task, seed) of a suite and record each run.

The seeds of one (rule, task) share one compiled program: their training
states are stacked and, on accelerators, the loop is vmapped over them (on the
CPU the seeds take turns, chunk by chunk, which is faster there). Every run writes its
record folder (``disco_eval.store``): config, status, metrics over env steps,
periodic checkpoints of the whole training state, and the final summary.
Complete runs are skipped; interrupted runs resume from their checkpoint.

A sweep is planned into units of work (:class:`Unit`: one rule, one task and
the seeds trained together), each run by :func:`run_unit`. A unit is small and
picklable and names its rule by its place in the spec, so that a worker of a
cluster (``disco_eval.launch``) runs it from the spec alone; :func:`run_sweep`
runs the units one after another in this process.
"""

import copy
import dataclasses
import math
import time
import traceback
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval import checkpoints, manifests, store, suites
from disco_eval.agents.networks import Agent
from disco_eval.envs import registry as envs
from disco_eval.errors import UserError
from disco_eval.rules.registry import build_rule
from disco_eval.train.loop import TrainConfig
from disco_eval.train.trainers import make_trainer
from disco_eval.train.optim import make_optimizer

TRAIN_KEYS = ("num_envs", "rollout_len", "buffer_capacity", "min_buffer",
              "sample_entries", "updates_per_iteration", "chunk", "vmap_seeds",
              "learner_microbatches", "devices")
# Protocol settings a user may change with ``--set protocol.KEY=VALUE`` (for
# small runs); a run that changes them is labelled as off-protocol.
PROTOCOL_KEYS = ("eval_episodes", "eval_max_steps", "eval_envs")


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """What to run."""
  suite: str
  rules: tuple[str, ...] = ("disco103",)
  seeds: tuple[int, ...] = (0, 1, 2)
  tasks: tuple[str, ...] = ()
  steps: int | None = None                 # env-step budget override
  protocol: str | None = None
  out: Path = Path("results")
  overrides: tuple[tuple[str, str], ...] = ()   # ("table.key", "value")
  checkpoint_every: int = 10               # chunks between checkpoints


@dataclasses.dataclass
class Progress:
  """An event for progress displays."""
  # "plan" | "start" | "chunk" | "done" | "skip" | "failed" | "resume" | "busy"
  # | "retry" (a launcher submits a unit again)
  kind: str
  rule: str
  task: str
  seeds: tuple[int, ...]
  env_steps: int = 0
  total_steps: int = 0
  steps_per_s: float = 0.0
  latest_return: float = float("nan")          # over the seeds
  latest_returns: dict[int, float] = dataclasses.field(default_factory=dict)  # per seed
  message: str = ""


@dataclasses.dataclass
class RunResult:
  rule: str
  task: str
  seed: int
  # "complete" | "skipped" | "failed" | "busy" (being written by another
  # process: not touched here)
  status: str
  path: Path
  summary: dict[str, Any] | None = None
  error: str | None = None


def _split_overrides(overrides) -> tuple[dict[str, str], dict[str, str], dict[str, int]]:
  """Separates ``train.*`` loop and ``protocol.*`` overrides from rule-manifest
  overrides."""
  rule_over, train_over, protocol_over = {}, {}, {}
  for key, value in overrides:
    if key.startswith("protocol."):
      name = key.split(".", 1)[1]
      if name not in PROTOCOL_KEYS:
        raise UserError(f"unknown setting '{key}'; protocol settings that may be changed: "
                        + ", ".join(f"protocol.{k}" for k in PROTOCOL_KEYS))
      try:
        protocol_over[name] = int(value)
      except ValueError:
        raise UserError(f"{key} must be an integer, got '{value}'") from None
      if protocol_over[name] <= 0:
        raise UserError(f"{key} must be positive, got {value}")
    elif key.startswith("train."):
      name = key.split(".", 1)[1]
      if name not in TRAIN_KEYS:
        raise UserError(f"unknown setting '{key}'; train settings: "
                        + ", ".join(f"train.{k}" for k in TRAIN_KEYS))
      train_over[name] = value
    else:
      rule_over[key] = value
  return rule_over, train_over, protocol_over


def rule_settings(manifest, suite: suites.SuiteManifest,
                  rule_over: dict[str, str]) -> dict:
  """A rule's settings tables for a suite.

  Precedence, lowest first: the rule's defaults, the suite's ``[agent]`` table
  (the torso for its observations, which may bring keys of its own), the rule
  manifest's ``[suites.SUITE]`` overrides, the user's ``--set``.
  """
  tables = manifest.settings()
  tables["agent"].update(copy.deepcopy(suite.raw.get("agent", {})))
  tables = manifests.apply_overrides(tables, manifest.suites.get(suite.name, {}),
                                     f"{manifest.path}: [suites.{suite.name}]")
  return manifests.apply_overrides(tables, rule_over, f"rule '{manifest.name}'")


def train_config(protocol: suites.Protocol, steps: int | None,
                 train_over: dict[str, str]) -> TrainConfig:
  """The loop settings of a protocol, with a step budget and overrides."""
  vals = {k: int(protocol.get(k)) for k in TRAIN_KEYS if protocol.get(k) is not None}
  for k, v in train_over.items():
    try:
      vals[k] = int(v)
    except ValueError:
      raise UserError(f"train.{k} must be an integer, got '{v}'") from None
  cfg = TrainConfig(**{k: v for k, v in vals.items() if k in TRAIN_KEYS})
  budget = int(steps if steps is not None else protocol.get("env_steps"))
  if budget <= 0:
    raise UserError(f"--steps must be positive, got {budget}")
  iterations = math.ceil(budget / cfg.steps_per_iteration)
  cfg = dataclasses.replace(cfg, iterations=iterations)
  if "min_buffer" not in train_over and iterations < 2 * cfg.min_buffer:
    # A small budget would end before learning starts: learn from half-way
    # (recorded in the run's config as the min_buffer used).
    cfg = dataclasses.replace(cfg, min_buffer=max(1, iterations // 2))
  return cfg


def effective_protocol(protocol: suites.Protocol, cfg: TrainConfig,
                       protocol_over: dict[str, int]) -> suites.Protocol:
  """The protocol a sweep runs: the manifest's, with the user's
  ``protocol.*`` overrides and, for a budget below the protocol's (a small,
  off-protocol run, labelled ``NAME@STEPS`` in reports), the protocol's
  ``smoke_*`` evaluation settings (e.g. NetHack's 4,096 evaluation episodes
  of ~25k steps each become a few short ones). Both are recorded in the run's
  config; ``smoke = true`` marks the second."""
  settings = dict(protocol.settings)
  budget = protocol.get("env_steps")
  if isinstance(budget, (int, float)) and cfg.iterations * cfg.steps_per_iteration < budget:
    smoke = {k[len("smoke_"):]: v for k, v in settings.items() if k.startswith("smoke_")}
    if smoke:
      settings.update(smoke)
      settings["smoke"] = True
  settings.update(protocol_over)
  return dataclasses.replace(protocol, settings=settings)


def _now() -> str:
  return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _take(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


# Short names accepted by ``--set`` (e.g. ``--set ppo.lr=3e-4``).
ALIASES = {"lr": "optimizer.learning_rate"}


def _scope_overrides(overrides, labels: list[str]) -> dict[str, list[tuple[str, str]]]:
  """Overrides per rule label: ``RULE.KEY=V`` applies to that rule only,
  any other key to every rule; ``lr`` is short for optimizer.learning_rate."""
  scoped: dict[str, list[tuple[str, str]]] = {label: [] for label in labels}
  for key, value in overrides:
    head, _, rest = key.partition(".")
    targets = [head] if rest and head in scoped else list(scoped)
    name = rest if rest and head in scoped else key
    if name.startswith("protocol.") and len(targets) == 1 and len(labels) > 1:
      raise UserError(f"'{key}': protocol settings apply to every rule; drop '{head}.'")
    for label in targets:
      scoped[label].append((ALIASES.get(name, name), value))
  return scoped


def rule_train_config(protocol: suites.Protocol, steps: int | None,
                      settings: dict, train_over: dict[str, str]) -> TrainConfig:
  """Loop settings of one rule: the protocol's, then the rule manifest's
  ``[train]`` table (e.g. PPO's on-policy loop), then ``--set train.*``."""
  merged = {k: str(v) for k, v in settings.get("train", {}).items()}
  merged.update(train_over)
  return train_config(protocol, steps, merged)


@dataclasses.dataclass(frozen=True)
class Unit:
  """One unit of work: the seeds of one (rule, task) trained together.

  `rule` is the rule's index in ``SweepSpec.rules`` and `label` its label;
  `overrides` are the spec's overrides that apply to this rule (scoped, with
  aliases expanded); `env_steps` is each run's step budget (for displays).
  """
  rule: int
  label: str
  task: str
  seeds: tuple[int, ...]
  overrides: tuple[tuple[str, str], ...] = ()
  env_steps: int = 0


@dataclasses.dataclass
class Plan:
  """A sweep planned into units, with the "plan" event that announces it and
  the rules resolved while planning (by index; reused by an in-process run)."""
  units: list[Unit]
  announce: Progress
  rules: dict[int, Any]


def _seed_groups(seeds: tuple[int, ...], per_unit: int) -> list[tuple[int, ...]]:
  """`seeds` cut into groups of `per_unit` (0: one group of all)."""
  if per_unit < 0:
    raise UserError(f"--seeds-per-unit must be 0 (all seeds together) or more, got {per_unit}")
  size = per_unit or len(seeds)
  return [seeds[i:i + size] for i in range(0, len(seeds), size)]


def plan_sweep(spec: SweepSpec, seeds_per_unit: int = 0) -> Plan:
  """Checks the spec and cuts the sweep into units: rule by rule, task by
  task, the seeds in groups of `seeds_per_unit` (0: all seeds of a (rule,
  task) trained together, as :func:`run_sweep` does)."""
  suite = suites.load_suite(spec.suite)
  base_protocol = suite.protocol(spec.protocol)
  tasks = suite.check_tasks(list(spec.tasks))
  if not spec.seeds:
    raise UserError("--seeds must be at least 1")
  groups = _seed_groups(tuple(spec.seeds), seeds_per_unit)
  _split_overrides(spec.overrides)   # unknown train./protocol. keys fail before any work
  resolved = [checkpoints.resolve_rule(r) for r in spec.rules]
  labels = [r.label for r in resolved]
  if len(set(labels)) != len(labels):
    raise UserError(f"the same rule is named twice: {', '.join(labels)}")
  units, budgets, protocol = [], [], None
  for index, (rule, (label, scoped)) in enumerate(
      zip(resolved, _scope_overrides(spec.overrides, labels).items())):
    _, cfg, rule_protocol = _rule_plan(suite, base_protocol, spec.steps, rule, scoped)
    protocol = protocol or rule_protocol
    total = cfg.iterations * cfg.steps_per_iteration
    budgets.append(total)
    units += [Unit(index, label, task, seeds, tuple(scoped), total)
              for task in tasks for seeds in groups]
  runs = len(resolved) * len(tasks) * len(spec.seeds)
  announce = Progress("plan", "", "", tuple(spec.seeds),
                      total_steps=sum(budgets) * len(tasks) * len(spec.seeds),
                      message=f"{runs} runs"
                      + ("; off-protocol budget, small evaluation: "
                         + ", ".join(f"{k[6:]}={protocol.get(k[6:])}" for k in protocol.settings
                                     if k.startswith("smoke_"))
                         if protocol.get("smoke") else ""))
  return Plan(units, announce, dict(enumerate(resolved)))


def _rule_plan(suite, base_protocol, steps, rule, scoped):
  """(settings, loop config, protocol) of one rule, from its scoped overrides."""
  rule_over, train_over, protocol_over = _split_overrides(scoped)
  settings = rule_settings(rule.manifest, suite, rule_over)
  cfg = rule_train_config(base_protocol, steps, settings, train_over)
  return settings, cfg, effective_protocol(base_protocol, cfg, protocol_over)


def run_unit(spec: SweepSpec, unit: Unit,
             on_progress: Callable[[Progress], None] = lambda p: None,
             rule=None) -> list[RunResult]:
  """Runs one unit of a sweep; returns one result per seed.

  Everything is derived from `spec` and `unit` (the rule is resolved again
  unless `rule`, the one resolved while planning, is given), so a worker
  process can run a unit planned elsewhere. A run locked by another process
  is left alone and reported "busy".
  """
  suite = suites.load_suite(spec.suite)
  base_protocol = suite.protocol(spec.protocol)
  if rule is None:
    rule = checkpoints.resolve_rule(spec.rules[unit.rule])
  if rule.label != unit.label:
    raise UserError(f"rule '{spec.rules[unit.rule]}' is '{rule.label}' here but was "
                    f"'{unit.label}' when the sweep was planned; install the same "
                    "rules on every machine")
  settings, cfg, protocol = _rule_plan(suite, base_protocol, spec.steps, rule,
                                       unit.overrides)
  return _run_group(spec, suite, protocol, unit.task, rule, settings, cfg,
                    unit.seeds, on_progress)


def run_sweep(spec: SweepSpec,
              on_progress: Callable[[Progress], None] = lambda p: None,
              seeds_per_unit: int = 0) -> list[RunResult]:
  """Runs the sweep rule x task x seed in this process, unit after unit;
  returns one result per run."""
  plan = plan_sweep(spec, seeds_per_unit)
  on_progress(plan.announce)
  results = []
  for unit in plan.units:
    results += run_unit(spec, unit, on_progress, plan.rules[unit.rule])
  return results


def build_parts(suite, task: str, rule, settings: dict):
  """The environment, rule object, agent and optimiser of one (rule, task)."""
  env = envs.make(suite, task)
  rule_obj = build_rule(rule.manifest.kind, settings, rule.label)
  agent = Agent(settings["agent"], rule_obj.output_spec(env.num_actions),
                env.num_actions, env.observation_shape)
  return env, rule_obj, agent, make_optimizer(settings["optimizer"])


def _run_group(spec, suite, protocol, task, rule, settings, cfg, seeds, on_progress):
  env, rule_obj, agent, optimizer = build_parts(suite, task, rule, settings)
  kind = rule.manifest.kind
  trainer = make_trainer(env, agent, rule_obj, optimizer, cfg, protocol)
  total_steps = cfg.iterations * cfg.steps_per_iteration
  base_config = {
      "suite": suite.name, "task": task,
      "protocol": {"name": protocol.name, **protocol.settings},
      "rule": {"name": rule.label, "kind": kind, "sha256": rule.sha256,
               "source": str(rule.path) if rule.path else None},
      "settings": settings,
      "train": dataclasses.asdict(cfg), "env_steps": total_steps,
      "budget": int(spec.steps if spec.steps is not None else protocol.get("env_steps")),
      "overrides": dict(spec.overrides),
  }
  if not env.reproducible:
    # e.g. NetHackChallenge-v0 refuses seeding: the same seed sees other games.
    base_config["episodes_reproducible"] = False
  results, pending = [], []
  with ExitStack() as stack:
    records = {}
    for seed in seeds:
      config = {**base_config, "seed": seed, "versions": store.versions(),
                "created": _now()}
      rec = store.RunRecord.open(spec.out, suite.name, task, rule.label, seed, config)
      try:
        stack.enter_context(rec.lock())
      except store.RunBusy as e:  # another sweep writes it: leave it alone
        results.append(RunResult(rule.label, task, seed, "busy", rec.path, error=str(e)))
        on_progress(Progress("busy", rule.label, task, (seed,), message=str(e)))
        continue
      if rec.is_complete():
        results.append(RunResult(rule.label, task, seed, "skipped", rec.path, rec.summary))
        on_progress(Progress("skip", rule.label, task, (seed,), total_steps, total_steps))
        continue
      records[seed] = rec
      pending.append(seed)
    if not pending:
      return results
    # Seeds trained together resume together, from the newest checkpoint
    # they all have (each run keeps its two newest), so that a resumed sweep
    # computes exactly what an uninterrupted one does.
    common = set.intersection(*(set(records[s].checkpoint_steps()) for s in pending))
    start_steps = max(common) if common else 0
    template = jax.eval_shape(lambda: trainer.init(0)) if start_steps else None
    states = {}
    for seed in pending:
      if start_steps:
        state, _, extra = records[seed].load_checkpoint(template, start_steps)
        states[seed] = (state, int(extra["iteration"]))
      records[seed].truncate_metrics(start_steps)
    if start_steps:
      on_progress(Progress("resume", rule.label, task, tuple(pending), start_steps, total_steps,
                           message=f"resuming {rule.label}/{task} seeds "
                                   f"{','.join(map(str, pending))} at {start_steps} env steps"))
    start = states[pending[0]][1] if start_steps else 0
    try:
      summaries = _train_seeds(trainer, rule, task, pending, start,
                               {s: states[s][0] if start_steps else None for s in pending},
                               records, cfg, protocol, suite, spec, on_progress)
      for seed in pending:
        results.append(RunResult(rule.label, task, seed, "complete",
                                 records[seed].path, summaries[seed]))
    except (KeyboardInterrupt, SystemExit):
      raise
    except Exception as e:  # noqa: BLE001 - recorded, reported, not averaged
      msg = f"{type(e).__name__}: {e}"
      for seed in pending:
        records[seed].mark_failed(msg + "\n" + traceback.format_exc(limit=5))
        results.append(RunResult(rule.label, task, seed, "failed",
                                 records[seed].path, error=msg))
      on_progress(Progress("failed", rule.label, task, tuple(pending), message=msg))
    finally:
      trainer.close()
  return results


def _train_seeds(trainer, rule, task, seeds, start, states, records, cfg,
                 protocol, suite, spec, on_progress) -> dict[int, dict]:
  """Trains `seeds` (all at iteration `start`) together, chunk by chunk."""
  spi = cfg.steps_per_iteration
  total = cfg.iterations * spi
  # Each seed starts from its own init (independent of the other seeds).
  fresh = [states[s] if states[s] is not None else trainer.init(s) for s in seeds]
  # Host trainers take the seeds' states as a list (their replay buffers are
  # large: no stacked copies); compiled trainers stack them on a leading axis.
  stacked = trainer.stacks_seeds
  state = _stack(fresh) if stacked else fresh
  del fresh, states
  for s in seeds:
    records[s].mark_running(start * spi)
  on_progress(Progress("start", rule.label, task, tuple(seeds), start * spi, total))
  t0, chunks = time.time(), 0
  it = start
  while it < cfg.iterations:
    count = min(cfg.chunk, cfg.iterations - it)
    tc = time.time()
    state, m = trainer.run_chunk_group(state, rule.params, it, count)
    m = jax.device_get(m)
    extra = getattr(m, "extra", None) or {}   # host tasks' episode columns (sums)
    for j, s in enumerate(seeds):
      rows = []
      for k in range(count):
        n = int(m.episodes[j, k])
        rows.append({
            "iteration": it + k, "env_steps": (it + k + 1) * spi,
            "episodes": n,
            "avg_return": float(m.return_sum[j, k]) / n if n else float("nan"),
            "learner_steps": int(m.learned[j, k]),
            "loss": float(m.loss[j, k]) if m.learned[j, k] else float("nan"),
            **{c: float(v[j, k]) for c, v in extra.items()}})
      records[s].append_metrics(rows)
    it += count
    chunks += 1
    if chunks % spec.checkpoint_every == 0 and it < cfg.iterations:
      for j, s in enumerate(seeds):
        records[s].save_checkpoint(_take(state, j) if stacked else state[j], it * spi,
                                   {"iteration": it})
    for s in seeds:
      records[s].mark_running(it * spi)
    sums, eps = m.return_sum[:, :count].sum(1), m.episodes[:, :count].sum(1)
    per_seed = {s: float(sums[j] / eps[j]) if eps[j] else float("nan")
                for j, s in enumerate(seeds)}
    on_progress(Progress("chunk", rule.label, task, tuple(seeds), it * spi, total,
                         steps_per_s=count * spi * len(seeds) / (time.time() - tc),
                         latest_return=float(sums.sum() / max(1, eps.sum())),
                         latest_returns=per_seed))
  wall = time.time() - t0
  window = int(protocol.get("final_window", 100))
  summaries = {}
  for j, s in enumerate(seeds):
    params = _take(state.params, j) if stacked else state[j].params
    rows = records[s].read_metrics()
    tail = [r["avg_return"] for r in rows[-window:]
            if r["avg_return"] is not None and not math.isnan(r["avg_return"])]
    figures = final_figures(trainer, suite, task, protocol, params,
                            jax.random.PRNGKey(10_000 + s), rows)
    summary = {
        "suite": suite.name, "task": task, "rule": rule.label, "seed": s,
        "protocol": protocol.name, "env_steps": total,
        **figures,
        "normalized_score": suite.normalize(task, figures["score"], protocol.name),
        "metric": protocol.get("metric", "return"),
        "final_window_iterations": window,
        "final_window_return": float(np.mean(tail)) if tail else float("nan"),
        "train_wall_s": wall,
        "seeds_in_program": len(seeds) if trainer.vmaps_seeds else 1,
        "rule_sha256": rule.sha256,
    }
    records[s].mark_complete(summary, env_steps=total)
    summaries[s] = summary
  on_progress(Progress("done", rule.label, task, tuple(seeds), total, total))
  return summaries


def final_figures(trainer, suite, task: str, protocol, params, key,
                  rows: list[dict]) -> dict[str, Any]:
  """A run's final score and the figures reported beside it.

  * Protocols scored on training episodes (``score_from`` starting with
    "training episodes", e.g. Crafter's) ask the task to compute them from
    the metrics rows; there is no separate evaluation.
  * Otherwise ``eval_episodes`` fresh episodes of the final policy (or the
    task's own evaluation, e.g. Sokoban's level split); the score is their
    mean return, or their median for ``metric = "median_score"`` (NetHack),
    with the mean beside it as ``mean_score``.
  """
  if str(protocol.get("score_from", "")).startswith("training episodes"):
    env = trainer.task
    if not env.scores_training_episodes:
      raise UserError(f"protocol '{protocol.name}' scores training episodes, which the "
                      f"'{suite.backend}' backend of task '{task}' does not record")
    figures = dict(env.score_from_training(rows, protocol))
    figures["score"] = float(figures["score"])
    figures["score_from"] = "training episodes"
    return figures
  own = envs.evaluate(suite, task, protocol, trainer.agent.apply, params, key)
  if own is not None:
    returns, extra = own
  else:
    returns, extra = trainer.evaluate(params, key, int(protocol.get("eval_episodes", 100)))
  returns = np.asarray(returns, np.float64)
  figures = {"eval_episodes": int(returns.shape[0]),
             "eval_return_std": float(np.std(returns)), **extra}
  if protocol.get("metric") == "median_score":
    figures["score"] = float(np.median(returns))
    figures["mean_score"] = float(np.mean(returns))
  else:
    figures["score"] = float(np.mean(returns))
  return figures
