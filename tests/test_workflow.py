"""A researcher's daily loop: experiment files, tracking, provenance, reproduce,
evaluate and render (the CLI run as a user runs it, on tiny real runs)."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from disco_eval import provenance
from disco_eval.config import experiment_file
from disco_eval.errors import UserError
from disco_eval.store import config_match

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, home: Path, timeout=600):
  env = dict(os.environ, DISCO_EVAL_HOME=str(home))
  return subprocess.run(
    [sys.executable, "-m", "disco_eval.cli", *map(str, args)],
    capture_output=True,
    text=True,
    env=env,
    timeout=timeout,
    cwd=ROOT,
  )


def one_line_error(res) -> str:
  assert res.returncode == 1, res.stdout + res.stderr
  lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
  assert len(lines) == 1, res.stderr
  assert lines[0].startswith("error:") and "Traceback" not in res.stderr
  return lines[0]


TINY_TOML = """
suite = "catch"
rules = ["actor_critic"]
seeds = 1
steps = 300
track = ["tensorboard"]
[set]
"train.chunk" = 8
agent.torso_hidden = [32]
"""


def test_experiment_file_round_trip(tmp_path):
  path = tmp_path / "e.toml"
  path.write_text(TINY_TOML)
  options = experiment_file.load(path)
  assert options["suite"] == "catch" and options["rule"] == ["actor_critic"]
  assert options["set_"] == ["train.chunk=8", "agent.torso_hidden=[32]"]
  again = tmp_path / "again.toml"
  again.write_text(experiment_file.dumps({**options, "out_dir": Path("r"), "tasks": "catch"}))
  assert experiment_file.load(again) == {**options, "out_dir": "r", "tasks": "catch"}
  assert experiment_file.load(ROOT / "examples" / "experiment.toml")["suite"] == "catch"


def test_experiment_file_sweep_is_the_sweep_option(tmp_path):
  path = tmp_path / "e.toml"
  path.write_text("suite = 'catch'\n[sweep]\n'optimizer.learning_rate' = [1e-3, 3e-4]\n")
  options = experiment_file.load(path)
  assert options["sweep"] == ["optimizer.learning_rate=0.001,0.0003"]
  again = tmp_path / "again.toml"
  again.write_text(experiment_file.dumps(options))
  assert experiment_file.load(again) == options


@pytest.mark.parametrize(
  "text, words",
  [
    ("suite = 'catch'\nseedz = 3\n", "unknown key 'seedz'"),
    ("seeds = 'three'\n", "'seeds' must be an integer"),
    ("[sweep]\n'optimizer.learning_rate' = 3e-4\n", "must be a list of values"),
    ("suite = \n", "not valid TOML"),
  ],
)
def test_experiment_file_refusals(tmp_path, text, words):
  path = tmp_path / "e.toml"
  path.write_text(text)
  with pytest.raises(UserError) as e:
    experiment_file.load(path)
  assert words in str(e.value) and "\n" not in str(e.value)


def test_provenance_is_recorded_not_matched(tmp_path):
  new = {"suite": "catch", "seed": 0, "runtime": {}, "provenance": provenance.current()}
  old = {"suite": "catch", "seed": 0, "provenance": {"command": ["x"], "version": "0.0.1"}}
  config_match.check_same_run(tmp_path, old, config_match.canonical_config(new))
  assert config_match.refreshed_config(new, old)["provenance"] == old["provenance"]
  old_record = {"suite": "catch", "seed": 0}  # made before provenance was recorded
  config_match.check_same_run(tmp_path, old_record, config_match.canonical_config(new))
  assert "0.0.1" in provenance.code_difference(old["provenance"])
  assert provenance.code_difference(provenance.current()) is None
  assert "no provenance" in provenance.code_difference(None)


def test_data_fingerprints_compare_what_the_run_read():
  old = {"boxoban": {"unfiltered-train": "aa", "unfiltered-test": "bb"}}
  assert provenance.data_difference(old, {"boxoban": {**old["boxoban"], "hard": "cc"}}) is None
  changed = {"boxoban": {"unfiltered-train": "aa", "unfiltered-test": "zz"}}
  assert "unfiltered-test" in provenance.data_difference(old, changed)
  assert "absent" in provenance.data_difference(old, {})


def test_unknown_key_and_missing_tracker_are_one_line(tmp_path, disco_home):
  bad = tmp_path / "bad.toml"
  bad.write_text("suite = 'catch'\nrulez = ['ppo']\n")
  line = one_line_error(cli("run", "--config", bad, "--out", tmp_path / "r", home=disco_home))
  assert "unknown key 'rulez'" in line
  assert "name a SUITE" in one_line_error(cli("plan", home=disco_home))
  if shutil.which("wandb") is None:
    try:
      import wandb  # noqa: F401
    except ImportError:
      line = one_line_error(cli("run", "catch", "--track", "wandb", home=disco_home))
      assert 'pip install "disco-eval[wandb]"' in line


def test_wandb_sink_writes_an_offline_run(tmp_path, monkeypatch):
  pytest.importorskip("wandb")
  from disco_eval.track.sinks import WandbSink

  for var in ("WANDB_MODE", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
    monkeypatch.delenv(var, raising=False)
  run = tmp_path / "out" / "catch" / "catch" / "ppo" / "seed0"
  run.mkdir(parents=True)
  sink = WandbSink(run, {"suite": "catch"})
  sink.write([("train/avg_return", 10, 0.5), ("train/loss", 10, 1.0), ("eval/score", 20, 0.7)])
  sink.close()
  assert len(list((run / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
  assert (tmp_path / "out" / ".wandb").is_dir()  # W&B's own files stay in the results folder


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
  """The scalars of the event files in `folder`, read by TensorBoard's own reader."""
  from tensorboard.backend.event_processing import event_accumulator

  acc = event_accumulator.EventAccumulator(str(folder))
  acc.Reload()
  return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _check_log(run: Path, live: bool) -> None:
  with open(run / "metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  summary = json.loads((run / "summary.json").read_text())
  got = _scalars(run / "tensorboard")
  returns = [(int(r["env_steps"]), float(r["avg_return"])) for r in rows]
  returns = [(s, v) for s, v in returns if not math.isnan(v)]
  assert [s for s, _ in got["train/avg_return"]] == [s for s, _ in returns]
  np.testing.assert_allclose([v for _, v in got["train/avg_return"]], [v for _, v in returns])
  losses = [(int(r["env_steps"]), float(r["loss"])) for r in rows]
  losses = [(s, v) for s, v in losses if not math.isnan(v)]
  assert [s for s, _ in got["train/loss"]] == [s for s, _ in losses]
  np.testing.assert_allclose([v for _, v in got["train/loss"]], [v for _, v in losses], rtol=1e-6)
  assert got["eval/score"] == [(summary["env_steps"], pytest.approx(summary["score"]))]
  assert ("perf/learner_steps_per_s" in got) == live
  assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow
def test_catch_daily_loop(tmp_path, disco_home):
  """run --config --track tensorboard, export tensorboard, evaluate, render,
  reproduce: every command on one tiny Catch run."""
  config = tmp_path / "experiment.toml"
  config.write_text(TINY_TOML)
  out = tmp_path / "results"
  res = cli("plan", "--config", config, "--seeds", "2", "--json", home=disco_home)
  assert res.returncode == 0, res.stderr
  units = json.loads(res.stdout)["units"]
  assert [(u["rule"], u["seeds"]) for u in units] == [("actor_critic", [0, 1])]
  res = cli("run", "--config", config, "--out", out, home=disco_home)
  assert res.returncode == 0, res.stdout + res.stderr
  run = out / "catch" / "catch" / "actor_critic" / "seed0"
  saved = list((out / "experiments").glob("*-catch.toml"))
  assert len(saved) == 1 and experiment_file.load(saved[0])["seeds"] == 1
  recorded = json.loads((run / "config.json").read_text())
  assert recorded["provenance"]["command"][:2] == ["disco-eval", "run"]
  assert recorded["provenance"]["version"] == provenance.__version__
  assert recorded["budget"] == 300 and recorded["overrides"]["train.chunk"] == "8"
  _check_log(run, live=True)

  res = cli("export", "tensorboard", out, home=disco_home)
  assert res.returncode == 0 and "1 run(s)" in res.stdout, res.stderr
  _check_log(run, live=False)

  summary_before = (run / "summary.json").read_bytes()
  res = cli("evaluate", run, "--episodes", "20", "--json", home=disco_home)
  assert res.returncode == 0, res.stderr
  doc = json.loads(res.stdout)
  assert doc["episodes"] == 20 and -1.0 <= doc["score"] <= 1.0
  record = json.loads((run / "evaluations" / "20-episodes.json").read_text())
  assert record["score"] == doc["score"] and record["schema_version"] == 1
  assert (run / "summary.json").read_bytes() == summary_before

  res = cli("render", run, "--out", tmp_path / "catch.gif", "--episodes", "2", home=disco_home)
  assert res.returncode == 0, res.stderr
  import imageio.v2 as imageio

  frames = imageio.mimread(tmp_path / "catch.gif")
  assert len(frames) >= 3 and frames[0].shape[-1] in (3, 4) and np.ptp(frames[0]) > 0
  line = one_line_error(cli("render", run, "--out", tmp_path / "x.avi", home=disco_home))
  assert ".gif or .mp4" in line

  res = cli("reproduce", run, "--out", tmp_path / "again", home=disco_home)
  assert res.returncode == 0, res.stdout + res.stderr
  assert "metrics.csv: identical" in res.stdout and "summary.json: identical" in res.stdout
  again = tmp_path / "again" / "catch" / "catch" / "actor_critic" / "seed0"
  assert (again / "metrics.csv").read_bytes() == (run / "metrics.csv").read_bytes()
  old, new = (json.loads((p / "summary.json").read_text()) for p in (run, again))
  old.pop("train_wall_s"), new.pop("train_wall_s")
  assert old == new

  # Another code version: refused in one line, unless --force.
  recorded["provenance"]["version"] = "0.0.1"
  (run / "config.json").write_text(json.dumps(recorded))
  line = one_line_error(cli("reproduce", run, "--out", tmp_path / "third", home=disco_home))
  assert "0.0.1" in line and "--force" in line
  assert not (tmp_path / "third").exists()


@pytest.mark.slow
def test_host_suite_evaluate_and_render(tmp_path):
  """evaluate and render on a host-stepped suite (ProcGen through envpool)."""
  from disco_eval.runs import SweepSpec, run_sweep
  from disco_eval.runs.evaluate import evaluate_run
  from disco_eval.runs.video import render_run

  agent = {"torso": "impala_cnn", "impala_channels": "[8,8,8]", "impala_hidden": "64"}
  spec = SweepSpec(
    suite="procgen",
    rules=("actor_critic",),
    seeds=(0,),
    tasks=("coinrun",),
    steps=160,
    protocol="easy-200",
    out=tmp_path,
    overrides=(
      ("train.num_envs", "8"),
      ("train.rollout_len", "10"),
      ("train.min_buffer", "2"),
      ("train.sample_entries", "2"),
      ("train.buffer_capacity", "8"),
      ("train.chunk", "2"),
      ("protocol.eval_episodes", "2"),
      *((f"agent.{k}", v) for k, v in agent.items()),
    ),
  )
  results = run_sweep(spec)
  assert [r.status for r in results] == ["complete"], [r.error for r in results]
  run = results[0].path
  doc, path, note = evaluate_run(run, 3)
  assert note is None and doc["episodes"] == 3 and path.name == "3-episodes.json"
  frames, note = render_run(run, tmp_path / "coinrun.gif", episodes=1, max_steps=30)
  assert frames == 31
  import imageio.v2 as imageio

  pictures = imageio.mimread(tmp_path / "coinrun.gif")
  assert len(pictures) == 31 and pictures[0].shape[:2] == (256, 256)
