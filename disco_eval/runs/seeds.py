"""Training the seeds of a run group together, chunk by chunk, into their records."""

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp

from disco_eval.runs import divergence, stop
from disco_eval.runs.final import run_summary
from disco_eval.runs.spec import Progress
from disco_eval.store.policy import save_policy


def _take(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


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


def _initial_state(trainer, seeds, states):
  """The seeds' states (fresh where `states` has None), stacked on a leading
  axis for compiled trainers, a list for host trainers (whose replay buffers
  are large: no stacked copies)."""
  # Each seed starts from its own init (independent of the other seeds).
  fresh = [states[s] if states[s] is not None else trainer.init(s) for s in seeds]
  stacked = trainer.stacks_seeds
  return (_stack(fresh) if stacked else fresh), stacked


def _save_all(records, seeds, state, stacked, it: int, spi: int) -> None:
  """Checkpoints every seed of `state` at iteration `it`."""
  for j, s in enumerate(seeds):
    records[s].save_checkpoint(
      _take(state, j) if stacked else state[j], it * spi, {"iteration": it}
    )


def _stop(records, seeds, state, stacked, it: int, spi: int, saved: int) -> None:
  """At a requested stop: checkpoints the seeds (unless done at `it` already),
  records them interrupted and raises stop.Interrupted."""
  jax.block_until_ready(state)
  if saved != it:
    _save_all(records, seeds, state, stacked, it, spi)
  for s in seeds:
    records[s].mark_interrupted(it * spi)
  stop.check(it * spi)


@dataclasses.dataclass
class _Done:
  """A chunk of `count` iterations from `it`, dispatched at `t`, whose records
  are not written yet: its metrics `m` and divergence `guard` (see
  divergence.Guard), device values that may still be computing."""

  m: Any
  guard: Any
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
    divergence.check_guarded(self.records, self.seeds, done.guard, m, it, count, spi)
    if then is not None:
      then()
    for s in self.seeds:
      self.records[s].mark_running((it + count) * spi)
    seconds, self.last = time.time() - max(done.t, self.last), time.time()
    event = _chunk_event(
      self.rule, self.task, self.seeds, m, count, it + count, spi, self.total, seconds
    )
    self.on_progress(event)


def _train_chunks(
  trainer, rule, task, seeds, start, state, stacked, records, cfg, spec, on_progress
):
  """Runs the chunks from iteration `start` to the end; returns the state.

  Checkpoints every `spec.checkpoint_every` chunks and every
  `spec.checkpoint_minutes` of wall-clock time; a stop requested by a signal
  (see runs.stop) is honoured between chunks and before the final evaluation
  (see _stop). A trainer that ``dispatches_ahead`` (compiled chunks that run
  asynchronously) gets the next chunk dispatched before the previous chunk's
  records are written, so the device does not wait for the host's I/O; every
  record of a chunk is written before any checkpoint after it (a resume never
  misses rows) and the computation is the same either way.
  """
  spi, total = cfg.steps_per_iteration, cfg.iterations * cfg.steps_per_iteration
  ahead = bool(getattr(trainer, "dispatches_ahead", False))
  chunk_records = _Chunks(rule, task, seeds, records, spi, total, on_progress)
  it, chunks, saved, saved_t, pending = start, 0, start, time.monotonic(), None
  while it < cfg.iterations:
    if stop.requested() is not None:
      chunk_records.write(pending)
      _stop(records, seeds, state, stacked, it, spi, saved)
    count = min(cfg.chunk, cfg.iterations - it)
    tc = time.time()
    state, m = trainer.run_chunk_group(state, rule.params, it, count)
    done = _Done(m, divergence.guard(state, stacked, ahead), it, count, tc)
    chunk_records.write(pending)  # the previous chunk's, while this one runs
    pending = done
    it += count
    chunks += 1
    due = time.monotonic() - saved_t >= spec.checkpoint_minutes * 60
    if (chunks % spec.checkpoint_every == 0 or due) and it < cfg.iterations:
      save = lambda at=it, s=state: _save_all(records, seeds, s, stacked, at, spi)  # noqa: E731
      pending = chunk_records.write(pending, then=save)
      saved, saved_t = it, time.monotonic()
    if not ahead:
      pending = chunk_records.write(pending)
  pending = chunk_records.write(pending)
  if saved != it:  # a kill in the final evaluation resumes here, not from the start
    jax.block_until_ready(state)
    _save_all(records, seeds, state, stacked, it, spi)
    saved = it
  if stop.requested() is not None:  # before the final evaluation, too
    _stop(records, seeds, state, stacked, it, spi, saved)
  return state


def train_seeds(
  trainer, rule, task, seeds, start, states, records, cfg, protocol, suite, spec, on_progress
) -> dict[int, dict]:
  """Trains `seeds` (all at iteration `start`) together, chunk by chunk;
  marks each run complete with its summary, returned per seed."""
  spi = cfg.steps_per_iteration
  total = cfg.iterations * spi
  state, stacked = _initial_state(trainer, seeds, states)
  del states
  for s in seeds:
    records[s].mark_running(start * spi)
  on_progress(Progress("start", rule.label, task, tuple(seeds), start * spi, total))
  t0 = time.time()
  state = _train_chunks(
    trainer, rule, task, seeds, start, state, stacked, records, cfg, spec, on_progress
  )
  wall = time.time() - t0
  summaries = {}
  for j, s in enumerate(seeds):
    params = _take(state.params, j) if stacked else state[j].params
    summary = run_summary(
      trainer,
      suite,
      task,
      protocol,
      rule,
      s,
      params,
      records[s].read_metrics(),
      total,
      wall,
      len(seeds) if trainer.vmaps_seeds else 1,
    )
    save_policy(records[s].path, params)  # for `evaluate` and `render`, before the summary
    records[s].mark_complete(summary, env_steps=total)
    summaries[s] = summary
  on_progress(Progress("done", rule.label, task, tuple(seeds), total, total))
  return summaries
