"""What a run's records cost to write: checkpoints and metrics rows.

* :func:`checkpoint_bench`: seconds to checkpoint a state of `gb` GB (one
  large leaf, as a replay buffer, and a few small ones) with
  :func:`disco_eval.store.training_checkpoint.save`, against a plain
  ``write`` of the same bytes to a file (without and with one fsync), the
  sha256 of those bytes alone, and the previous way (the whole npz built in
  memory, hashed, then written), re-enacted here for comparison.
* :func:`metrics_bench`: seconds to add one chunk of rows to a metrics.csv
  that already holds `rows` rows: appended (as the record does now) and
  rewritten whole (as it did before).

Both write under `folder` (use the disk the results go to) and delete what
they wrote. Times are medians of `repeats` (wall seconds; the disk's cache
is not dropped, so the fsync is what reaches the disk).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from disco_eval.store import RunRecord, atomic, training_checkpoint
from disco_eval.store import metrics as metrics_file

_PIECE = 16 << 20


def _median(fn: Callable[[], Any], repeats: int, reset: Callable[[], Any] = lambda: None) -> float:
  times = []
  for _ in range(repeats):
    reset()
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(statistics.median(times))


def synthetic_state(gb: float) -> dict[str, np.ndarray]:
  """A state of about `gb` GB: one uint8 leaf (a replay buffer of frames)
  and small float32 leaves (parameters, optimiser moments)."""
  rng = np.random.default_rng(0)
  small = {f"param_{i}": rng.standard_normal(250_000).astype(np.float32) for i in range(4)}
  big = int(gb * 1e9) - sum(x.nbytes for x in small.values())
  return {"buffer": rng.integers(0, 256, big, dtype=np.uint8), **small}


def _plain_write(path: Path, arrays, sync: bool) -> None:
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
  try:
    for a in arrays:
      view = memoryview(a).cast("B")
      for i in range(0, len(view), _PIECE):
        piece = view[i : i + _PIECE]
        while piece:
          piece = piece[os.write(fd, piece) :]
    if sync:
      os.fsync(fd)
  finally:
    os.close(fd)


def _hash_only(arrays) -> str:
  sha = hashlib.sha256()
  for a in arrays:
    view = memoryview(a).cast("B")
    for i in range(0, len(view), _PIECE):
      sha.update(view[i : i + _PIECE])
  return sha.hexdigest()


def _in_memory_npz(path: Path, state: dict) -> str:
  """The previous checkpoint write: np.savez into memory, hash, write_atomic."""
  buffer = io.BytesIO()
  np.savez(buffer, **state)
  data = buffer.getvalue()
  sha = hashlib.sha256(data).hexdigest()
  atomic.write_atomic(path, data)
  return sha


def checkpoint_bench(folder: Path, gb: float = 1.5, repeats: int = 3) -> dict[str, Any]:
  """Checkpoint times of a `gb` GB state against plain writes (see module)."""
  state = synthetic_state(gb)
  arrays = list(state.values())
  nbytes = sum(a.nbytes for a in arrays)
  work = Path(tempfile.mkdtemp(prefix="disco-io-", dir=folder))
  run = work / "run"
  run.mkdir()
  try:
    plain = _median(lambda: _plain_write(work / "plain.bin", arrays, False), repeats)
    plain_sync = _median(lambda: _plain_write(work / "plain.bin", arrays, True), repeats)
    (work / "plain.bin").unlink()
    sha = _median(lambda: _hash_only(arrays), repeats)
    steps = iter(range(1, 10 * repeats + 1))
    streamed = _median(lambda: training_checkpoint.save(run, state, next(steps), keep=1), repeats)
    old = _median(lambda: _in_memory_npz(work / "old.npz", state), repeats)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  return {
    "state_bytes": int(nbytes),
    "plain_write_s": plain,
    "plain_write_fsync_s": plain_sync,
    "sha256_only_s": sha,
    "checkpoint_s": streamed,
    "in_memory_npz_s": old,
    "checkpoint_gb_per_s": nbytes / streamed / 1e9,
    "checkpoint_over_plain_fsync": streamed / plain_sync,
  }


def _row(i: int) -> dict:
  return {
    "iteration": i,
    "env_steps": (i + 1) * 1280,
    "episodes": 10,
    "avg_return": 0.1 * (i % 7) - 0.3,
    "learner_steps": 1,
    "loss": 1.0 / (i + 1),
  }


def metrics_bench(folder: Path, rows: int = 200_000, chunk: int = 50, repeats: int = 5) -> dict:
  """Seconds to add `chunk` rows to a metrics.csv of `rows` rows: appended
  vs rewritten whole (the previous way)."""
  work = Path(tempfile.mkdtemp(prefix="disco-io-", dir=folder))
  try:
    record = RunRecord(work / "run")
    record.path.mkdir()
    header = list(_row(0))
    table = [[metrics_file.format_cell(v) for v in _row(i).values()] for i in range(rows)]
    path = record.path / "metrics.csv"
    new = [_row(rows + k) for k in range(chunk)]
    base = lambda: metrics_file.write_table(path, header, table)  # noqa: E731

    def rewrite() -> None:
      head, old = metrics_file.read_table(path)
      old += [[metrics_file.format_cell(v) for v in r.values()] for r in new]
      metrics_file.write_table(path, head, old)

    appended = _median(lambda: record.append_metrics(new), repeats, base)
    rewritten = _median(rewrite, repeats, base)
    size = path.stat().st_size
  finally:
    shutil.rmtree(work, ignore_errors=True)
  return {
    "rows": rows,
    "chunk_rows": chunk,
    "file_bytes": int(size),
    "append_s": appended,
    "rewrite_s": rewritten,
  }


def level_table_bench(levels: int) -> dict[str, Any]:
  """Lower and compile time, program text size and peak host memory growth
  of a small Sokoban loop's chunk program with a synthetic table of `levels`
  random levels (int8 [levels, 10, 10])."""
  import resource

  import jax

  from disco_eval.agents.networks import Agent
  from disco_eval.config import resolve, suites
  from disco_eval.envs.sokoban import Sokoban
  from disco_eval.rules import weights
  from disco_eval.rules.registry import build_rule
  from disco_eval.runs.plan import rule_identity
  from disco_eval.train.loop import Trainer
  from disco_eval.train.optim import make_optimizer

  small = {"num_envs": 8, "chunk": 2, "buffer_capacity": 4}
  small.update(min_buffer=1, sample_entries=1)
  suite, rule = suites.load_suite("sokoban"), weights.resolve_rule("actor_critic")
  overrides = tuple((f"train.{k}", str(v)) for k, v in small.items())
  run = resolve.resolve(
    suite, "boxoban-unfiltered", rule_identity(rule), rule.manifest, overrides=overrides
  )
  env = Sokoban(np.random.default_rng(0).integers(0, 7, (levels, 10, 10), dtype=np.int8))
  rule_obj = build_rule(rule.manifest.kind, run.settings, rule.label)
  agent = Agent(run.settings["agent"], rule_obj.output_spec(4), 4, env.observation_shape)
  trainer = Trainer(env, agent, rule_obj, make_optimizer(run.settings["optimizer"]), run.train)
  state = jax.eval_shape(lambda: trainer.init(0))
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  t0 = time.perf_counter()
  lowered = trainer.lowered_chunk(state, rule.params)
  t1 = time.perf_counter()
  text = lowered.as_text()
  analysis = lowered.compile().memory_analysis()
  t2 = time.perf_counter()
  return {
    "levels": levels,
    "lower_s": t1 - t0,
    "compile_s": t2 - t1,
    "program_text_bytes": len(text),
    "argument_bytes": int(analysis.argument_size_in_bytes),
    "peak_rss_growth_bytes": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) * 1024,
  }
