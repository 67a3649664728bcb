"""Records that survive a hostile results folder, a full machine and an
impatient user (docs/reliability.md): one test per principle, on real folders.

Records are written through the store (no training) where the store is what is
tried; the sweeps that train are tiny Catch runs (58 env steps per iteration,
chunks of 4 iterations, a few hundred env steps).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax.numpy as jnp
import pytest
from typer.testing import CliRunner

from disco_eval import interrupts
from disco_eval.analysis import compare
from disco_eval.cli import app
from disco_eval.config.fingerprint import settings_of
from disco_eval.errors import UserError
from disco_eval.runs import run_sweep, stop
from disco_eval.runs.data_used import data_used
from disco_eval.runs.spec import SweepSpec
from disco_eval.store import RunRecord, atomic, config_match, damage, scan_runs
from disco_eval.train.learner import masked_loss

STEPS = 58 * 8
TINY = (
  ("train.min_buffer", "4"),
  ("train.sample_entries", "4"),
  ("train.chunk", "4"),
  ("agent.torso_hidden", "[16]"),
)
CONFIG = {
  "suite": "catch",
  "task": "catch",
  "seed": 0,
  "env_steps": STEPS,
  "protocol": {"name": "reference", "env_steps": STEPS, "metric": "return"},
  "rule": {"name": "actor_critic", "kind": "actor_critic", "sha256": None},
  "train": {"num_envs": 2, "rollout_len": 29, "chunk": 4, "iterations": 8},
  "versions": {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "optax": "0.2.8"},
  "runtime": {"backend": "cpu"},
}


def _write_run(out: Path, seed: int = 0, config: dict | None = None) -> Path:
  """A complete run written through the store: config, metrics, summary, status."""
  doc = {**(config or CONFIG), "seed": seed}
  record = RunRecord.open(out, "catch", "catch", "actor_critic", seed, doc)
  with record.lock():
    record.mark_running(0)
    record.append_metrics([{"env_steps": 58 * (i + 1), "avg_return": 0.5} for i in range(8)])
    summary = {"protocol": "reference", "env_steps": STEPS, "metric": "return"}
    record.mark_complete({**summary, "score": 0.5, "normalized_score": 0.75}, env_steps=STEPS)
  return record.path


def _files(folder: Path) -> dict[str, bytes]:
  return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _spec(out: Path, seeds=(0,)) -> SweepSpec:
  return SweepSpec(
    suite="catch",
    rules=("actor_critic",),
    seeds=tuple(seeds),
    steps=STEPS,
    out=out,
    overrides=TINY,
    checkpoint_every=1,
  )


# --- 1. never write through a link ------------------------------------------------


@pytest.mark.parametrize("name", [".lock", "metrics.csv", "status.json"])
def test_a_link_where_a_record_file_belongs_is_refused_and_its_target_untouched(tmp_path, name):
  run = _write_run(tmp_path / "out")
  victim = tmp_path / "victim.txt"
  victim.write_text("precious\n")
  (run / name).unlink(missing_ok=True)
  (run / name).symlink_to(victim)
  with pytest.raises(UserError, match="symbolic link.*remove the link or pass --out DIR"):
    RunRecord.open(tmp_path / "out", "catch", "catch", "actor_critic", 0, CONFIG)
  with pytest.raises(UserError, match="symbolic link"):
    with RunRecord(run).lock():
      pass
  assert victim.read_text() == "precious\n"
  assert damage.find_damage(run).reason == "link"


def test_a_linked_seed_or_checkpoint_folder_is_refused_and_reported(tmp_path):
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  out = tmp_path / "out"
  run = _write_run(out)
  (run / "checkpoint").symlink_to(elsewhere, target_is_directory=True)
  with pytest.raises(UserError, match="checkpoint is a symbolic link"):
    RunRecord.open(out, "catch", "catch", "actor_critic", 0, CONFIG)
  (run / "checkpoint").unlink()
  (run.parent / "seed1").symlink_to(elsewhere, target_is_directory=True)
  with pytest.raises(UserError, match="seed1 is a symbolic link"):
    RunRecord.open(out, "catch", "catch", "actor_critic", 1, {**CONFIG, "seed": 1})
  assert list(elsewhere.iterdir()) == []
  found = {r.path.name: r.reason for r in scan_runs(out)}
  assert found == {"seed0": None, "seed1": "link"}


def test_every_writer_refuses_a_link(tmp_path):
  target = tmp_path / "target"
  target.write_text("x")
  link = tmp_path / "link"
  link.symlink_to(target)
  for write in (
    lambda: atomic.write_atomic(link, b"y"),
    lambda: atomic.append_durably(link, b"y"),
    lambda: atomic.open_nofollow(link, os.O_WRONLY),
  ):
    with pytest.raises(UserError, match="symbolic link"):
      write()
  (tmp_path / "dir").mkdir()
  (tmp_path / "via").symlink_to(tmp_path / "dir", target_is_directory=True)
  with pytest.raises(UserError, match="symbolic link"):
    atomic.make_dirs(tmp_path / "via" / "sub", tmp_path)
  assert target.read_text() == "x" and not (tmp_path / "dir" / "sub").exists()


# --- 2. trust nothing that can be checked -----------------------------------------


def _cut_metrics(run: Path) -> None:
  lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
  (run / "metrics.csv").write_text("".join(lines[: len(lines) // 2]))


@pytest.mark.parametrize(
  "damage_it, reason",
  [
    (_cut_metrics, "short_metrics"),
    (lambda run: (run / "status.json").unlink(), "missing_status"),
    (lambda run: (run / "summary.json").unlink(), "missing_summary"),
  ],
)
def test_a_damaged_complete_run_is_refused_by_run_and_excluded_by_compare(
  tmp_path, damage_it, reason
):
  out = tmp_path / "out"
  run = _write_run(out)
  _write_run(out, seed=1)
  damage_it(run)
  before = _files(run)
  with pytest.raises(UserError, match="damaged run record"):
    RunRecord.open(out, "catch", "catch", "actor_critic", 0, CONFIG)
  assert _files(run) == before
  result = compare.compare(out, reps=50)
  assert {e.path.name: e.reason for e in result.excluded} == {"seed0": reason}
  assert result.groups[0].seeds == {"actor_critic": 1}


def test_a_seed_folder_must_have_its_canonical_name(tmp_path):
  out = tmp_path / "out"
  run = _write_run(out)
  shutil.copytree(run, run.parent / "seed01")
  problems = {r.path.name: r.problem for r in scan_runs(out)}
  assert problems["seed0"] is None and "seed<k>" in problems["seed01"]


def test_a_resume_cross_checks_the_checkpoint(tmp_path):
  run = _write_run(tmp_path / "out")
  record = RunRecord(run)
  state = {"w": jnp.zeros(3)}
  with record.lock():
    record.save_checkpoint(state, 58 * 4, {"iteration": 4})
  train = SimpleNamespace(steps_per_iteration=58, iterations=8)
  from disco_eval.store import check_resume_point

  check_resume_point(run, 4, 58 * 4, train)
  with pytest.raises(UserError, match="does not fit this run"):
    check_resume_point(run, 5, 58 * 4, train)
  meta = run / "checkpoint" / "checkpoint.json"
  doc = json.loads(meta.read_text())
  doc["checkpoints"][0]["env_steps"] = 58 * 6
  meta.write_text(json.dumps(doc))
  with pytest.raises(UserError, match="which its name contradicts"):
    record.load_checkpoint(state, 58 * 6)


# --- 3. fingerprint what can change a result --------------------------------------


def test_runs_made_with_other_versions_or_data_are_reported_apart(tmp_path):
  out = tmp_path / "out"
  _write_run(out, 0)
  _write_run(out, 1)
  other = json.loads(json.dumps(CONFIG))
  other["versions"]["jax"] = "0.9.1"
  _write_run(out, 2, other)
  result = compare.compare(out, reps=50)
  labels = {label for g in result.groups for label in g.seeds}
  assert labels == {"actor_critic[machine.jax=0.10]", "actor_critic[machine.jax=0.9]"}
  assert any("reported apart" in w for g in result.groups for w in g.warnings)
  levels = {**CONFIG, "data": {"boxoban": {"hard": "a" * 64}}}
  assert settings_of(levels) != settings_of({**CONFIG, "data": {"boxoban": {"hard": "b" * 64}}})


def test_an_older_record_without_the_new_fingerprints_still_resumes(tmp_path):
  stored = json.loads(json.dumps(CONFIG))
  new = {**CONFIG, "data": {"boxoban": {"hard": "a" * 64}}}
  config_match.check_same_run(tmp_path, stored, config_match.canonical_config(new))
  stored["data"] = {"boxoban": {"hard": "b" * 64}}
  with pytest.raises(UserError, match="data.boxoban.hard"):
    config_match.check_same_run(tmp_path, stored, config_match.canonical_config(new))


# --- 4. a writer that died --------------------------------------------------------


def test_a_run_whose_writer_died_reads_died_without_a_status(tmp_path):
  out = tmp_path / "out"
  run = _write_run(out)
  _write_run(out, seed=1)
  gone = subprocess.Popen([sys.executable, "-c", "pass"])
  gone.wait()
  status = json.loads((run / "status.json").read_text())
  status.update(status="running", pid=gone.pid, host=socket.gethostname())
  (run / "status.json").write_text(json.dumps(status))
  (run / "summary.json").unlink()
  [excluded] = compare.compare(out, reps=50).excluded
  assert "died without a status (killed? out of memory?)" in excluded.detail


def test_a_run_written_on_another_host_is_named_not_guessed(tmp_path):
  out = tmp_path / "out"
  run = _write_run(out)
  _write_run(out, seed=1)
  status = json.loads((run / "status.json").read_text())
  status.update(status="running", pid=4242, host="elsewhere.invalid")
  (run / "status.json").write_text(json.dumps(status))
  (run / "summary.json").unlink()
  [excluded] = compare.compare(out, reps=50).excluded
  assert "running on elsewhere.invalid (pid 4242): cannot check from here" in excluded.detail
  assert "died without a status" not in excluded.detail
  result = CliRunner().invoke(app, ["compare", str(out)])
  assert "running on elsewhere.invalid (pid 4242): cannot check from here" in result.output


def test_a_unit_that_cannot_fit_is_refused_before_any_record(tmp_path, monkeypatch):
  monkeypatch.setenv("DISCO_EVAL_HOME", str(tmp_path / "home"))
  out = tmp_path / "out"
  # A replay buffer of 2^30 entries: terabytes, more than any machine running this has.
  args = ["run", "catch", "-r", "actor_critic", "--seeds", "1", "--steps", str(STEPS)]
  args += [a for key, value in TINY for a in ("--set", f"{key}={value}")]
  args += ["--set", f"train.buffer_capacity={2**30}", "--out", str(out)]
  result = CliRunner().invoke(app, args)
  assert result.exit_code == 1 and isinstance(result.exception, UserError), result.output
  line = str(result.exception)
  assert "\n" not in line and "actor_critic on catch/catch x1 seed(s) needs about" in line
  assert "host RAM available" in line and "--no-memory-check" in line
  assert not out.exists()  # nothing written: no record, no experiment file
  [cached] = (tmp_path / "home" / "cache" / "memory").glob("*.json")
  assert json.loads(cached.read_text())["device"] > 2**40  # projected once, kept


def test_no_memory_check_trains_and_is_recorded(tmp_path, monkeypatch):
  monkeypatch.setenv("DISCO_EVAL_HOME", str(tmp_path / "home"))
  out = tmp_path / "out"
  args = ["run", "catch", "-r", "actor_critic", "--seeds", "1", "--steps", str(STEPS)]
  args += [a for key, value in TINY for a in ("--set", f"{key}={value}")]
  result = CliRunner().invoke(app, args + ["--out", str(out), "--no-memory-check"])
  assert result.exit_code == 0, result.output
  assert "memory check skipped (--no-memory-check)" in result.output
  [saved] = (out / "experiments").glob("*.toml")
  assert "no_memory_check = true" in saved.read_text()
  assert not (tmp_path / "home" / "cache" / "memory").exists()  # nothing projected


# --- 5. signals and pipes ---------------------------------------------------------


def test_a_swallowed_early_ctrl_c_still_stops_and_sighup_stops_as_sigterm():
  assert signal.SIGHUP in stop.STOP_SIGNALS
  try:
    try:
      interrupts._handler(signal.SIGINT, None)  # as a callback that drops it would
    except KeyboardInterrupt:
      pass
    assert stop.requested() == signal.SIGINT
    with pytest.raises(stop.Interrupted):
      stop.check(0)
  finally:
    interrupts.clear()
  assert stop.requested() is None


SECOND_CTRL_C = """
import os, signal, sys
import jax, jax.numpy as jnp
from disco_eval.runs import stop
spin = jax.jit(lambda x: jax.lax.fori_loop(0, 2_000_000_000, lambda i, v: v * 1.0000001, x))
spin.lower(1.0).compile()
with stop.handling():
  os.kill(os.getpid(), signal.SIGINT)
  os.kill(os.getpid(), signal.SIGINT)
  jax.block_until_ready(spin(jnp.float32(1.0)))  # minutes: the second Ctrl-C ends it
