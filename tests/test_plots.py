"""Tests for disco_eval.analysis.plots, and an end-to-end check on real Catch runs.

Real tiny Catch runs (actor_critic x 3 seeds, 600 env steps; most of their
cost is compilation) are trained once per module. Synthetic run folders,
also written once per module, cover several rules and tasks, published
baselines and a failed run.
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

from disco_eval import store
from disco_eval.analysis import collect, compare, curves, export, plot_style, plots
from disco_eval.cli import results as cli_results
from disco_eval.errors import UserError
from disco_eval.paths import PROJECT_ROOT

REPS = 200
SEEDS = (0, 1, 2)
STEPS = 600
# 600 steps round up to 11 iterations of 2 envs x 29 steps: a budget other
# than the protocol's 58,000, so the runs' protocol label carries it.
LABEL = "reference@600"  # the budget asked for (runs stop at 638, whole iterations)
TINY = (
  ("train.min_buffer", "4"),
  ("train.sample_entries", "4"),
  ("train.chunk", "8"),
  ("agent.torso_hidden", "[32]"),
)
PUBLISHED = """
[[published]]
rule = "Reference AC"
task = "catch"
protocol = "reference@600"
score = -0.5
seeds = 2
per_seed = [-0.6, -0.4]
citation = "test fixture, not a real publication"
"""
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "svg": b"<?xml"}


def make_manifests(folder: Path) -> Path:
  """The repository's manifests plus a published Catch row."""
  shutil.copytree(PROJECT_ROOT / "rules", folder / "rules")
  shutil.copytree(PROJECT_ROOT / "suites", folder / "suites")
  catch = folder / "suites" / "catch.toml"
  catch.write_text(catch.read_text() + PUBLISHED)
  return folder


@pytest.fixture(scope="module")
def catch_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
  """(results folder, manifests folder) with real tiny Catch runs."""
  from disco_eval.runs import SweepSpec, run_sweep

  base = tmp_path_factory.mktemp("catch")
  manifests = make_manifests(base / "manifests")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("DISCO_EVAL_MANIFESTS", str(manifests))
    mp.setenv("DISCO_EVAL_HOME", str(base / "home"))
    results = run_sweep(
      SweepSpec(
        suite="catch",
        rules=("actor_critic",),
        seeds=SEEDS,
        steps=STEPS,
        out=base / "results",
        overrides=TINY,
      )
    )
  assert [r.status for r in results] == ["complete"] * 3
  return base / "results", manifests


@pytest.fixture
def catch(catch_runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, disco_home: Path) -> Path:
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


def write_toy_run(
  root: Path, task: str, rule: str, seed: int, level: float, protocol: str = "std"
) -> None:
  """A complete run whose training return rises towards `level`."""
  lo, hi = TOY_NORM[task]
  config = {
    "suite": "toy",
    "task": task,
    "seed": seed,
    "protocol": {"name": protocol, "env_steps": 1000},
    "rule": {"name": rule, "kind": "test"},
    "train": {"num_envs": 2, "rollout_len": 50},
    "env_steps": 1000,
  }
  record = store.RunRecord.open(root, "toy", task, rule, seed, config)
  rng = np.random.default_rng(seed)
  record.append_metrics(
    [
      {
        "iteration": i,
        "env_steps": 100 * (i + 1),
        "episodes": 2,
        "avg_return": lo + (hi - lo) * (level * (i + 1) / 10 + rng.normal(0, 0.02)),
        "learner_steps": i,
        "loss": 0.1,
      }
      for i in range(10)
    ]
  )
  record.mark_complete(
    {
      "score": lo + (hi - lo) * level,
      "normalized_score": level,
      "protocol": protocol,
      "env_steps": 1000,
      "metric": "return",
    }
  )


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
  """(results, manifests): 3 rules x 3 tasks x 4 seeds, a published
  baseline and a failed run. Tests must not modify them (copy first)."""
  base = tmp_path_factory.mktemp("toy")
  manifests = base / "manifests"
  (manifests / "suites").mkdir(parents=True)
  shutil.copytree(PROJECT_ROOT / "rules", manifests / "rules")
  (manifests / "suites" / "toy.toml").write_text(TOY)
  root = base / "results"
  for r, rule in enumerate(("alpha", "beta", "gamma")):
    for t, task in enumerate(TOY_NORM):
      for seed in range(4):
        write_toy_run(root, task, rule, seed, 0.3 + 0.2 * r + 0.05 * t + 0.03 * seed)
  failed = store.RunRecord.open(root, "toy", "a", "alpha", 9, {"x": 1})
  failed.mark_failed("boom")
  return root, manifests


@pytest.fixture
def toy(toy_runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, disco_home: Path) -> Path:
  """The synthetic results folder, with its manifests in effect."""
  root, manifests = toy_runs
  monkeypatch.setenv("DISCO_EVAL_MANIFESTS", str(manifests))
  return root


def svg_text(path: Path) -> str:
  """The text of an SVG written with text kept as text, tags removed."""
  return " ".join(re.sub(r"<[^>]+>", " ", path.read_text()).split())


# --- every kind, every format ---------------------------------------------------------


@pytest.mark.parametrize("kind", plots.KINDS)
def test_every_kind_writes_png_and_vector_files(toy: Path, tmp_path: Path, kind: str) -> None:
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


