"""Tests of disco_eval.store: run records on the real file system."""

from __future__ import annotations

import errno
import json
import math
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from disco_eval import store
from disco_eval.errors import UserError
from disco_eval.store import (
  RunRecord,
  atomic,
  layout,
  run_dir,
  scan_runs,
  training_checkpoint,
  write_atomic,
  write_json_atomic,
)

REPO = Path(__file__).resolve().parents[1]


def _config(**changes) -> dict:
  """A typical run config."""
  config = {
    "rule": "disco103",
    "rule_sha256": "ab" * 32,
    "suite": "minatar",
    "task": "breakout",
    "protocol": "standard",
    "seed": 0,
    "hyper": {"lr": 3e-4, "batch": 32, "gammas": [0.99, 0.997]},
    "versions": store.versions(),
    "created": "2026-01-01T00:00:00+00:00",
  }
  config.update(changes)
  return config


def _open(root: Path, seed: int = 0, **changes) -> RunRecord:
  return RunRecord.open(
    root, "minatar", "breakout", "disco103", seed, _config(seed=seed, **changes)
  )


def _temps(folder: Path) -> list[str]:
  return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
  """Start `python -c code args` with this checkout importable."""
  env = dict(
    os.environ,
    PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
  )
  return subprocess.Popen(
    [sys.executable, "-c", code, *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    **kwargs,
  )


def _wait_for_line(proc: subprocess.Popen, timeout: float = 30.0) -> str:
  """The next stdout line of `proc` (fails the test after `timeout`)."""
  ready, _, _ = select.select([proc.stdout], [], [], timeout)
  assert ready, "child process did not answer in time"
  line = proc.stdout.readline()
  assert line, f"child process ended early: {proc.stderr.read()}"
  return line.strip()


# --- paths and versions -------------------------------------------------------


def test_run_dir_layout(tmp_path):
  assert (
    run_dir(tmp_path, "procgen", "coinrun", "ppo", 3)
    == tmp_path / "procgen" / "coinrun" / "ppo" / "seed3"
  )
  assert run_dir(tmp_path, "s", "t", "r", np.int64(2)).name == "seed2"


@pytest.mark.parametrize(
  "suite,seed", [("a/b", 0), ("..", 0), ("", 0), ("x\ny", 0), ("ok", -1), ("ok", True), ("ok", 1.0)]
)
def test_run_dir_refuses_names_that_leave_the_root(tmp_path, suite, seed):
  with pytest.raises(UserError):
    run_dir(tmp_path, suite, "task", "rule", seed)


def test_versions_names_every_package():
  found = store.versions()
  always = {"python", "jax", "jaxlib", "flax", "optax", "numpy", "disco-eval"}
  env_packages = {"envpool", "gymnax", "craftax", "crafter", "nle"}  # when installed
  assert always <= set(found) <= always | env_packages
  assert found["numpy"] == np.__version__
  assert all(isinstance(v, str) and v for v in found.values())


def test_versions_marks_missing_packages(monkeypatch):
  real = layout.metadata.version

  def version(name):
    if name == "optax":
      raise layout.metadata.PackageNotFoundError(name)
    return real(name)

  monkeypatch.setattr(layout.metadata, "version", version)
  assert store.versions()["optax"] == "not installed"


# --- atomic writes ------------------------------------------------------------


def test_write_atomic_replaces_and_keeps_mode(tmp_path):
  target = tmp_path / "f.txt"
  write_atomic(target, b"one")
  assert target.read_bytes() == b"one"
  os.chmod(target, 0o640)
  write_atomic(target, bytearray(b"two"))
  assert target.read_bytes() == b"two"
  assert (target.stat().st_mode & 0o777) == 0o640
  assert _temps(tmp_path) == []
  with pytest.raises(TypeError):
    write_atomic(target, "text")  # type: ignore[arg-type]


def test_write_atomic_disk_full_during_write(tmp_path, monkeypatch):
  target = tmp_path / "status.json"
  write_atomic(target, b"old content")
  real_write = os.write

  def full_disk_write(fd, data):
    if os.fstat(fd).st_size > 0:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_write(fd, bytes(data)[:5])  # half of it fits, then the disk is full

  monkeypatch.setattr(atomic.os, "write", full_disk_write)
  with pytest.raises(UserError, match="no space left") as caught:
    write_atomic(target, b"new content that does not fit")
  monkeypatch.undo()
  assert caught.value.__cause__.errno == errno.ENOSPC
  assert target.read_bytes() == b"old content"
  assert _temps(tmp_path) == []


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_write_atomic_failure_at_fsync_or_rename(tmp_path, monkeypatch, call):
  target = tmp_path / "config.json"
  write_json_atomic(target, {"a": 1})

  def fail(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(atomic.os, call, fail)
  with pytest.raises(UserError):
    write_json_atomic(target, {"a": 2})
  monkeypatch.undo()
  assert json.loads(target.read_text()) == {"a": 1}
  assert _temps(tmp_path) == []


def test_write_atomic_other_errors_propagate_and_clean_up(tmp_path, monkeypatch):
  target = tmp_path / "x"

  def fail(fd):
    raise OSError(errno.EIO, "I/O error")

  monkeypatch.setattr(atomic.os, "fsync", fail)
  with pytest.raises(OSError) as caught:
    write_atomic(target, b"data")
  monkeypatch.undo()
  assert caught.value.errno == errno.EIO
  assert not target.exists()
  assert _temps(tmp_path) == []


_JSON_WRITER = """
import json, sys
from pathlib import Path
from disco_eval.store import write_atomic
target = Path(sys.argv[1])
i = int(sys.argv[2])
while True:
  i += 1
  write_atomic(target, json.dumps({"i": i, "rows": [i] * 100_000}).encode())
  print(i, flush=True)
"""

_METRICS_WRITER = """
import sys
from pathlib import Path
from disco_eval.store import RunRecord
record = RunRecord(Path(sys.argv[1]))
i = len(record.read_metrics())
while True:
  record.append_metrics([{"env_steps": i + k, "ret": float(i + k) / 3} for k in range(50)])
  i += 50
  print(i, flush=True)
"""


# The kill tests draw their kill moments from this seed (another with
# DISCO_EVAL_KILL_SEED=N); every failure message names it and the moments.
KILL_SEED = int(os.environ.get("DISCO_EVAL_KILL_SEED", "21"))


def _kill_at_random(code: str, *args: str, rng: random.Random) -> float:
  """Run `code` until it has written once, then SIGKILL it at a random moment
  (drawn from `rng`); returns that moment (seconds after the first write)."""
  proc = _python(code, *args)
  delay = rng.uniform(0.0, 0.25)
  try:
    _wait_for_line(proc)
    time.sleep(delay)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  assert proc.returncode == -signal.SIGKILL, f"seed {KILL_SEED}: exited {proc.returncode}"
  return delay


def test_sigkill_during_write_atomic_leaves_old_or_new_file(tmp_path):
  rng = random.Random(KILL_SEED)
  target = tmp_path / "big.json"
  last, delays = 0, []
  for _ in range(4):
    delays.append(_kill_at_random(_JSON_WRITER, str(target), str(last), rng=rng))
    where = f"seed {KILL_SEED}, killed {delays} s after a first write"
    doc = json.loads(target.read_text())  # complete, parseable JSON
    assert doc["i"] > last, where
    assert doc["rows"] == [doc["i"]] * 100_000, where
    last = doc["i"]
  assert len(_temps(tmp_path)) <= 4, where  # at most one per kill, never the target


def test_sigkill_during_append_metrics_leaves_a_complete_table(tmp_path):
  rng = random.Random(KILL_SEED)
  record = _open(tmp_path)
  delays = []
  for _ in range(2):
    delays.append(_kill_at_random(_METRICS_WRITER, str(record.path), rng=rng))
    where = f"seed {KILL_SEED}, killed {delays} s after a first write"
    rows = record.read_metrics()
    assert rows and len(rows) % 50 == 0, where
    assert [r["env_steps"] for r in rows] == list(range(len(rows))), where
    assert all(r["ret"] == r["env_steps"] / 3 for r in rows), where
  with record.lock():  # removes the temp files of the killed writers
    assert _temps(record.path) == [], where


# --- config -------------------------------------------------------------------


def test_open_writes_config_and_accepts_the_same_config(tmp_path):
  record = _open(tmp_path)
  assert record.path == run_dir(tmp_path, "minatar", "breakout", "disco103", 0)
  text = (record.path / "config.json").read_text()
  assert text.startswith('{\n  "created"')  # sorted keys, indent 2
  assert record.config == {**_config(), "schema_version": 1}  # store.schema
  again = _open(tmp_path)
  assert again.config == {**_config(), "schema_version": 1}


def test_open_ignores_volatile_keys_and_refreshes_them_under_the_lock(tmp_path):
  _open(tmp_path)
  newer = {**store.versions(), "jax": "9.9.9"}
  record = _open(tmp_path, versions=newer, created="2030-01-01T00:00:00+00:00")
  assert record.config["versions"]["jax"] != "9.9.9"  # not rewritten before lock()
  with record.lock():
    pass
  stored = record.config
  assert stored["versions"]["jax"] == "9.9.9"
  assert stored["created"] == "2026-01-01T00:00:00+00:00"  # creation time kept


def test_open_refuses_a_different_config_naming_the_key(tmp_path):
  _open(tmp_path)
  with pytest.raises(UserError) as caught:
    _open(tmp_path, hyper={"lr": 1e-3, "batch": 32, "gammas": [0.99, 0.997]})
  message = str(caught.value)
  assert "\n" not in message
  assert "hyper.lr is 0.0003 there but 0.001 now" in message
  assert str(run_dir(tmp_path, "minatar", "breakout", "disco103", 0)) in message
  assert "--out DIR" in message
  with pytest.raises(UserError, match=r"protocol is \"standard\" there but absent now"):
    config = _config()
    del config["protocol"]
    RunRecord.open(tmp_path, "minatar", "breakout", "disco103", 0, config)
  with pytest.raises(UserError, match=r"hyper\.gammas\[1\] is 0\.997 there but 0\.9 now"):
    _open(tmp_path, hyper={"lr": 3e-4, "batch": 32, "gammas": [0.99, 0.9]})


def test_a_record_older_than_a_train_setting_matches_its_old_value(tmp_path):
  old = {**_config(), "train": {"num_envs": 2}}
  RunRecord.open(tmp_path, "catch", "catch", "disco103", 0, old)
  same = {**_config(), "train": {"num_envs": 2, "devices": 1, "learner_microbatches": 1}}
  RunRecord.open(tmp_path, "catch", "catch", "disco103", 0, same)
  with pytest.raises(UserError, match=r"train\.devices is 1 there but 2 now"):
    RunRecord.open(
      tmp_path,
      "catch",
      "catch",
      "disco103",
      0,
      {**_config(), "train": {"num_envs": 2, "devices": 2}},
    )


def test_open_refuses_a_corrupt_stored_config(tmp_path):
  record = _open(tmp_path)
  (record.path / "config.json").write_text("{not json")
  with pytest.raises(UserError, match="config.json is unreadable"):
    _open(tmp_path)


def test_json_is_strict_nan_inf_as_null_and_numpy_values(tmp_path):
  target = tmp_path / "x.json"
  write_json_atomic(
    target,
    {
      "nan": float("nan"),
      "inf": math.inf,
      "ninf": -math.inf,
      "np": np.float32(0.5),
      "arr": np.arange(3),
      "i": np.int64(7),
    },
  )
  text = target.read_text()
  assert "NaN" not in text and "Infinity" not in text
  doc = json.loads(text)
  assert doc["nan"] is None and doc["inf"] is None and doc["ninf"] is None
  assert doc["np"] == 0.5 and doc["arr"] == [0, 1, 2] and doc["i"] == 7
  # A config holding NaN compares equal to itself.
  _open(tmp_path, hyper={"lr": float("nan")})
  _open(tmp_path, hyper={"lr": float("nan")})


# --- status and summary -------------------------------------------------------


def test_status_transitions_and_summary(tmp_path):
  record = _open(tmp_path)
  assert record.status is None and record.summary is None and not record.is_complete()
  with record.lock():
    record.mark_running()
    status = record.status
    assert status["status"] == "running" and status["env_steps"] == 0
    assert status["error"] is None and status["pid"] == os.getpid()
    assert set(status) == {
      "status", "error", "updated", "env_steps", "host", "pid", "schema_version"
    }  # fmt: skip
    record.mark_running(env_steps=5000)
    summary = {"return_mean": 12.5, "return_iqm": float("nan"), "episodes": 100}
    record.mark_complete(summary)
  assert record.is_complete()
  assert record.status["env_steps"] == 5000
  loaded = record.summary
  assert loaded["return_mean"] == 12.5 and loaded["return_iqm"] is None
  record.mark_failed("CUDA out of memory", env_steps=7)
  assert record.status["status"] == "failed"
  assert record.status["error"] == "CUDA out of memory"
  assert record.status["env_steps"] == 7 and not record.is_complete()


def test_corrupt_status_is_a_user_error(tmp_path):
  record = _open(tmp_path)
  (record.path / "status.json").write_text('{"status": "runn')
  with pytest.raises(UserError, match="unreadable status.json"):
    _ = record.status


# --- metrics ------------------------------------------------------------------


def test_metrics_round_trip(tmp_path):
  record = _open(tmp_path)
  assert record.read_metrics() == []
  record.append_metrics([])
  assert not (record.path / "metrics.csv").exists()
  record.append_metrics([{"env_steps": 0, "ret": 0.1, "loss": float("nan"), "note": "a,b"}])
  record.append_metrics(
    [
      {"loss": math.inf, "env_steps": 100, "ret": np.float32(1.5), "note": None},
      {"env_steps": np.int64(200), "ret": -1e-300, "loss": 2, "note": "x\ny"},
    ]
  )
  assert (record.path / "metrics.csv").read_text().splitlines()[0] == "env_steps,ret,loss,note"
  rows = record.read_metrics()
  assert [r["env_steps"] for r in rows] == [0, 100, 200]
  assert all(isinstance(r["env_steps"], int) for r in rows)
  assert rows[0]["ret"] == 0.1 and math.isnan(rows[0]["loss"]) and rows[0]["note"] == "a,b"
  assert rows[1]["ret"] == 1.5 and rows[1]["loss"] == math.inf and rows[1]["note"] is None
  assert rows[2]["ret"] == -1e-300 and rows[2]["loss"] == 2 and rows[2]["note"] == "x\ny"
  assert _temps(record.path) == []


def test_metrics_rows_must_keep_the_header(tmp_path):
  record = _open(tmp_path)
  record.append_metrics([{"env_steps": 0, "ret": 1.0}])
  with pytest.raises(UserError, match="has columns"):
    record.append_metrics([{"env_steps": 1, "ret": 1.0, "extra": 3}])
  with pytest.raises(UserError):
    record.append_metrics([{"env_steps": 1}])
  assert len(record.read_metrics()) == 1


def test_truncate_metrics_drops_rows_after_the_checkpoint(tmp_path):
  record = _open(tmp_path)
  record.truncate_metrics(10)  # no metrics yet: nothing to do
  record.append_metrics([{"env_steps": s, "ret": s / 10} for s in range(0, 500, 100)])
  record.truncate_metrics(250)
  assert [r["env_steps"] for r in record.read_metrics()] == [0, 100, 200]
  record.append_metrics([{"env_steps": 300, "ret": 3.0}])
  assert [r["env_steps"] for r in record.read_metrics()] == [0, 100, 200, 300]


# --- checkpoints --------------------------------------------------------------


def _state():
  import jax.numpy as jnp

  return {
    "params": {
      "w": jnp.arange(12, dtype=jnp.float32).reshape(3, 4),
      "b": jnp.zeros((4,), jnp.bfloat16) + 0.5,
    },
    "opt": (
      jnp.array(3, jnp.int32),
      np.arange(6, dtype=np.float64).reshape(2, 3),
      np.array([1, 2, 255], np.uint8),
    ),
    "flags": np.array([True, False]),
    "rng": jnp.array([1, 2], jnp.uint32),
    "step": 7,
    "scale": np.float16(0.25),
    "empty": np.zeros((0, 3), np.int16),
  }


def _assert_trees_equal(got, want):
  import jax

  assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    assert type(a) is type(b) or (isinstance(a, jax.Array) and isinstance(b, jax.Array))
    assert np.shape(a) == np.shape(b)
    assert np.asarray(a).dtype == np.asarray(b).dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_round_trip(tmp_path):
  import jax

  record = _open(tmp_path)
  template = _state()
  assert record.load_checkpoint(template) is None
  record.save_checkpoint(template, env_steps=1000, extra={"episodes": 12, "best": math.nan})
  state, steps, extra = record.load_checkpoint(jax.tree_util.tree_map(np.zeros_like, template))
  assert steps == 1000 and extra["episodes"] == 12 and extra["best"] is None
  _assert_trees_equal(
    jax.tree_util.tree_map(np.asarray, state), jax.tree_util.tree_map(np.asarray, template)
  )
  # A template of jax arrays / ShapeDtypeStructs gives jax arrays back.
  abstract = jax.tree_util.tree_map(
    lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), template
  )
  state, _, _ = record.load_checkpoint(abstract)
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(state))
  state, _, _ = record.load_checkpoint(template)
  _assert_trees_equal(state, template)
  assert isinstance(state["step"], int) and isinstance(state["scale"], np.float16)
  meta = json.loads((record.path / "checkpoint" / "checkpoint.json").read_text())
  assert {leaf["path"] for leaf in meta["checkpoints"][0]["leaves"]} >= {
    "['params']['w']",
    "['opt'][0]",
  }


