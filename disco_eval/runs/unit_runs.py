"""The runs of one unit: the seeds of one (rule, task), their records, locks and resume.

The seeds of a unit are trained together as one seed group
(``train.seed_group``, which decides whether they run vmapped or take
turns: the one file to read about that). Every run writes its
record folder (``disco_eval.store``): config, status, metrics over env steps,
periodic checkpoints of the whole training state, and the final summary.
Complete and diverged runs are skipped; interrupted runs resume from their
checkpoint; a run locked by another process is left alone and reported
"busy"; a damaged record is refused (``store.RunRecord.open``), never
overwritten. A seed whose loss or parameters become non-finite is recorded
``diverged`` (``disco_eval.runs.divergence``); it keeps training with the
others of its seed group, and the group stops when all of its seeds diverged.
"""

import dataclasses
import traceback
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Callable

import jax

from disco_eval import runtime, store
from disco_eval.config.run_config import RUNTIME_KEY, RunConfig
from disco_eval.runs.context import UnitContext
from disco_eval.runs.data_used import data_used
from disco_eval.runs.divergence import GroupDiverged
from disco_eval.runs.final import run_summary
from disco_eval.runs.parts import build_parts
from disco_eval.runs.seeds import train_seeds
from disco_eval.runs.spec import Progress, RunResult, SweepSpec
from disco_eval.train.trainers import make_trainer


def _now() -> str:
  return datetime.now(timezone.utc).isoformat(timespec="seconds")


def checkpoint_cadence(spec: SweepSpec) -> dict:
  """How often a run is checkpointed on this backend (recorded under
  ``runtime``: chunks, None for by the clock only; minutes)."""
  every = runtime.checkpoint_every(spec.checkpoint_every, jax.default_backend())
  return {"every_chunks": every, "every_minutes": spec.checkpoint_minutes}


def _open_records(
  spec: SweepSpec, config: RunConfig, seeds, stack: ExitStack, on_progress
) -> tuple[list[RunResult], dict[int, store.RunRecord]]:
  """The records of `seeds`, locked: (results of the seeds not to train,
  records of those to train). Complete and diverged runs are skipped, busy
  ones left; a damaged record raises a UserError (nothing is written)."""
  label, task, total = config.rule.name, config.task, config.env_steps
  base = config.to_record_json()  # with the runtime (backend, devices)
  base[RUNTIME_KEY] = {**base[RUNTIME_KEY], "checkpoints": checkpoint_cadence(spec)}
  results, records = [], {}
  for seed in seeds:
    doc = {**base, **data_used(config.suite), "seed": seed, "versions": store.versions()}
    doc["created"] = _now()
    rec = store.RunRecord.open(spec.out, config.suite, task, label, seed, doc)
    try:
      stack.enter_context(rec.lock())
    except store.RunBusy as e:  # another sweep writes it: leave it alone
      results.append(RunResult(label, task, seed, "busy", rec.path, error=str(e)))
      on_progress(Progress("busy", label, task, (seed,), message=str(e)))
      continue
    if rec.is_finished():
      results.append(RunResult(label, task, seed, "skipped", rec.path, rec.summary))
      on_progress(Progress("skip", label, task, (seed,), total, total))
      continue
    records[seed] = rec
  return results, records


def _resume(
  trainer, config: RunConfig, records: dict[int, store.RunRecord], on_progress
) -> tuple[int, dict]:
  """(iteration to start at, state per seed or None) of the pending seeds.

  Seeds trained together resume together, from the newest checkpoint they
  all have (each run keeps its two newest), so that a resumed sweep computes
  exactly what an uninterrupted one does.
  """
  pending = list(records)
  common = set.intersection(*(set(records[s].checkpoint_steps()) for s in pending))
  start_steps = max(common) if common else 0
  template = jax.eval_shape(lambda: trainer.init(0)) if start_steps else None
  states, start = {s: None for s in pending}, 0
  for seed in pending:
    if start_steps:
      state, _, extra = records[seed].load_checkpoint(template, start_steps)
      states[seed], start = state, int(extra["iteration"])
      store.check_resume_point(records[seed].path, start, start_steps, config.train)
    records[seed].truncate_metrics(start_steps)
  if start_steps:
    label, task = config.rule.name, config.task
    on_progress(
      Progress(
        "resume",
        label,
        task,
        tuple(pending),
        start_steps,
        config.env_steps,
        message=f"resuming {label}/{task} seeds "
        f"{','.join(map(str, pending))} at {start_steps} env steps",
      )
    )
  return start, states