def test_rule_colours_do_not_depend_on_the_selection(toy: Path, tmp_path: Path) -> None:
  colours = plots.rule_colors(["gamma", "alpha", "beta", "alpha"])
  assert colours == {
    "alpha": plot_style.PALETTE[0],
    "beta": plot_style.PALETTE[1],
    "gamma": plot_style.PALETTE[2],
  }
  out = tmp_path / "only_gamma.svg"
  plots.plot("curves", toy, out, rules="gamma", reps=REPS)
  svg = out.read_text().lower()
  assert plot_style.PALETTE[2].lower() in svg
  assert plot_style.PALETTE[0].lower() not in svg


def test_warnings_are_reported(toy: Path, tmp_path: Path) -> None:
  seen: list[str] = []
  plots.plot("intervals", toy, tmp_path / "x.png", reps=REPS, warn=seen.append)
  assert any(w.startswith("excluded failed run") for w in seen)


def test_bad_kind_suffix_and_folder_are_user_errors(toy: Path, tmp_path: Path) -> None:
  with pytest.raises(UserError, match="valid kinds: intervals, curves, profiles, improvement"):
    plots.plot("violin", toy, tmp_path / "x.png")
  with pytest.raises(UserError, match=r"\.png, \.pdf, \.svg"):
    plots.plot("curves", toy, tmp_path / "x.jpg")
  with pytest.raises(UserError, match="does not exist"):
    plots.plot("curves", toy, tmp_path / "missing" / "x.png")


def test_several_protocols_need_a_choice(toy: Path, tmp_path: Path) -> None:
  mixed = tmp_path / "mixed"
  shutil.copytree(toy, mixed)
  for task in TOY_NORM:
    write_toy_run(mixed, task, "alpha", 20, 0.5, protocol="other")
  with pytest.raises(UserError, match="several suites or protocols.*--protocol"):
    plots.plot("intervals", mixed, tmp_path / "x.png", reps=REPS)
  out = plots.plot("intervals", mixed, tmp_path / "x.png", reps=REPS, protocol="std")
  assert out.stat().st_size > 0


def test_improvement_needs_two_rules(toy: Path, tmp_path: Path) -> None:
  with pytest.raises(UserError, match="at least two rules"):
    plots.plot("improvement", toy, tmp_path / "x.png", rules="alpha", reps=REPS)


def test_windowed_returns_weight_by_episodes() -> None:
  steps = np.array([10.0, 20.0, 30.0, 40.0])
  episodes = np.array([1.0, 3.0, 0.0, 2.0])
  returns = np.array([1.0, 0.0, np.nan, 5.0])
  got = curves.windowed_returns(steps, episodes, returns, np.array([20.0, 30.0, 40.0]))
  np.testing.assert_allclose(got, [0.25, np.nan, 5.0])
  np.testing.assert_array_equal(
    curves.curve_grid(np.arange(1.0, 101.0), 5), [1.0, 26.0, 51.0, 75.0, 100.0]
  )


# --- real Catch runs end to end ---------------------------------------------------------


@pytest.mark.slow
def test_catch_end_to_end(catch: Path, tmp_path: Path) -> None:
  collection = collect.collect(catch)
  assert len(collection.runs) == 3 and collection.excluded == ()
  assert collection.all_rules == ("actor_critic",)

  result = compare.compare(catch, reps=REPS)
  (group,) = result.groups
  assert group.key == collect.GroupKey("catch", LABEL)
  assert group.seeds == {"actor_critic": 3}
  assert group.metric == "return"
  scores = [r.normalized_score for r in collection.runs]
  (iqm,) = [r for r in group.aggregate if r.metric == "iqm"]
  assert iqm.point == pytest.approx(float(np.mean(scores)))  # 3 scores: no trim
  assert [p.rule for p in group.published] == ["Reference AC"]
  assert {r.rule for r in group.aggregate} == {"actor_critic"}
  assert {r.rule for r in group.published_aggregate} == {"Reference AC"}
  assert group.improvement == []
  json.dumps(result.to_json(), allow_nan=False)

  df = pd.read_csv(io.StringIO(export.export_csv(catch, aggregate=True, reps=REPS)))
  metrics_rows = sum(len(store.RunRecord(r.path).read_metrics()) for r in collection.runs)
  assert (df.kind == "train").sum() == metrics_rows
  assert (df.kind == "final").sum() == 3
  assert (df.kind == "aggregate").sum() == 4
  assert (df.kind == "published").sum() == 1 + 4
  assert set(df.protocol) == {LABEL}

  for kind in ("intervals", "curves", "profiles"):
    out = plots.plot(kind, catch, tmp_path / f"catch_{kind}.png", reps=REPS)
    assert out.read_bytes().startswith(MAGIC["png"])
  with pytest.raises(UserError, match="at least two rules"):
    plots.plot("improvement", catch, tmp_path / "catch_improvement.png", reps=REPS)


@pytest.mark.slow
def test_catch_commands(catch: Path, tmp_path: Path) -> None:
  app = typer.Typer()
  cli_results.register(app)
  runner = CliRunner()
  res = runner.invoke(app, ["compare", str(catch), "--json", "--reps", str(REPS)])
  assert res.exit_code == 0, res.output
  assert json.loads(res.stdout)["groups"][0]["protocol"] == LABEL
  out = tmp_path / "catch.pdf"
  res = runner.invoke(
    app,
    [
      "plot",
      "intervals",
      str(catch),
      "--out",
      str(out),
      "--reps",
      str(REPS),
      "--rules",
      "actor_critic",
    ],
  )
  assert res.exit_code == 0, res.output
  assert out.read_bytes().startswith(MAGIC["pdf"])
  csv_out = tmp_path / "catch.csv"
  res = runner.invoke(app, ["export", "csv", str(catch), "--out", str(csv_out)])
  assert res.exit_code == 0, res.output
  assert tuple(pd.read_csv(csv_out).columns) == export.COLUMNS
