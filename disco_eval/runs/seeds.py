"""Training the seeds of one unit together (a ``train.seed_group.SeedGroup``),
chunk by chunk, into their records."""

import dataclasses
import functools
import time
from typing import Any

import jax

from disco_eval import runtime
from disco_eval.runs import divergence, stop
from disco_eval.runs.context import UnitContext
from disco_eval.runs.final import run_summary
from disco_eval.runs.spec import Progress
from disco_eval.store.policy import save_policy
from disco_eval.train.seed_group import SeedGroup, Snapshot


def metrics_rows(m, j: int, it: int, count: int, spi: int) -> list[dict]:
  """The metrics rows of seed `j` for iterations ``it .. it + count - 1``
  (metrics `m` of one chunk: arrays [seeds, count])."""
  extra = m.extra  # host tasks' episode columns (sums); {} for pure-JAX tasks
  rows = []
  for k in range(count):
    n = int(m.episodes[j, k])
    rows.append(
      {
        "iteration": it + k,
        "env_steps": (it + k + 1) * spi,
        "episodes": n,
        "avg_return": float(m.return_sum[j, k]) / n if n else float("nan"),
        "learner_steps": int(m.learned[j, k]),
        "loss": float(m.loss[j, k]) if m.learned[j, k] else float("nan"),
        **{c: float(v[j, k]) for c, v in extra.items()},
      }
    )
  return rows


def _chunk_event(
  rule, task, seeds, m, count: int, it: int, spi: int, total: int, seconds: float
) -> Progress:
  """The "chunk" event after a chunk of `count` iterations ending at `it`."""
  sums, eps = m.return_sum[:, :count].sum(1), m.episodes[:, :count].sum(1)
  per_seed = {s: float(sums[j] / eps[j]) if eps[j] else float("nan") for j, s in enumerate(seeds)}
  return Progress(
    "chunk",
    rule.label,
    task,
    tuple(seeds),
    it * spi,
    total,
    steps_per_s=count * spi * len(seeds) / seconds,
    latest_return=float(sums.sum() / max(1, eps.sum())),
    latest_returns=per_seed,
  )


def _save_all(records, group: SeedGroup, it: int, spi: int) -> None:
  """Checkpoints every seed of `group` at iteration `it`."""
  for j, s in enumerate(group.seeds):
    records[s].save_checkpoint(group.state_of(j), it * spi, {"iteration": it})


def _stop(records, group: SeedGroup, it: int, spi: int, saved: int) -> None:
  """At a requested stop: checkpoints the seeds (unless done at `it` already),
  records them interrupted and raises stop.Interrupted."""
  group.block()
  if saved != it:
    _save_all(records, group, it, spi)
  for s in group.seeds:
    records[s].mark_interrupted(it * spi)
  stop.check(it * spi)


@dataclasses.dataclass
class _Done:
  """A chunk of `count` iterations from `it`, dispatched at `t`, whose records
  are not written yet: its metrics `m` and the parameters at its end
  (`snapshot`, for the divergence check), device values that may still be
  computing."""

  m: Any
  snapshot: Snapshot
  it: int
  count: int
  t: float


class _Chunks:
  """Writes the records of trained chunks: metrics rows, divergence,
  status and the progress event (see _train_chunks)."""

  def __init__(self, rule, task, seeds, records, spi: int, total: int, on_progress):
    self.rule, self.task, self.seeds, self.records = rule, task, seeds, records
    self.spi, self.total, self.on_progress = spi, total, on_progress
    self.last = time.time()  # when the previous chunk's records were written

  def write(self, done: _Done | None, then=None) -> None:
    """The records of chunk `done` (nothing if None); waits for its metrics
    only. Raises divergence.GroupDiverged when every seed has diverged.
    `then` (e.g. a checkpoint) is called after the metrics are written and
    before the status and the progress event (at once if `done` is None)."""
    if done is None:
      if then is not None:
        then()
      return
    m, it, count, spi = jax.device_get(done.m), done.it, done.count, self.spi
    for j, s in enumerate(self.seeds):
      self.records[s].append_metrics(metrics_rows(m, j, it, count, spi))
    divergence.check_chunk(self.records, self.seeds, done.snapshot, m, it, count, spi)
    if then is not None:
      then()
    for s in self.seeds:
      self.records[s].mark_running((it + count) * spi)
    seconds, self.last = time.time() - max(done.t, self.last), time.time()
    event = _chunk_event(
      self.rule, self.task, self.seeds, m, count, it + count, spi, self.total, seconds
    )
    self.on_progress(event)


