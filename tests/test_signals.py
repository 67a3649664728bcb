"""Signals: SIGINT/SIGTERM stop a sweep at a safe point (checkpoint, status
``interrupted``, one line, exit 130/143) and a rerun resumes it to the records
of an uninterrupted sweep; checkpoints also come on a wall-clock interval."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disco_eval import store
from disco_eval.analysis import collect
from disco_eval.runs import SweepSpec, run_sweep, stop

TINY = (
  ("train.min_buffer", "4"),
  ("train.sample_entries", "4"),
  ("train.chunk", "4"),
  ("agent.torso_hidden", "[32]"),
)
SPI = 58  # env steps per iteration of Catch's default loop
ITERS = 16  # 4 chunks of 4 iterations
STOPS = (signal.SIGINT, signal.SIGTERM)


def spec(out: Path, **kw) -> SweepSpec:
  """A tiny Catch sweep: actor_critic, 2 seeds, 4 chunks, no periodic checkpoint."""
  return SweepSpec(
    suite="catch",
    rules=("actor_critic",),
    seeds=(0, 1),
    steps=SPI * ITERS,
    out=out,
    overrides=TINY,
    checkpoint_every=kw.pop("checkpoint_every", 100),
    **kw,
  )


def runs(out: Path) -> dict[int, Path]:
  return {int(p.name[4:]): p for p in sorted(out.glob("catch/catch/actor_critic/seed*"))}


def status(run: Path) -> dict:
  return json.loads((run / "status.json").read_text())


def same_records(a: Path, b: Path) -> None:
  """Two run folders hold the same run (timings and timestamps aside)."""
  assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()
  sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
  for k in ("score", "normalized_score", "final_window_return", "eval_return_std"):
    assert sa[k] == sb[k], (k, sa[k], sb[k])


def stop_after_first_chunk(out: Path) -> stop.Interrupted:
  """Runs the sweep into `out`, SIGINT once its first chunk is done."""

  def on_progress(p):
    if p.kind == "chunk" and p.env_steps == 4 * SPI:
      os.kill(os.getpid(), signal.SIGINT)  # only sets the flag: no exception here

  with stop.handling(), pytest.raises(stop.Interrupted) as info:
    run_sweep(spec(out), on_progress)
  return info.value


def test_signal_stops_at_a_safe_point(tmp_path):
  before = signal.getsignal(signal.SIGINT)  # Python's, or disco_eval.interrupts' marker
  e = stop_after_first_chunk(tmp_path)
  assert (e.signum, e.env_steps, e.exit_code) == (signal.SIGINT, 4 * SPI, 130)
  assert e.message == f"interrupted at {4 * SPI} env steps; rerun the same command to resume"
  for run in runs(tmp_path).values():
    assert (status(run)["status"], status(run)["env_steps"]) == ("interrupted", 4 * SPI)
    # Saved at the stop (no periodic checkpoint was due).
    assert store.RunRecord(run).checkpoint_steps() == [4 * SPI]
  assert signal.getsignal(signal.SIGINT) is before  # put back
  assert stop.requested() is None
  # Left out of every statistic as incomplete, at its step count.
  found = collect.collect(tmp_path)
  assert not found.runs
  assert {
    (x.reason, f"status is interrupted at {4 * SPI} env steps" in x.detail) for x in found.excluded
  } == {("incomplete", True)}


@pytest.mark.slow
def test_interrupted_sweep_resumes_to_the_same_records(tmp_path):
  clean, out = tmp_path / "clean", tmp_path / "stopped"
  assert {r.status for r in run_sweep(spec(clean))} == {"complete"}
  stop_after_first_chunk(out)
  events = []
  assert {r.status for r in run_sweep(spec(out), events.append)} == {"complete"}
  assert [e.env_steps for e in events if e.kind == "resume"] == [4 * SPI]
  for seed, run in runs(clean).items():
    same_records(run, runs(out)[seed])


def test_checkpoints_come_on_a_wall_clock_interval(tmp_path):
  seen = []

  def on_progress(p):
    if p.kind == "chunk":
      seen.append(store.RunRecord(runs(tmp_path)[0]).checkpoint_steps())

  run_sweep(spec(tmp_path, checkpoint_minutes=0.0), on_progress)
  # checkpoint_every=100 chunks is never reached: each one is the clock's.
  assert seen == [[4 * SPI], [8 * SPI, 4 * SPI], [12 * SPI, 8 * SPI], [12 * SPI, 8 * SPI]]


def test_stop_between_units_and_ignored_signals(tmp_path):
  # A stop requested before a unit starts: nothing is trained or written.
  with stop.handling():
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(stop.Interrupted) as info:
      run_sweep(spec(tmp_path))
  assert (info.value.env_steps, info.value.exit_code) == (0, 143)
  assert not runs(tmp_path)
  # A signal the parent ignores (nohup) stays ignored.
  old = signal.signal(signal.SIGTERM, signal.SIG_IGN)
  try:
    with stop.handling():
      assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
      assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
  finally:
    signal.signal(signal.SIGTERM, old)


# --- the command, interrupted at random points ---------------------------------

ARGS = [
  "run",
  "catch",
  "--rule",
  "actor_critic",
  "--seeds",
  "2",
  "--steps",
  str(SPI * 36),  # 9 chunks: room for every interruption below
  "--checkpoint-every",
  "100",
  *(a for key, value in TINY for a in ("--set", f"{key}={value}")),
  "--json",
]
LINE = re.compile(r"interrupted at (\d+) env steps; rerun the same command to resume")


def start(out: Path) -> subprocess.Popen:
  """The command, started with SIGINT not ignored (as in a shell's background
  job, which the test runner may be: a handler, unlike SIG_IGN, is not
  inherited, so the child gets the default)."""
  old = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    return subprocess.Popen(
      [sys.executable, "-m", "disco_eval.cli", *ARGS, "--out", str(out)],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
  finally:
    signal.signal(signal.SIGINT, old)


def wait_for(pred, proc, timeout=300.0) -> bool:
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
    return len((run / "metrics.csv").read_text().splitlines()[1:])
  except OSError:
    return 0


def status_pid(run: Path) -> int | None:
  try:
    return status(run)["pid"]
  except (OSError, ValueError, KeyError):
    return None


def aim(point: str, rng: random.Random, p: subprocess.Popen, run: Path) -> bool:
  """Waits for `point` of the sweep `p`: in the first compilation (the run
  has just marked itself running), mid-chunk, or between chunks (just after a
  chunk's rows are written)."""
  if not wait_for(lambda: status_pid(run) == p.pid, p):
    return False
  if point == "compile":
    time.sleep(rng.uniform(0.0, 1.0))
    return True
  target = rows(run) + 4
  if not wait_for(lambda: rows(run) >= target, p):
    return False
  if point == "mid-chunk":
    time.sleep(rng.uniform(0.05, 0.3))
  return True


def check_interrupted(out: Path, signum: int, rc: int, stdout: str, stderr: str) -> None:
  """Exit 128 + signal, the one line, and the records at its step count."""
  assert rc == 128 + signum, stderr
  assert stdout == ""
  # (other lines may name the test's folder, test_interrupted_...: only the message counts)
  lines = [line for line in stderr.splitlines() if line.strip().startswith("interrupted")]
  assert len(lines) == 1 and LINE.fullmatch(lines[0].strip()), stderr
  steps = int(LINE.fullmatch(lines[0].strip()).group(1))
  assert "Traceback" not in stderr and steps % (4 * SPI) == 0
  for run in runs(out).values():
    assert (status(run)["status"], status(run)["env_steps"]) == ("interrupted", steps)
    assert rows(run) == steps // SPI
    assert store.RunRecord(run).checkpoint_steps()[:1] == ([steps] if steps else [])


@pytest.mark.slow
def test_interrupted_command_exits_130_143_and_resumes_to_the_same_records(tmp_path):
  clean, out = tmp_path / "clean", tmp_path / "stopped"
  p = start(clean)
  assert p.communicate(timeout=600) and p.returncode == 0
  seed0 = out / "catch" / "catch" / "actor_critic" / "seed0"
  rng = random.Random(1313)
  points = ["compile", "mid-chunk", "between"]
  rng.shuffle(points)
  done = 0
  for point, signum in zip(points, (signal.SIGINT, signal.SIGTERM, rng.choice(STOPS))):
    p = start(out)
    if aim(point, rng, p, seed0):
      p.send_signal(signum)
      stdout, stderr = p.communicate(timeout=600)
      check_interrupted(out, signum, p.returncode, stdout, stderr)
      done += 1
    else:
      p.communicate(timeout=600)
  assert done >= 2, "the sweep finished before it could be interrupted"
  # A second Ctrl-C while stopping may abort at once: exit 130 all the same.
  p = start(out)
  if aim("compile", rng, p, seed0):
    p.send_signal(signal.SIGINT)
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
  stdout, stderr = p.communicate(timeout=600)
  assert p.returncode in (0, 130) and "Traceback" not in stderr, stderr

  p = start(out)
  stdout, stderr = p.communicate(timeout=600)
  assert p.returncode == 0, stderr
  assert {r["status"] for r in json.loads(stdout)} <= {"complete", "skipped"}
  for seed, run in runs(clean).items():
    same_records(run, runs(out)[seed])
    assert status(runs(out)[seed])["status"] == "complete"
