"""I/O off the hot path: streamed checkpoints, appended metrics, the next
chunk dispatched before the previous chunk's records, and Sokoban's level
table passed to the compiled program as data, not baked in as a constant."""

import dataclasses
import hashlib
import io
import types
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from disco_eval import store
from disco_eval.store import atomic, damage, training_checkpoint
from disco_eval.store import metrics as metrics_file


def _record(tmp_path: Path) -> store.RunRecord:
  record = store.RunRecord(tmp_path / "run")
  record.path.mkdir(parents=True)
  return record


# --- checkpoints ----------------------------------------------------------------


def test_checkpoint_is_streamed_in_pieces_and_hashed_as_written(tmp_path, monkeypatch):
  record = _record(tmp_path)
  big = np.arange(10 << 20, dtype=np.float32)  # 40 MiB: several pieces
  text = np.array(["ab", "cde"])
  state = {"big": big, "w": jnp.ones((3,), jnp.bfloat16), "n": np.int64(7), "s": text}
  writes = []
  real_write = atomic._FdWriter.write

  def spy(self, data):
    writes.append(len(memoryview(data).cast("B")))
    return real_write(self, data)

  monkeypatch.setattr(atomic._FdWriter, "write", spy)
  monkeypatch.setattr(np, "savez", None)  # the old in-memory path is gone
  monkeypatch.setattr(io, "BytesIO", None)
  record.save_checkpoint(state, env_steps=5)
  monkeypatch.undo()
  assert max(writes) <= (16 << 20) + 4096 and sum(writes) > big.nbytes
  (entry,) = training_checkpoint.entries(record.path)
  data = (record.path / "checkpoint" / entry["npz"]).read_bytes()
  assert hashlib.sha256(data).hexdigest() == entry["sha256"]
  with np.load(record.path / "checkpoint" / entry["npz"]) as npz:  # a plain npz
    assert np.array_equal(npz["leaf_00000"], big)
  template = {"big": np.zeros_like(big), "w": jnp.zeros((3,), jnp.bfloat16), "n": np.int64(0)}
  template["s"] = np.array(["", ""], "<U3")
  loaded, steps, _ = record.load_checkpoint(template)
  assert steps == 5 and np.array_equal(loaded["big"], big) and loaded["n"] == 7
  assert loaded["s"].tolist() == ["ab", "cde"]
  assert loaded["w"].dtype == ml_dtypes.bfloat16 and loaded["w"].tolist() == [1.0, 1.0, 1.0]


def test_checkpoint_written_by_the_in_memory_savez_still_loads(tmp_path):
  """Checkpoints of earlier versions (np.savez into memory, a seekable zip)."""
  record = _record(tmp_path)
  record.save_checkpoint({"w": np.zeros(4, np.float32)}, env_steps=1)
  (entry,) = training_checkpoint.entries(record.path)
  buffer = io.BytesIO()
  np.savez(buffer, leaf_00000=np.full(4, 2.5, np.float32))
  path = record.path / "checkpoint" / entry["npz"]
  path.write_bytes(buffer.getvalue())
  meta = atomic.read_json(record.path / "checkpoint" / "checkpoint.json")
  meta["checkpoints"][0]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
  atomic.write_json_atomic(record.path / "checkpoint" / "checkpoint.json", meta)
  loaded, _, _ = record.load_checkpoint({"w": np.zeros(4, np.float32)})
  assert loaded["w"].tolist() == [2.5] * 4


def test_an_interrupted_checkpoint_write_leaves_the_old_one(tmp_path, monkeypatch):
  record = _record(tmp_path)
  record.save_checkpoint({"w": np.ones(3)}, env_steps=10)

  def fail(*args, **kwargs):
    raise KeyboardInterrupt  # as if stopped in the middle of the arrays

  monkeypatch.setattr(training_checkpoint, "_write_npy", fail)
  with pytest.raises(KeyboardInterrupt):
    record.save_checkpoint({"w": np.full(3, 2.0)}, env_steps=20)
  monkeypatch.undo()
  assert record.checkpoint_steps() == [10]
  assert sorted(p.name for p in (record.path / "checkpoint").iterdir())[0] == "checkpoint.json"
  assert len(list((record.path / "checkpoint").iterdir())) == 2  # no temp file left


# --- metrics ------------------------------------------------------------------


def _rows(start: int, n: int) -> list[dict]:
  return [{"iteration": i, "env_steps": 10 * (i + 1), "loss": 0.5 * i} for i in range(start, n)]