def _train_records(ctx: UnitContext, config: RunConfig, records) -> list[RunResult]:
  """Trains the pending seeds; a failure is recorded in each of their runs."""
  label, task, pending = config.rule.name, config.task, list(records)
  start, states = _resume(ctx.trainer, config, records, ctx.on_progress)
  try:
    summaries = train_seeds(ctx, pending, start, states, records)
  except GroupDiverged as e:
    summaries = _finish_diverged(ctx, config, records, e)
  except (KeyboardInterrupt, SystemExit):
    raise
  except Exception as e:  # noqa: BLE001 - recorded, reported, not averaged
    msg = f"{type(e).__name__}: {e}"
    results = []
    for seed in pending:
      records[seed].mark_failed(msg + "\n" + traceback.format_exc(limit=5))
      results.append(RunResult(label, task, seed, "failed", records[seed].path, error=msg))
    ctx.on_progress(Progress("failed", label, task, tuple(pending), message=msg))
    return results
  return [
    RunResult(label, task, seed, _final_status(records[seed]), records[seed].path, summaries[seed])
    for seed in pending
  ]


def _final_status(record: store.RunRecord) -> str:
  """'diverged' or 'complete': how a trained run ended."""
  status = record.status or {}
  return "diverged" if status.get("status") == "diverged" else "complete"


def _finish_diverged(
  ctx: UnitContext, config: RunConfig, records: dict, stop: GroupDiverged
) -> dict[int, dict]:
  """Evaluates and records the runs of a seed group whose every seed
  diverged (training stopped at `stop.iteration`); their summaries, per seed.

  Each run's final parameters are still evaluated where possible; an
  evaluation that fails leaves the score null with the error beside it.
  The summary's env_steps is the run's budget, as for complete runs (the
  status holds the steps reached); ``train_wall_s`` is null (not known here).
  """
  cfg, label, task = config.train, config.rule.name, config.task
  steps, summaries, snap = stop.iteration * cfg.steps_per_iteration, {}, stop.snapshot
  for j, seed in enumerate(records):
    rows = records[seed].read_metrics()
    try:
      summary = run_summary(ctx, seed, snap.params_of(j), rows, float("nan"), snap.seeds_in_program)
    except Exception as e:  # noqa: BLE001 - NaN parameters may break an evaluation
      summary = {"suite": ctx.suite.name, "task": task, "rule": ctx.rule.label, "seed": seed}
      summary.update(protocol=config.protocol.name, env_steps=config.env_steps, score=None)
      summary.update(normalized_score=None, eval_error=repr(e))
    records[seed].mark_complete(summary, env_steps=steps)
    summaries[seed] = summary
  ctx.on_progress(Progress("done", label, task, tuple(records), steps, config.env_steps))
  return summaries


def train_unit_runs(
  spec: SweepSpec, suite, config: RunConfig, rule, seeds, on_progress: Callable[[Progress], None]
) -> list[RunResult]:
  """Trains `seeds` of one (rule, task) under `config`; one result per seed."""
  env, rule_obj, agent, optimizer = build_parts(
    suite, config.task, rule, config.settings, config.train
  )
  trainer = make_trainer(env, agent, rule_obj, optimizer, config.train, config.protocol)
  if not env.reproducible:
    # e.g. NetHackChallenge-v0 refuses seeding: the same seed sees other games.
    config = dataclasses.replace(config, episodes_reproducible=False)
  ctx = UnitContext(
    trainer, rule, suite, config.task, config.protocol, config.train, spec, on_progress
  )
  with ExitStack() as stack:
    results, records = _open_records(spec, config, seeds, stack, on_progress)
    if not records:
      return results
    try:
      results += _train_records(ctx, config, records)
    finally:
      trainer.close()
  return results
