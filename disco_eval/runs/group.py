"""A run group: the seeds of one (rule, task) trained together, with their records.

The seeds of a group share one compiled program: their training states are
stacked and, on accelerators, the loop is vmapped over them (on the CPU the
seeds take turns, chunk by chunk, which is faster there). Every run writes its
record folder (``disco_eval.store``): config, status, metrics over env steps,
periodic checkpoints of the whole training state, and the final summary.
Complete runs are skipped; interrupted runs resume from their checkpoint; a
run locked by another process is left alone and reported "busy".
"""

import dataclasses
import traceback
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Callable

import jax

from disco_eval import store
from disco_eval.config.run_config import RunConfig
from disco_eval.runs.parts import build_parts
from disco_eval.runs.seeds import train_seeds
from disco_eval.runs.spec import Progress, RunResult, SweepSpec
from disco_eval.train.trainers import make_trainer


def _now() -> str:
  return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _open_records(
  spec: SweepSpec, config: RunConfig, seeds, stack: ExitStack, on_progress
) -> tuple[list[RunResult], dict[int, store.RunRecord]]:
  """The records of `seeds`, locked: (results of the seeds not to train,
  records of those to train). Complete runs are skipped, busy ones left."""
  label, task, total = config.rule.name, config.task, config.env_steps
  base = config.to_json()
  results, records = [], {}
  for seed in seeds:
    doc = {**base, "seed": seed, "versions": store.versions(), "created": _now()}
    rec = store.RunRecord.open(spec.out, config.suite, task, label, seed, doc)
    try:
      stack.enter_context(rec.lock())
    except store.RunBusy as e:  # another sweep writes it: leave it alone
      results.append(RunResult(label, task, seed, "busy", rec.path, error=str(e)))
      on_progress(Progress("busy", label, task, (seed,), message=str(e)))
      continue
    if rec.is_complete():
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


def _train_records(
  trainer, rule, config: RunConfig, suite, spec, records, on_progress
) -> list[RunResult]:
  """Trains the pending seeds; a failure is recorded in each of their runs."""
  label, task, pending = config.rule.name, config.task, list(records)
  start, states = _resume(trainer, config, records, on_progress)
  try:
    summaries = train_seeds(
      trainer,
      rule,
      task,
      pending,
      start,
      states,
      records,
      config.train,
      config.protocol,
      suite,
      spec,
      on_progress,
    )
    return [
      RunResult(label, task, seed, "complete", records[seed].path, summaries[seed])
      for seed in pending
    ]
  except (KeyboardInterrupt, SystemExit):
    raise
  except Exception as e:  # noqa: BLE001 - recorded, reported, not averaged
    msg = f"{type(e).__name__}: {e}"
    results = []
    for seed in pending:
      records[seed].mark_failed(msg + "\n" + traceback.format_exc(limit=5))
      results.append(RunResult(label, task, seed, "failed", records[seed].path, error=msg))
    on_progress(Progress("failed", label, task, tuple(pending), message=msg))
    return results


def run_group(
  spec: SweepSpec, suite, config: RunConfig, rule, seeds, on_progress: Callable[[Progress], None]
) -> list[RunResult]:
  """Trains `seeds` of one (rule, task) under `config`; one result per seed."""
  env, rule_obj, agent, optimizer = build_parts(suite, config.task, rule, config.settings)
  trainer = make_trainer(env, agent, rule_obj, optimizer, config.train, config.protocol)
  if not env.reproducible:
    # e.g. NetHackChallenge-v0 refuses seeding: the same seed sees other games.
    config = dataclasses.replace(config, episodes_reproducible=False)
  with ExitStack() as stack:
    results, records = _open_records(spec, config, seeds, stack, on_progress)
    if not records:
      return results
    try:
      results += _train_records(trainer, rule, config, suite, spec, records, on_progress)
    finally:
      trainer.close()
  return results