def test_metrics_are_appended_not_rewritten(tmp_path, monkeypatch):
  record = _record(tmp_path)
  record.append_metrics(_rows(0, 3))  # creates the file whole, header first
  rewrites = []
  monkeypatch.setattr(metrics_file, "write_atomic", lambda *a: rewrites.append(a))
  monkeypatch.setattr(metrics_file, "read_table", None)  # appending reads no table
  for k in range(3, 9, 2):
    record.append_metrics(_rows(k, k + 2))
  monkeypatch.undo()
  assert rewrites == []
  assert [r["iteration"] for r in record.read_metrics()] == list(range(9))
  text = (record.path / "metrics.csv").read_text()
  assert text.count("iteration") == 1 and text.endswith("\n")


def test_a_torn_last_metrics_line_is_ignored_then_cut(tmp_path):
  record = _record(tmp_path)
  record.append_metrics(_rows(0, 4))
  path = record.path / "metrics.csv"
  whole = path.read_bytes()
  path.write_bytes(whole + b"4,5")  # a kill in the middle of an append
  assert len(record.read_metrics()) == 4
  assert damage.metrics_problem(path) is None and metrics_file.torn(path)
  record.append_metrics(_rows(4, 6))
  assert [r["iteration"] for r in record.read_metrics()] == list(range(6))
  assert not metrics_file.torn(path)
  path.write_bytes(path.read_bytes() + b"6,7")
  record.truncate_metrics(30)  # a resume from the checkpoint at 30 env steps
  assert path.read_bytes() == whole[: whole.index(b"3,40")] and not metrics_file.torn(path)


# --- the next chunk dispatched before the previous chunk's records --------------


class _State(NamedTuple):
  params: Any


class _Log:
  """Records what the training loop does, in order."""

  def __init__(self):
    self.events = []


class _FakeTrainer:
  dispatches_ahead = True
  vmaps_seeds = True

  def __init__(self, log):
    self.log = log

  def init(self, seed):
    return _State({"w": jnp.zeros((2,))})

  def run_vmapped(self, state, rule_params, start, count):
    self.log.events.append(("dispatch", start))
    m = types.SimpleNamespace(
      return_sum=np.zeros((1, count)),
      episodes=np.ones((1, count), np.int32),
      learned=np.ones((1, count), np.int32),
      loss=np.zeros((1, count)),
      extra={},
    )
    return type(state)(params=jax.tree.map(lambda x: x + 1, state.params)), m


class _FakeRecord:
  divergence = None

  def __init__(self, log):
    self.log = log

  def append_metrics(self, rows):
    self.log.events.append(("metrics", rows[0]["iteration"]))

  def save_checkpoint(self, state, env_steps, extra):
    self.log.events.append(("checkpoint", extra["iteration"]))

  def mark_running(self, env_steps):
    pass


def test_next_chunk_is_dispatched_before_the_previous_records(monkeypatch):
  from disco_eval.runs import seeds as seeds_mod
  from disco_eval.runs.context import UnitContext
  from disco_eval.train.seed_group import SeedGroup

  log = _Log()
  cfg = types.SimpleNamespace(steps_per_iteration=2, iterations=8, chunk=2)
  spec = types.SimpleNamespace(checkpoint_every=3, checkpoint_minutes=1e9)
  rule = types.SimpleNamespace(params=None, label="r")
  trainer = _FakeTrainer(log)
  ctx = UnitContext(trainer, rule, None, "t", None, cfg, spec, lambda event: None)
  seeds_mod._train_chunks(ctx, SeedGroup(trainer, [0]), 0, {0: _FakeRecord(log)})
  assert log.events == [
    ("dispatch", 0),
    ("dispatch", 2),
    ("metrics", 0),
    ("dispatch", 4),
    ("metrics", 2),
    ("metrics", 4),  # every row before the checkpoint after it
    ("checkpoint", 6),
    ("dispatch", 6),
    ("metrics", 6),
    ("checkpoint", 8),  # before the final evaluation: a kill there resumes here
  ]


def test_checkpoint_chunk_interval_is_off_on_accelerators_unless_given():
  from disco_eval import runtime

  assert runtime.checkpoint_every(None, "cpu") == runtime.CPU_CHECKPOINT_EVERY == 10
  for backend in ("gpu", "cuda", "rocm", "tpu"):
    assert runtime.checkpoint_every(None, backend) is None  # by the clock only
    assert runtime.checkpoint_every(3, backend) == 3  # --checkpoint-every N still honoured
  assert runtime.checkpoint_every(3, "cpu") == 3