def test_checkpoint_keeps_the_two_latest(tmp_path):
  import jax.numpy as jnp

  record = _open(tmp_path)
  for steps in (100, 200, 200, 300):
    record.save_checkpoint({"w": jnp.full((2,), steps, jnp.float32)}, env_steps=steps)
  files = sorted(p.name for p in (record.path / "checkpoint").iterdir())
  assert len(files) == 3 and files[0] == "checkpoint.json"
  assert record.checkpoint_steps() == [300, 200]
  state, steps, extra = record.load_checkpoint({"w": np.zeros(2, np.float32)})
  assert steps == 300 and extra == {} and state["w"].tolist() == [300.0, 300.0]
  state, steps, _ = record.load_checkpoint({"w": np.zeros(2, np.float32)}, env_steps=200)
  assert steps == 200 and state["w"].tolist() == [200.0, 200.0]
  with pytest.raises(UserError, match="no checkpoint at 100 env steps"):
    record.load_checkpoint({"w": np.zeros(2, np.float32)}, env_steps=100)
  record.save_checkpoint({"w": jnp.zeros((2,), jnp.float32)}, env_steps=400, keep=1)
  assert record.checkpoint_steps() == [400]
  assert len(list((record.path / "checkpoint").glob("state-*.npz"))) == 1