def _train_chunks(ctx: UnitContext, group: SeedGroup, start: int, records) -> None:
  """Runs the chunks of `group` from iteration `start` to the end.

  Checkpoints every `spec.checkpoint_every` chunks (by default 10 on the CPU,
  never on accelerators: runtime.checkpoint_every) and every
  `spec.checkpoint_minutes` of wall-clock time; a stop requested by a signal
  (see runs.stop) is honoured between chunks and before the final evaluation
  (see _stop). A group that dispatches ahead (``SeedGroup.ahead``: compiled
  chunks that run asynchronously) gets the next chunk dispatched before the
  previous chunk's records are written, so the device does not wait for the
  host's I/O; every record of a chunk is written before any checkpoint after
  it (a resume never misses rows) and the computation is the same either way.
  """
  cfg, spec, seeds = ctx.cfg, ctx.spec, list(group.seeds)
  spi, total = cfg.steps_per_iteration, ctx.env_steps
  every = runtime.checkpoint_every(spec.checkpoint_every, jax.default_backend())
  chunk_records = _Chunks(ctx.rule, ctx.task, seeds, records, spi, total, ctx.on_progress)
  it, chunks, saved, saved_t, pending = start, 0, start, time.monotonic(), None
  while it < cfg.iterations:
    if stop.requested() is not None:
      chunk_records.write(pending)
      _stop(records, group, it, spi, saved)
    count = min(cfg.chunk, cfg.iterations - it)
    tc = time.time()
    m = group.run_chunk(ctx.rule.params, it, count)
    done = _Done(m, group.snapshot(), it, count, tc)
    chunk_records.write(pending)  # the previous chunk's, while this one runs
    pending = done
    it += count
    chunks += 1
    due = time.monotonic() - saved_t >= spec.checkpoint_minutes * 60
    if ((every is not None and chunks % every == 0) or due) and it < cfg.iterations:
      save = functools.partial(_save_all, records, group, it, spi)
      pending = chunk_records.write(pending, then=save)
      saved, saved_t = it, time.monotonic()
    if not group.ahead:
      pending = chunk_records.write(pending)
  pending = chunk_records.write(pending)
  if saved != it:  # a kill in the final evaluation resumes here, not from the start
    group.block()
    _save_all(records, group, it, spi)
    saved = it
  if stop.requested() is not None:  # before the final evaluation, too
    _stop(records, group, it, spi, saved)


def train_seeds(ctx: UnitContext, seeds, start: int, states: dict, records) -> dict[int, dict]:
  """Trains `seeds` (all at iteration `start`; `states`: a seed's state to
  resume from, or None) together, chunk by chunk; marks each run complete
  with its summary, returned per seed."""
  spi, total = ctx.steps_per_iteration, ctx.env_steps
  group = SeedGroup(ctx.trainer, seeds, states)
  del states
  for s in seeds:
    records[s].mark_running(start * spi)
  ctx.on_progress(Progress("start", ctx.rule.label, ctx.task, tuple(seeds), start * spi, total))
  t0 = time.time()
  _train_chunks(ctx, group, start, records)
  wall = time.time() - t0
  summaries = {}
  for j, s in enumerate(group.seeds):
    rows = records[s].read_metrics()
    summary = run_summary(ctx, s, group.params_of(j), rows, wall, group.seeds_in_program)
    # For `evaluate`, `render` and `analyze`, before the summary.
    save_policy(records[s].path, group.params_of(j), group.state_of(j).rule_state)
    records[s].mark_complete(summary, env_steps=total)
    summaries[s] = summary
  ctx.on_progress(Progress("done", ctx.rule.label, ctx.task, tuple(seeds), total, total))
  return summaries