def test_accelerator_checkpoints_only_at_the_end_without_the_clock(monkeypatch):
  """On a (faked) GPU backend with the default interval, no chunk checkpoints
  until the clock says so: only the one before the final evaluation."""
  from disco_eval.runs import seeds as seeds_mod
  from disco_eval.runs.context import UnitContext
  from disco_eval.train.seed_group import SeedGroup

  monkeypatch.setattr(seeds_mod.jax, "default_backend", lambda: "gpu")
  log = _Log()
  cfg = types.SimpleNamespace(steps_per_iteration=2, iterations=8, chunk=1)
  spec = types.SimpleNamespace(checkpoint_every=None, checkpoint_minutes=1e9)
  rule = types.SimpleNamespace(params=None, label="r")
  trainer = _FakeTrainer(log)
  ctx = UnitContext(trainer, rule, None, "t", None, cfg, spec, lambda event: None)
  seeds_mod._train_chunks(ctx, SeedGroup(trainer, [0]), 0, {0: _FakeRecord(log)})
  assert [e for e in log.events if e[0] == "checkpoint"] == [("checkpoint", 8)]


# --- Sokoban's levels: data of the program, not a constant ----------------------


def test_sokoban_level_table_is_an_argument_of_the_chunk_program():
  from disco_eval.agents.networks import Agent
  from disco_eval.config import resolve, suites
  from disco_eval.envs.sokoban import Sokoban
  from disco_eval.rules import weights
  from disco_eval.rules.registry import build_rule
  from disco_eval.runs.plan import rule_identity
  from disco_eval.train.loop import Trainer
  from disco_eval.train.optim import make_optimizer

  suite = suites.load_suite("sokoban")
  rule = weights.resolve_rule("actor_critic")
  small = {"num_envs": 2, "rollout_len": 3, "chunk": 1, "buffer_capacity": 2}
  small.update(min_buffer=1, sample_entries=1)
  run = resolve.resolve(
    suite,
    "boxoban-unfiltered",
    rule_identity(rule),
    rule.manifest,
    overrides=tuple((f"train.{k}", str(v)) for k, v in small.items())
    + (("agent.conv_channels", "[4]"), ("agent.conv_hidden", "8")),
  )
  n = 20_000  # a 2 MB table
  levels = np.random.default_rng(0).integers(0, 7, (n, 10, 10), dtype=np.int8)
  env = Sokoban(levels)
  rule_obj = build_rule(rule.manifest.kind, run.settings, rule.label)
  agent = Agent(run.settings["agent"], rule_obj.output_spec(4), 4, env.observation_shape)
  trainer = Trainer(env, agent, rule_obj, make_optimizer(run.settings["optimizer"]), run.train)
  state = jax.eval_shape(lambda: trainer.init(0))
  text = trainer.lowered_chunk(state, rule.params).as_text()
  assert f"tensor<{n}x10x10xi8>" in text  # the table's type: a parameter
  assert len(text) < levels.nbytes  # its bytes are not in the program
  assert env.levels is env.device_data()  # put back after tracing


@pytest.mark.slow
def test_dispatching_ahead_computes_the_same_records(tmp_path, monkeypatch):
  """A tiny Catch sweep with chunks dispatched ahead (forced here: on the CPU
  the trainer does not) writes the records of one without."""
  from disco_eval.runs import SweepSpec, run_sweep
  from disco_eval.train.loop import Trainer

  tiny = (("train.min_buffer", "2"), ("train.sample_entries", "2"), ("train.chunk", "2"))
  tiny += (("agent.torso_hidden", "[16]"), ("protocol.eval_episodes", "20"))

  def sweep(out: Path, ahead: bool) -> Path:
    monkeypatch.setattr(Trainer, "dispatches_ahead", ahead)
    spec = SweepSpec("catch", ("actor_critic",), (0,), steps=58 * 8, out=out, overrides=tiny)
    spec = dataclasses.replace(spec, checkpoint_every=3)
    (result,) = run_sweep(spec)
    assert result.status == "complete"
    return result.path

  a, b = sweep(tmp_path / "a", True), sweep(tmp_path / "b", False)
  assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()
  sa, sb = (store.RunRecord(p).summary for p in (a, b))
  assert sa["score"] == sb["score"]
  assert store.RunRecord(a).checkpoint_steps() == store.RunRecord(b).checkpoint_steps()