def test_checkpoint_survives_a_crash_before_the_commit(tmp_path, monkeypatch):
  record = _open(tmp_path)
  record.save_checkpoint({"w": np.ones(3)}, env_steps=10)
  real = training_checkpoint.write_atomic

  def crash_on_commit(path, data):
    if Path(path).name == "checkpoint.json":
      raise KeyboardInterrupt  # as if killed between the two writes
    real(path, data)

  monkeypatch.setattr(training_checkpoint, "write_atomic", crash_on_commit)
  with pytest.raises(KeyboardInterrupt):
    record.save_checkpoint({"w": np.full(3, 2.0)}, env_steps=20)
  monkeypatch.undo()
  state, steps, _ = record.load_checkpoint({"w": np.zeros(3)})
  assert steps == 10 and state["w"].tolist() == [1.0, 1.0, 1.0]
  record.save_checkpoint({"w": np.full(3, 3.0)}, env_steps=30)  # cleans the orphan
  assert record.checkpoint_steps() == [30, 10]
  assert len(list((record.path / "checkpoint").glob("state-*.npz"))) == 2


def test_checkpoint_refuses_a_template_that_does_not_fit(tmp_path):
  import jax.numpy as jnp

  record = _open(tmp_path)
  record.save_checkpoint({"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}, env_steps=1)
  with pytest.raises(
    UserError,
    match=r"leaf \['w'\] is float32\[3, 4\] there but "
    r"float32\[4, 4\] is expected",
  ):
    record.load_checkpoint({"w": jnp.zeros((4, 4)), "b": jnp.zeros(4)})
  with pytest.raises(UserError, match="int32"):
    record.load_checkpoint({"w": jnp.zeros((3, 4), jnp.int32), "b": jnp.zeros(4)})
  with pytest.raises(UserError, match=r"has no leaf \['c'\]"):
    record.load_checkpoint({"w": jnp.zeros((3, 4)), "b": jnp.zeros(4), "c": jnp.zeros(1)})
  with pytest.raises(UserError, match=r"leaves the state lacks \(\['b'\]\)"):
    record.load_checkpoint({"w": jnp.zeros((3, 4))})


def test_checkpoint_detects_corruption(tmp_path):
  record = _open(tmp_path)
  record.save_checkpoint({"w": np.ones(100)}, env_steps=1)
  npz = next((record.path / "checkpoint").glob("state-*.npz"))
  data = bytearray(npz.read_bytes())
  data[-10] ^= 0xFF
  npz.write_bytes(bytes(data))
  with pytest.raises(UserError, match="sha256"):
    record.load_checkpoint({"w": np.zeros(100)})
  (record.path / "checkpoint" / "checkpoint.json").write_text("{")
  with pytest.raises(UserError, match="unreadable"):
    record.load_checkpoint({"w": np.zeros(100)})


# --- locking ------------------------------------------------------------------

_LOCKER = """
import sys, time
from pathlib import Path
from disco_eval.errors import UserError
from disco_eval.store import RunRecord
try:
  with RunRecord(Path(sys.argv[1])).lock():
    print("locked", flush=True)
    if sys.argv[2] == "hold":
      time.sleep(60)
except UserError as e:
  print("refused:", e, flush=True)
"""


def test_lock_refuses_a_second_process_until_released(tmp_path):
  record = _open(tmp_path)
  with record.lock():
    other = _python(_LOCKER, str(record.path), "try")
    out, err = other.communicate(timeout=60)
    assert out.strip() == (
      f"refused: run {record.path} is being written by another "
      f"process (pid {os.getpid()}); wait for it to end or stop it"
    ), err
    with pytest.raises(UserError, match="another process"):  # not reentrant either
      with record.lock():
        pass
  other = _python(_LOCKER, str(record.path), "try")
  out, err = other.communicate(timeout=60)
  assert out.strip() == "locked", err


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
  record = _open(tmp_path)
  holder = _python(_LOCKER, str(record.path), "hold")
  try:
    assert _wait_for_line(holder) == "locked"
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
      with record.lock():
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
  with record.lock():
    record.mark_running()


def test_lock_needs_an_existing_run(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    with RunRecord(tmp_path / "nope").lock():
      pass


def test_lock_removes_only_stale_temp_files(tmp_path):
  record = _open(tmp_path)
  (record.path / "checkpoint").mkdir()
  dead = subprocess.run(
    [sys.executable, "-c", "import os; print(os.getpid())"],
    capture_output=True,
    text=True,
    check=True,
  )
  stale = record.path / f".status.json.{dead.stdout.strip()}.0123456789ab.tmp"
  stale_ckpt = record.path / "checkpoint" / f".x.npz.{dead.stdout.strip()}.0123456789ab.tmp"
  live = record.path / f".metrics.csv.{os.getppid()}.0123456789ab.tmp"  # a live process
  for path in (stale, stale_ckpt, live):
    path.write_bytes(b"partial")
  with record.lock():
    pass
  assert not stale.exists() and not stale_ckpt.exists() and live.exists()


# --- scanning -----------------------------------------------------------------


def test_scan_runs_reports_runs_and_problems(tmp_path):
  assert scan_runs(tmp_path / "missing") == []
  done = _open(tmp_path, seed=0)
  done.mark_running()
  done.save_checkpoint({"w": np.ones(2)}, env_steps=5)
  done.append_metrics([{"env_steps": 5}])
  done.mark_complete({"return": 1.0})
  _open(tmp_path, seed=1)  # a fresh record, never run
  bad_config = _open(tmp_path, seed=2)
  (bad_config.path / "config.json").write_text('{"rule": ')
  bad_status = _open(tmp_path, seed=10)
  (bad_status.path / "status.json").write_text("[1, 2")
  bad_value = _open(tmp_path, seed=3)
  write_json_atomic(bad_value.path / "status.json", {"status": "exploded"})
  lost_summary = _open(tmp_path, seed=4)
  lost_summary.append_metrics([{"env_steps": 5}])
  lost_summary.mark_complete({"return": 2.0})
  (lost_summary.path / "summary.json").unlink()
  stray = tmp_path / "elsewhere"
  stray.mkdir()
  write_json_atomic(stray / "config.json", {"suite": "x", "seed": 9})

  runs = scan_runs(tmp_path)
  by_seed = {(r.suite, r.seed): r for r in runs}
  assert len(runs) == 7
  assert [r.seed for r in runs if r.suite == "minatar"] == [0, 1, 2, 3, 4, 10]

  ok = by_seed[("minatar", 0)]
  assert (ok.task, ok.rule, ok.status, ok.problem) == ("breakout", "disco103", "complete", None)
  assert ok.summary == {"return": 1.0, "schema_version": 1} and ok.config["seed"] == 0
  assert by_seed[("minatar", 1)].status is None and by_seed[("minatar", 1)].problem is None
  assert by_seed[("minatar", 2)].config is None
  assert "config.json is unreadable" in by_seed[("minatar", 2)].problem
  assert by_seed[("minatar", 10)].status is None
  assert "status.json is unreadable" in by_seed[("minatar", 10)].problem
  assert "unknown status 'exploded'" in by_seed[("minatar", 3)].problem
  assert "summary.json is missing" in by_seed[("minatar", 4)].problem
  assert "not at <suite>/<task>/<rule>/seed<k>" in by_seed[("x", 9)].problem


def test_scan_runs_reports_folders_it_cannot_list(tmp_path, monkeypatch):
  run = _open(tmp_path)
  _open(tmp_path, seed=1)
  blocked = run.path.parent / "other-rule"
  blocked.mkdir()
  real = os.scandir

  def scandir(path="."):
    if Path(path) == blocked:
      raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    return real(path)

  monkeypatch.setattr(os, "scandir", scandir)
  runs = scan_runs(tmp_path)
  monkeypatch.undo()
  assert [r.seed for r in runs] == [None, 0, 1]
  assert runs[0].path == blocked and "cannot list folder" in runs[0].problem


def test_scan_accepts_a_rule_table_in_the_config(tmp_path):
  cfg = {
    "rule": {"name": "disco103", "kind": "disco", "sha256": "ab"},
    "suite": "catch",
    "task": "catch",
    "seed": 0,
  }
  rec = store.RunRecord.open(tmp_path, "catch", "catch", "disco103", 0, cfg)
  rec.append_metrics([{"env_steps": 5}])
  rec.mark_complete({"score": 1.0})
  (info,) = store.scan_runs(tmp_path)
  assert info.problem is None and info.rule == "disco103"
  other = store.RunRecord.open(
    tmp_path, "catch", "catch", "ppo", 0, {**cfg, "rule": {"name": "disco103"}}
  )
  other.append_metrics([{"env_steps": 5}])
  other.mark_complete({"score": 1.0})
  bad = [i for i in store.scan_runs(tmp_path) if i.path == other.path][0]
  assert "says rule 'disco103' but the folder says 'ppo'" in bad.problem
