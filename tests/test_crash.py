"""Real crash test: SIGKILL a sweep at many points, resume, compare.

Pure-JAX Catch runs continue bit-for-bit from their checkpoints, so a sweep
killed and resumed any number of times must end with exactly the records of
an uninterrupted sweep with the same seeds. The points (during the first
compilation, mid-chunk, mid-write) are drawn with a fixed seed.
"""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = [
  "run",
  "catch",
  "--rule",
  "actor_critic",
  "--seeds",
  "2",
  "--steps",
  str(58 * 36),
  "--checkpoint-every",
  "1",
  "--set",
  "train.min_buffer=4",
  "--set",
  "train.sample_entries=4",
  "--set",
  "train.chunk=4",
  "--set",
  "agent.torso_hidden=[32]",
  "--json",
]


def start(out: Path, home: Path) -> subprocess.Popen:
  env = dict(os.environ, DISCO_EVAL_HOME=str(home))
  return subprocess.Popen(
    [sys.executable, "-m", "disco_eval.cli", *ARGS, "--out", str(out)],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    env=env,
    text=True,
  )


def finish(out: Path, home: Path) -> list[dict]:
  p = start(out, home)
  stdout, stderr = p.communicate(timeout=600)
  assert p.returncode == 0, stderr
  return json.loads(stdout)


def runs(out: Path) -> dict[str, Path]:
  return {str(p.relative_to(out)): p for p in sorted(out.glob("catch/catch/*/seed*"))}


def metrics(run: Path) -> list[dict]:
  with open(run / "metrics.csv") as f:
    return list(csv.DictReader(f))


def wait_for(pred, proc, timeout=300.0):
  t = time.time()
  while time.time() - t < timeout:
    if pred():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.02)
  return False


def rows(run: Path) -> int:
  try:
    return len(metrics(run))
  except (FileNotFoundError, OSError):
    return 0


def checkpoint_mtime(run: Path) -> float:
  try:
    return (run / "checkpoint" / "checkpoint.json").stat().st_mtime_ns
  except FileNotFoundError:
    return 0


def status_pid(run: Path) -> int | None:
  try:
    return json.loads((run / "status.json").read_text())["pid"]
  except (FileNotFoundError, ValueError, KeyError):
    return None


def temp_files(run: Path) -> bool:
  return any(run.rglob(".*.tmp"))


# Where a kill lands, aimed from the record files: in the first compilation
# (the run has just marked itself running), mid-chunk (just after a chunk's
# rows, as the next one computes), as a checkpoint is written, and while a
# write's temp file exists (mid-write).
KILL_POINTS = ("compile", "mid-chunk", "checkpoint", "mid-write")


def kill_at(point: str, rng: random.Random, out: Path, home: Path, run: Path) -> bool:
  """Starts the sweep and SIGKILLs it at `point`; whether it was killed."""
  p = start(out, home)
  aimed = wait_for(lambda: status_pid(run) == p.pid, p)
  if aimed and point == "compile":
    time.sleep(rng.uniform(0.0, 1.5))
  elif aimed and point == "mid-chunk":
    target = rows(run) + rng.randint(1, 2) * 4
    aimed = wait_for(lambda: rows(run) >= target, p)
    time.sleep(rng.uniform(0.0, 0.3))
  elif aimed and point == "checkpoint":
    before = checkpoint_mtime(run)
    aimed = wait_for(lambda: checkpoint_mtime(run) != before, p)
  elif aimed:  # (writes are short: two chunks on, kill all the same)
    target = rows(run) + 8
    aimed = wait_for(lambda: temp_files(run) or rows(run) >= target, p)
  killed = aimed and p.poll() is None
  if killed:
    p.send_signal(signal.SIGKILL)
  p.communicate()
  return killed


@pytest.mark.slow
def test_killed_sweep_resumes_to_identical_records(tmp_path, disco_home):
  clean, crashed = tmp_path / "clean", tmp_path / "crashed"
  reference = finish(clean, disco_home)
  assert {r["status"] for r in reference} == {"complete"}

  seed0 = crashed / "catch" / "catch" / "actor_critic" / "seed0"
  rng = random.Random(1313)
  points = [*KILL_POINTS, rng.choice(KILL_POINTS)]
  rng.shuffle(points)
  kills = [point for point in points if kill_at(point, rng, crashed, disco_home, seed0)]
  assert len(kills) >= 4, f"the sweep finished before it could be killed ({kills})"

  resumed = finish(crashed, disco_home)
  assert {r["status"] for r in resumed} <= {"complete", "skipped"}
  a, b = runs(clean), runs(crashed)
  assert a.keys() == b.keys() and len(a) == 2
  for key in a:
    ma, mb = metrics(a[key]), metrics(b[key])
    iters = [int(r["iteration"]) for r in mb]
    assert iters == sorted(set(iters)) == list(range(36)), "duplicated or missing rows"
    assert ma == mb, f"{key}: metrics differ after resuming"
    sa = json.loads((a[key] / "summary.json").read_text())
    sb = json.loads((b[key] / "summary.json").read_text())
    for k in ("score", "normalized_score", "final_window_return", "eval_return_std"):
      assert sa[k] == sb[k], (key, k, sa[k], sb[k])
    assert json.loads((b[key] / "status.json").read_text())["status"] == "complete"
  # The final tables are those of the uninterrupted sweep.
  tables = []
  for out in (clean, crashed):
    res = subprocess.run(
      [sys.executable, "-m", "disco_eval.cli", "compare", str(out), "--json", "--reps", "2000"],
      capture_output=True,
      text=True,
      timeout=300,
      env=dict(os.environ, DISCO_EVAL_HOME=str(disco_home)),
    )
    assert res.returncode == 0, res.stderr
    groups = json.loads(res.stdout)["groups"]
    tables.append(
      [{k: g[k] for k in ("per_task", "aggregate", "matrices", "seeds")} for g in groups]
    )
  assert tables[0] == tables[1]
