"""Tests for disco_eval.plots, and an end-to-end check on real Catch runs.

Real tiny Catch runs (two rules x 3 seeds, 1,500 env steps) are trained once
per module; the second rule is actor_critic with another learning rate, from
a temporary rules manifest. Synthetic run folders cover several tasks and
published baselines.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from disco_eval import cli_results, export, plots, report, store
from disco_eval.errors import UserError
from disco_eval.paths import PROJECT_ROOT

REPS = 200
RULES = ("actor_critic", "actor_critic_fast")
SEEDS = (0, 1, 2)
TINY = (("train.min_buffer", "4"), ("train.sample_entries", "4"),
        ("train.chunk", "8"), ("agent.torso_hidden", "[32]"))
PUBLISHED = """
[[published]]
rule = "Reference AC"
task = "catch"
protocol = "reference@1508"
score = -0.5
seeds = 2
per_seed = [-0.6, -0.4]
citation = "test fixture, not a real publication"
"""
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "svg": b"<?xml"}


def make_manifests(folder: Path) -> Path:
  """Repo manifests plus actor_critic_fast and a published Catch row."""
  shutil.copytree(PROJECT_ROOT / "rules", folder / "rules")
  shutil.copytree(PROJECT_ROOT / "suites", folder / "suites")
  text = (PROJECT_ROOT / "rules" / "actor_critic.toml").read_text()
  text = text.replace('name = "actor_critic"', 'name = "actor_critic_fast"')
  text = text.replace("learning_rate = 5e-4", "learning_rate = 2e-3")
  assert 'name = "actor_critic_fast"' in text and "2e-3" in text
  (folder / "rules" / "actor_critic_fast.toml").write_text(text)
  catch = folder / "suites" / "catch.toml"
  catch.write_text(catch.read_text() + PUBLISHED)
  return folder


@pytest.fixture(scope="module")
def catch_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
  """(results folder, manifests folder) with real tiny Catch runs."""
  from disco_eval.experiment import SweepSpec, run_sweep
  base = tmp_path_factory.mktemp("catch")
  manifests = make_manifests(base / "manifests")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("DISCO_EVAL_MANIFESTS", str(manifests))
    mp.setenv("DISCO_EVAL_HOME", str(base / "home"))
    results = run_sweep(SweepSpec(suite="catch", rules=RULES, seeds=SEEDS,
                                  steps=1500, out=base / "results",
                                  overrides=TINY))
  assert [r.status for r in results] == ["complete"] * 6
  return base / "results", manifests


@pytest.fixture
def catch(catch_runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
          disco_home: Path) -> Path:
  """The Catch results folder, with its manifests in effect."""
  results, manifests = catch_runs
  monkeypatch.setenv("DISCO_EVAL_MANIFESTS", str(manifests))
  return results


# --- synthetic multi-task results ------------------------------------------------------

TOY = """
name = "toy"
description = "synthetic"
backend = "jax"
tasks = ["a", "b", "c"]
default_protocol = "std"

[protocols.std]
description = "standard"
env_steps = 1000
num_envs = 2
rollout_len = 50
metric = "return"

[normalization]
a = { min = 0.0, max = 1.0 }
b = { min = 0.0, max = 10.0 }
c = { min = -1.0, max = 1.0 }