print("finished")
"""


def test_a_second_ctrl_c_aborts_at_once_during_a_computation():
  p = subprocess.run(
    [sys.executable, "-c", SECOND_CTRL_C], capture_output=True, text=True, timeout=600
  )
  assert p.returncode == 130, p.stderr
  assert "finished" not in p.stdout
  assert "aborted; rerun the same command to resume" in p.stderr


def test_a_closed_stdout_never_stops_training(tmp_path):
  args = ["run", "catch", "--rule", "actor_critic", "--seeds", "1", "--steps", str(STEPS)]
  args += [a for key, value in TINY for a in ("--set", f"{key}={value}")]
  p = subprocess.Popen(
    [sys.executable, "-m", "disco_eval.cli", *args, "--out", str(tmp_path)],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  p.stdout.readline()
  p.stdout.close()  # as `| head -1` does
  stderr = p.stderr.read()
  assert p.wait(timeout=600) == 0, stderr
  status = json.loads(next(tmp_path.rglob("status.json")).read_text())
  assert status["status"] == "complete" and "Traceback" not in stderr


# --- 6. every error one line ------------------------------------------------------


@pytest.mark.parametrize(
  "args, words",
  [
    (["run", "catch", "--seeds", "-1"], "--seeds = -1 is out of range: an integer >= 1"),
    (["run", "catch", "--tasks", ""], "--tasks names no task"),
    (["run", "catch", "--steps", str(10**23)], "env steps must be a whole number in [1, 2^40]"),
    (
      ["run", "catch", "--steps", "1e23"],
      "--steps 1e23: env steps must be a whole number in [1, 2^40]",
    ),
    (["run", "catch", "--steps", "lots"], "--steps lots: not a number of env steps"),
    (["plan", "catch", "--steps", "1e23"], "--steps 1e23: env steps must be a whole number"),
    (["run", "catch", "--set", f"train.num_envs={10**23}"], "< 2^31"),
    (["run", "catch", "--set", f"train.buffer_capacity={2**36}"], "< 2^31"),
    (
      ["run", "catch", "-r", "actor_critic", "--set", "optimizer.learning_rate=1e-320"],
      "0 in float32 below",
    ),
    (["run", "catch", "--set", "protocol.eval_max_steps=10"], "evaluates in JAX"),
    (["compare", "{out}", "--at", "1e309"], "--at 1e309: env steps must be a whole number"),
  ],
)
def test_bad_input_is_one_line_naming_the_fix(tmp_path, args, words):
  out = tmp_path / "out"
  _write_run(out)
  args = [a.replace("{out}", str(out)) for a in args]
  if args[0] in ("run", "plan"):
    args += ["--out", str(tmp_path / "new")] + (["-r", "actor_critic"] if "-r" not in args else [])
  result = CliRunner().invoke(app, args)
  assert result.exit_code != 0
  assert isinstance(result.exception, (UserError, SystemExit)), result.exception
  assert words in str(result.exception) or words in result.output
  assert not (tmp_path / "new").exists()


def test_steps_are_read_as_compare_at_reads_them():
  from disco_eval.cli.run import budget

  assert [budget(t) for t in ("20000", "1e6", "1M", "50m", "2B", "1_000")] == [
    20_000,
    1_000_000,
    1_000_000,
    50_000_000,
    2_000_000_000,
    1_000,
  ]
  assert budget(None) is None and budget(2**40) == 2**40
  with pytest.raises(UserError, match="2\\^40"):
    budget(2**40 + 1)


def test_a_loss_of_the_wrong_shape_is_refused_at_its_first_step():
  batch = SimpleNamespace(loss_mask=jnp.ones((4, 2)))
  for shape in ((2,), ()):
    rule = SimpleNamespace(name="bad", loss=lambda o, t, b, s=shape: (jnp.zeros(s), {}))
    with pytest.raises(UserError, match=r"loss returned shape .* \[T, B\] = \[4, 2\]"):
      masked_loss(rule, None, None, batch)
  good = SimpleNamespace(name="good", loss=lambda o, t, b: (jnp.ones((4, 2)), {}))
  assert float(masked_loss(good, None, None, batch)[0]) == pytest.approx(1.0)


def test_a_damaged_record_stops_a_real_sweep_before_training(tmp_path):
  out = tmp_path / "out"
  [first] = run_sweep(_spec(out))
  assert first.status == "complete" and not (first.path / "checkpoint").exists()
  (first.path / "status.json").unlink()
  before = _files(first.path)
  with pytest.raises(UserError, match="status.json is missing while metrics.csv"):
    run_sweep(_spec(out))
  assert _files(first.path) == before


def test_data_pull_from_replaces_cached_levels_only_with_force(tmp_path, monkeypatch):
  home = tmp_path / "home"
  folder = home / "data" / "boxoban"
  folder.mkdir(parents=True)
  record = {"source": "archive", "splits": {"hard": {"levels": 3332, "files": 1, "sha256": "ab"}}}
  (folder / "boxoban.json").write_text(json.dumps(record))
  (folder / "hard.npz").write_bytes(b"levels")
  monkeypatch.setenv("DISCO_EVAL_HOME", str(home))
  before = _files(folder)
  result = CliRunner().invoke(app, ["data", "pull", "boxoban", "--from", str(tmp_path / "x")])
  assert result.exit_code != 0 and "pass --force to replace them" in str(result.exception)
  assert _files(folder) == before
  assert data_used("sokoban") == {"data": {"boxoban": {"hard": "ab"}}}
  assert data_used("catch") == {}


def test_a_kill_in_the_final_evaluation_resumes_from_the_last_chunk(tmp_path, monkeypatch):
  from disco_eval.runs import seeds as seeds_module

  def killed(*args, **kwargs):
    raise SystemExit(137)  # as a kill during the final evaluation leaves the record

  with monkeypatch.context() as m:
    m.setattr(seeds_module, "run_summary", killed)
    with pytest.raises(SystemExit):
      run_sweep(_spec(tmp_path))
  run = tmp_path / "catch" / "catch" / "actor_critic" / "seed0"
  assert json.loads((run / "status.json").read_text())["status"] == "running"
  assert RunRecord(run).checkpoint_steps()[0] == STEPS
  rows = (run / "metrics.csv").read_text()
  trained = []
  # _train_chunks(ctx, group, start, records): record the iteration it would start from
  monkeypatch.setattr(seeds_module, "_train_chunks", lambda *a: trained.append(a[2]))
  [result] = run_sweep(_spec(tmp_path))
  assert result.status == "complete" and trained == [8]  # no chunk trained again
  assert (run / "metrics.csv").read_text() == rows