[[published]]
rule = "Baseline"
task = "a"
protocol = "std"
score = 0.5
citation = "test"
[[published]]
rule = "Baseline"
task = "b"
protocol = "std"
score = 5.0
citation = "test"
[[published]]
rule = "Baseline"
task = "c"
protocol = "std"
score = 0.0
citation = "test"
"""
TOY_NORM = {"a": (0.0, 1.0), "b": (0.0, 10.0), "c": (-1.0, 1.0)}


def write_toy_run(root: Path, task: str, rule: str, seed: int, level: float,
                  protocol: str = "std") -> None:
  """A complete run whose training return rises towards `level`."""
  lo, hi = TOY_NORM[task]
  config = {"suite": "toy", "task": task, "seed": seed,
            "protocol": {"name": protocol, "env_steps": 1000},
            "rule": {"name": rule, "kind": "test"},
            "train": {"num_envs": 2, "rollout_len": 50}, "env_steps": 1000}
  record = store.RunRecord.open(root, "toy", task, rule, seed, config)
  rng = np.random.default_rng(seed)
  record.append_metrics([
      {"iteration": i, "env_steps": 100 * (i + 1), "episodes": 2,
       "avg_return": lo + (hi - lo) * (level * (i + 1) / 10
                                        + rng.normal(0, 0.02)),
       "learner_steps": i, "loss": 0.1} for i in range(10)])
  record.mark_complete({"score": lo + (hi - lo) * level,
                        "normalized_score": level, "protocol": protocol,
                        "env_steps": 1000, "metric": "return"})


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        disco_home: Path) -> Path:
  """3 rules x 3 tasks x 4 seeds, a published baseline and a failed run."""
  manifests = tmp_path / "manifests"
  (manifests / "suites").mkdir(parents=True)
  shutil.copytree(PROJECT_ROOT / "rules", manifests / "rules")
  (manifests / "suites" / "toy.toml").write_text(TOY)
  monkeypatch.setenv("DISCO_EVAL_MANIFESTS", str(manifests))
  root = tmp_path / "results"
  for r, rule in enumerate(("alpha", "beta", "gamma")):
    for t, task in enumerate(TOY_NORM):
      for seed in range(4):
        write_toy_run(root, task, rule, seed, 0.3 + 0.2 * r + 0.05 * t
                      + 0.03 * seed)
  failed = store.RunRecord.open(root, "toy", "a", "alpha", 9, {"x": 1})
  failed.mark_failed("boom")
  return root


def svg_text(path: Path) -> str:
  """The text of an SVG written with text kept as text, tags removed."""
  return " ".join(re.sub(r"<[^>]+>", " ", path.read_text()).split())


# --- every kind, every format ---------------------------------------------------------


@pytest.mark.parametrize("kind", plots.KINDS)
def test_every_kind_writes_png_and_vector_files(toy: Path, tmp_path: Path,
                                                kind: str) -> None:
  for fmt in plots.FORMATS:
    out = tmp_path / f"{kind}.{fmt}"
    assert plots.plot(kind, toy, out, reps=REPS) == out
    data = out.read_bytes()
    assert len(data) > 2000 and data.startswith(MAGIC[fmt])
  svg = svg_text(tmp_path / f"{kind}.svg")
  assert "protocol std" in svg  # axis labels name the protocol (text kept)
  if kind in ("intervals", "curves", "profiles"):
    assert "Baseline" in svg and "published" in svg
  assert "excluded runs (not shown): 1 failed" in svg
  assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_rule_colours_do_not_depend_on_the_selection(toy: Path,
                                                     tmp_path: Path) -> None:
  colours = plots.rule_colors(["gamma", "alpha", "beta", "alpha"])
  assert colours == {"alpha": plots.PALETTE[0], "beta": plots.PALETTE[1],
                     "gamma": plots.PALETTE[2]}
  out = tmp_path / "only_gamma.svg"
  plots.plot("curves", toy, out, rules="gamma", reps=REPS)
  svg = out.read_text().lower()
  assert plots.PALETTE[2].lower() in svg
  assert plots.PALETTE[0].lower() not in svg


def test_warnings_are_reported(toy: Path, tmp_path: Path) -> None:
  seen: list[str] = []
  plots.plot("intervals", toy, tmp_path / "x.png", reps=REPS, warn=seen.append)
  assert any(w.startswith("excluded failed run") for w in seen)


def test_bad_kind_suffix_and_folder_are_user_errors(toy: Path,
                                                    tmp_path: Path) -> None:
  with pytest.raises(UserError, match="valid kinds: intervals, curves, "
                     "profiles, improvement"):
    plots.plot("violin", toy, tmp_path / "x.png")
  with pytest.raises(UserError, match=r"\.png, \.pdf, \.svg"):
    plots.plot("curves", toy, tmp_path / "x.jpg")
  with pytest.raises(UserError, match="does not exist"):
    plots.plot("curves", toy, tmp_path / "missing" / "x.png")


def test_several_protocols_need_a_choice(toy: Path, tmp_path: Path) -> None:
  for task in TOY_NORM:
    write_toy_run(toy, task, "alpha", 20, 0.5, protocol="other")
  with pytest.raises(UserError, match="several suites or protocols.*--protocol"):
    plots.plot("intervals", toy, tmp_path / "x.png", reps=REPS)
  out = plots.plot("intervals", toy, tmp_path / "x.png", reps=REPS,
                   protocol="std")
  assert out.stat().st_size > 0


def test_improvement_needs_two_rules(toy: Path, tmp_path: Path) -> None:
  with pytest.raises(UserError, match="at least two rules"):
    plots.plot("improvement", toy, tmp_path / "x.png", rules="alpha",
               reps=REPS)


def test_windowed_returns_weight_by_episodes() -> None:
  steps = np.array([10.0, 20.0, 30.0, 40.0])
  episodes = np.array([1.0, 3.0, 0.0, 2.0])
  returns = np.array([1.0, 0.0, np.nan, 5.0])
  got = plots.windowed_returns(steps, episodes, returns, np.array([20.0, 30.0,
                                                                   40.0]))
  np.testing.assert_allclose(got, [0.25, np.nan, 5.0])
  np.testing.assert_array_equal(plots.curve_grid(np.arange(1.0, 101.0), 5),
                                [1.0, 26.0, 51.0, 75.0, 100.0])


# --- real Catch runs end to end ---------------------------------------------------------


def test_catch_end_to_end(catch: Path, tmp_path: Path) -> None:
  collection = report.collect(catch)
  assert len(collection.runs) == 6 and collection.excluded == ()
  assert collection.all_rules == RULES

  result = report.compare(catch, reps=REPS)
  (group,) = result.groups
  assert group.key == report.GroupKey("catch", "reference@1508")
  assert group.seeds == {"actor_critic": 3, "actor_critic_fast": 3}
  assert group.metric == "return"
  assert [p.rule for p in group.published] == ["Reference AC"]
  assert {r.rule for r in group.aggregate} == set(RULES)
  assert {r.rule for r in group.published_aggregate} == {"Reference AC"}
  assert len(group.improvement) == 2
  json.dumps(result.to_json(), allow_nan=False)

  df = pd.read_csv(io.StringIO(export.export_csv(catch, aggregate=True,
                                                 reps=REPS)))
  metrics_rows = sum(len(store.RunRecord(r.path).read_metrics())
                     for r in collection.runs)
  assert (df.kind == "train").sum() == metrics_rows
  assert (df.kind == "final").sum() == 6
  assert (df.kind == "aggregate").sum() == 2 * 4
  assert set(df.protocol) == {"reference@1508"}

  for kind in plots.KINDS:
    out = plots.plot(kind, catch, tmp_path / f"catch_{kind}.png", reps=REPS)
    assert out.read_bytes().startswith(MAGIC["png"])


def test_catch_commands(catch: Path, tmp_path: Path) -> None:
  app = typer.Typer()
  cli_results.register(app)
  runner = CliRunner()
  res = runner.invoke(app, ["compare", str(catch), "--json", "--reps",
                            str(REPS)])
  assert res.exit_code == 0, res.output
  assert json.loads(res.stdout)["groups"][0]["protocol"] == "reference@1508"
  out = tmp_path / "catch.pdf"
  res = runner.invoke(app, ["plot", "intervals", str(catch), "--out", str(out),
                            "--reps", str(REPS), "--rules",
                            "actor_critic_fast,actor_critic"])
  assert res.exit_code == 0, res.output
  assert out.read_bytes().startswith(MAGIC["pdf"])
  csv_out = tmp_path / "catch.csv"
  res = runner.invoke(app, ["export", "csv", str(catch), "--out", str(csv_out)])
  assert res.exit_code == 0, res.output
  assert tuple(pd.read_csv(csv_out).columns) == export.COLUMNS
