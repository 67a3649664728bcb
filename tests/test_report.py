"""Tests for disco_eval.analysis (collect, compare, render, export) and the
results commands.

Run folders with chosen scores are written directly with store.RunRecord, so
every statistic has a known answer computed with disco_eval.analysis.stats.
"""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from rich.console import Console
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from disco_eval import store
from disco_eval.analysis import collect, compare, export, render, stats
from disco_eval.cli import results as cli_results
from disco_eval.errors import UserError
from disco_eval.paths import PROJECT_ROOT

REPS = 2_000
TASKS = ("a", "b", "c")
# Normalisation of the test suite: task -> (min, max).
NORM = {"a": (0.0, 10.0), "b": (-1.0, 1.0), "c": (0.0, 100.0)}
# Known normalised scores: [seeds, tasks] per rule.
GOOD = np.array(
  [[0.9, 0.8, 0.7], [0.6, 1.0, 0.85], [0.75, 0.65, 0.95], [0.8, 0.7, 0.6], [1.1, 0.55, 0.9]]
)
BAD = np.array(
  [[0.1, 0.3, 0.2], [0.4, 0.0, 0.25], [0.2, 0.35, 0.15], [0.3, 0.1, 0.5], [0.05, 0.45, 0.3]]
)
PPO_PER_SEED = {"a": [4.0, 5.0, 6.0], "b": [-0.2, 0.0, 0.2], "c": [30.0, 40.0, 50.0]}

SUITE_TOML = """
name = "toy"
description = "a synthetic suite for report tests"
backend = "jax"
tasks = ["a", "b", "c"]
default_protocol = "std"

[protocols.std]
description = "standard"
env_steps = 1000
num_envs = 2
rollout_len = 50
metric = "return"

[protocols.long]
description = "a longer budget"
env_steps = 5000
num_envs = 2
rollout_len = 50
metric = "return"

[normalization]
a = { min = 0.0, max = 10.0 }
b = { min = -1.0, max = 1.0 }
c = { min = 0.0, max = 100.0 }
"""


def published_toml() -> str:
  """[[published]] rows: PPO on every task with per-seed scores, Human on a."""
  out = []
  for task, values in PPO_PER_SEED.items():
    out.append(f"""
[[published]]
rule = "PPO (test)"
task = "{task}"
protocol = "std"
score = {float(np.mean(values))}
seeds = 3
per_seed = {values}
citation = "Tester et al. (2020), Table 1"
""")
  out.append("""
[[published]]
rule = "Human"
task = "a"
protocol = "std"
score = 9.0
normalized_score = 0.9
citation = "Someone (2019)"
note = "read off a figure"
""")
  return "".join(out)


@pytest.fixture
def manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disco_home: Path) -> Path:
  """A manifest folder with the test suite (and published rows)."""
  folder = tmp_path / "manifests"
  (folder / "suites").mkdir(parents=True)
  shutil.copytree(PROJECT_ROOT / "rules", folder / "rules")
  (folder / "suites" / "toy.toml").write_text(SUITE_TOML + published_toml())
  monkeypatch.setenv("DISCO_EVAL_MANIFESTS", str(folder))
  return folder


def raw_score(task: str, normalized: float) -> float:
  lo, hi = NORM[task]
  return lo + normalized * (hi - lo)


def write_run(
  root: Path,
  task: str,
  rule: str,
  seed: int,
  normalized: float | None = None,
  *,
  suite: str = "toy",
  protocol: str = "std",
  env_steps: int = 1000,
  protocol_steps: int = 1000,
  status: str = "complete",
  summary: dict | None = None,
  iterations: int = 10,
) -> Path:
  """A run folder as experiment.py writes it, with chosen scores."""
  config = {
    "suite": suite,
    "task": task,
    "seed": seed,
    "protocol": {
      "name": protocol,
      "env_steps": protocol_steps,
      "num_envs": 2,
      "rollout_len": 50,
      "metric": "return",
    },
    "rule": {"name": rule, "kind": "test", "sha256": None, "source": None},
    "train": {"num_envs": 2, "rollout_len": 50, "chunk": 5, "iterations": iterations},
    "env_steps": env_steps,
  }
  record = store.RunRecord.open(root, suite, task, rule, seed, config)
  step = env_steps // iterations
  record.append_metrics(
    [
      {
        "iteration": i,
        "env_steps": (i + 1) * step,
        "episodes": i % 3,
        "avg_return": raw_score(task, 0.1 * i) if i % 3 else float("nan"),
        "learner_steps": i,
        "loss": 0.5,
      }
      for i in range(iterations)
    ]
  )
  if status == "complete":
    score = raw_score(task, normalized) if normalized is not None else 0.0
    doc = {
      "suite": suite,
      "task": task,
      "rule": rule,
      "seed": seed,
      "protocol": protocol,
      "env_steps": env_steps,
      "score": score,
      "normalized_score": normalized,
      "metric": "return",
    }
    doc.update(summary or {})
    record.mark_complete(doc, env_steps=env_steps)
  elif status == "failed":
    if summary is not None:  # a stray summary must never be averaged
      store.write_json_atomic(record.path / store.SUMMARY_FILE, summary)
    record.mark_failed(
      "RuntimeError: loss diverged\nTraceback (most recent call last): ...",
      env_steps=env_steps // 2,
    )
  elif status == "running":
    record.mark_running(env_steps // 2)
  return record.path


def write_matrix(root: Path, rule: str, matrix: np.ndarray, first_seed: int = 0, **kwargs) -> None:
  """One run per entry of a [seeds, tasks] matrix of normalised scores."""
  for seed, row in enumerate(matrix, start=first_seed):
    for task, value in zip(TASKS, row):
      write_run(root, task, rule, seed, float(value), **kwargs)


@pytest.fixture
def results(tmp_path: Path, manifests: Path) -> Path:
  """2 rules x 3 tasks x 5 seeds with the GOOD and BAD matrices."""
  root = tmp_path / "results"
  write_matrix(root, "good", GOOD)
  write_matrix(root, "bad", BAD)
  return root


def rows_by(result: compare.CompareResult, **where) -> list:
  group = result.groups[0]
  return [r for r in group.aggregate if all(getattr(r, k) == v for k, v in where.items())]


# --- collect ----------------------------------------------------------------------


def test_collect_groups_complete_runs(results: Path) -> None:
  collection = collect.collect(results)
  assert len(collection.runs) == 30
  assert collection.excluded == ()
  assert collection.all_rules == ("bad", "good")
  table = collection.table()
  key = collect.GroupKey("toy", "std")
  assert list(table) == [key]
  assert table[key]["b"]["good"][1].normalized_score == pytest.approx(1.0)
  assert table[key]["c"]["bad"][4].score == pytest.approx(30.0)


def test_empty_results_folder_is_a_user_error(tmp_path: Path) -> None:
  (tmp_path / "empty").mkdir()
  with pytest.raises(
    UserError,
    match=r"no runs found under .*empty; run "
    r"`disco-eval run SUITE` first",
  ):
    compare.compare(tmp_path / "empty")
  with pytest.raises(UserError, match="no runs found"):
    compare.compare(tmp_path / "missing")


def test_filters_that_match_nothing_are_user_errors(results: Path) -> None:
  with pytest.raises(UserError, match="no runs of rule 'typo'.*rules found: bad, good"):
    collect.collect(results, rules="good,typo")
  with pytest.raises(UserError, match="no runs of suite 'nope'"):
    collect.collect(results, suite="nope")
  with pytest.raises(UserError, match="no runs with protocol 'x'.*std"):
    collect.collect(results, protocol="x")
  with pytest.raises(UserError, match="unknown metric 'iqr'.*iqm"):
    compare.compare(results, metrics="iqm,iqr")


def test_rule_filter_keeps_the_order_given(results: Path) -> None:
  result = compare.compare(results, rules="good,bad", reps=REPS)
  assert result.groups[0].rules == ("good", "bad")
  only = compare.compare(results, rules=["bad"], reps=REPS)
  assert only.groups[0].rules == ("bad",)
  assert only.groups[0].improvement == []


# --- known answers ------------------------------------------------------------------


def test_aggregate_points_and_intervals_match_stats(results: Path) -> None:
  result = compare.compare(results, reps=REPS, seed=3)
  group = result.groups[0]
  assert group.aggregate_tasks == TASKS
  assert group.seeds == {"bad": 5, "good": 5}
  np.testing.assert_allclose(group.matrices["good"], GOOD)
  np.testing.assert_allclose(group.matrices["bad"], BAD)
  expected = stats.interval_estimates({"good": GOOD, "bad": BAD}, reps=REPS, seed=3)
  for rule, matrix in (("good", GOOD), ("bad", BAD)):
    points = {
      "iqm": stats.iqm(matrix),
      "median": stats.median(matrix),
      "mean": stats.mean(matrix),
      "og": stats.optimality_gap(matrix),
    }
    for metric, point in points.items():
      (row,) = rows_by(result, rule=rule, metric=metric)
      assert row.point == pytest.approx(float(point), abs=1e-12)
      assert (row.lo, row.hi) == pytest.approx(expected[rule][metric][1:])
      assert row.seeds == 5 and not row.published


def test_probability_of_improvement_for_each_ordered_pair(results: Path) -> None:
  result = compare.compare(results, reps=REPS, seed=1)
  pairs = {(r.x, r.y): r for r in result.groups[0].improvement}
  assert set(pairs) == {("good", "bad"), ("bad", "good")}
  for x, y, mx, my in (("good", "bad", GOOD, BAD), ("bad", "good", BAD, GOOD)):
    want = stats.probability_of_improvement_interval(mx, my, REPS, seed=1)
    got = pairs[(x, y)]
    assert (got.point, got.lo, got.hi) == pytest.approx(tuple(want))
  assert pairs[("good", "bad")].point == pytest.approx(1.0)


def test_per_task_rows_use_student_t_intervals(results: Path) -> None:
  result = compare.compare(results, reps=REPS)
  group = result.groups[0]
  row = next(r for r in group.per_task if r.task == "b" and r.rule == "good")
  assert row.seeds == (0, 1, 2, 3, 4)
  values = GOOD[:, 1]
  lo, hi = scipy_stats.t.interval(
    0.95, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values)
  )
  assert row.normalized == pytest.approx((values.mean(), lo, hi))
  raw = np.array([raw_score("b", v) for v in values])
  assert row.score.mean == pytest.approx(raw.mean())
  assert row.score.hi - row.score.lo == pytest.approx(2 * (hi - lo))


def test_t_interval_edge_cases() -> None:
  one = stats.t_interval([0.5])
  assert one.mean == 0.5 and math.isnan(one.lo) and math.isnan(one.hi)
  assert stats.t_interval([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2, 0.2))


# --- published baselines ------------------------------------------------------------


def test_published_rows_are_marked_and_never_bootstrapped(results: Path) -> None:
  result = compare.compare(results, reps=REPS)
  group = result.groups[0]
  names = {(p.rule, p.task) for p in group.published}
  assert names == {("PPO (test)", "a"), ("PPO (test)", "b"), ("PPO (test)", "c"), ("Human", "a")}
  human = next(p for p in group.published if p.rule == "Human")
  assert human.normalized_score == 0.9 and human.note == "read off a figure"
  ppo_a = next(p for p in group.published if p.rule == "PPO (test)" and p.task == "a")
  assert ppo_a.normalized_score == pytest.approx(0.5)  # from the manifest
  # Runs' statistics are those of the runs alone.
  assert set(group.matrices) == {"good", "bad"}
  assert {r.rule for r in group.aggregate} == {"good", "bad"}
  assert {r.x for r in group.improvement} == {"good", "bad"}
  # The published aggregate is separate, marked, and from per-seed scores.
  ppo = np.array(
    [
      [(v - NORM[t][0]) / (NORM[t][1] - NORM[t][0]) for t, v in zip(TASKS, col)]
      for col in zip(*PPO_PER_SEED.values())
    ]
  )
  want = stats.interval_estimates({"p": ppo}, reps=REPS, seed=0)["p"]
  assert {r.rule for r in group.published_aggregate} == {"PPO (test)"}
  for row in group.published_aggregate:
    assert row.published and row.seeds == 3
    assert (row.point, row.lo, row.hi) == pytest.approx(tuple(want[row.metric]))
  doc = result.to_json()["groups"][0]
  assert all(p["published"] for p in doc["published"])
  assert {r["rule"] for r in doc["aggregate"]} == {"good", "bad"}


def test_published_rows_do_not_change_the_runs_statistics(results: Path, manifests: Path) -> None:
  with_published = compare.compare(results, reps=REPS).groups[0].aggregate
  (manifests / "suites" / "toy.toml").write_text(SUITE_TOML)
  without = compare.compare(results, reps=REPS).groups[0]
  assert without.published == [] and without.published_aggregate == []
  assert without.aggregate == with_published


def test_malformed_published_entries_are_warned_about(results: Path, manifests: Path) -> None:
  (manifests / "suites" / "toy.toml").write_text(
    SUITE_TOML + '\n[[published]]\nrule = "X"\ntask = "a"\nprotocol = "std"\n'
  )
  group = compare.compare(results, reps=REPS).groups[0]
  assert group.published == []
  assert any("published entry #1 lacks score, citation" in w for w in group.warnings)


# --- warnings and exclusions ----------------------------------------------------------


def test_excluded_runs_are_listed_and_never_averaged(results: Path) -> None:
  failed = write_run(
    results, "a", "good", 7, status="failed", summary={"score": 1e6, "normalized_score": 1e5}
  )
  running = write_run(results, "b", "good", 8, status="running")
  nan = write_run(results, "c", "bad", 9, float("nan"))
  corrupt = results / "toy" / "a" / "bad" / "seed11"
  corrupt.mkdir(parents=True)
  (corrupt / "config.json").write_text("{not json")
  result = compare.compare(results, reps=REPS)
  reasons = {e.path: (e.reason, e.detail) for e in result.excluded}
  assert reasons[failed] == ("failed", "RuntimeError: loss diverged")
  assert reasons[running][0] == "incomplete"
  assert "running at 500 env steps" in reasons[running][1]
  assert reasons[nan][0] == "nan"
  assert reasons[corrupt][0] == "unreadable"  # issue 13: bad JSON is its own reason
  for path in (failed, running, nan, corrupt):
    assert any(str(path) in w for w in result.warnings)
  group = result.groups[0]
  np.testing.assert_allclose(group.matrices["good"], GOOD)
  np.testing.assert_allclose(group.matrices["bad"], BAD)
  assert group.seeds == {"bad": 5, "good": 5}
  text = render_text(result)
  assert "Excluded runs" in text and "failed" in text and "unreadable" in text


def test_all_runs_excluded_is_a_user_error(tmp_path: Path, manifests: Path) -> None:
  write_run(tmp_path / "r", "a", "good", 0, status="failed")
  with pytest.raises(UserError, match="no complete runs to compare.*1 failed"):
    compare.compare(tmp_path / "r", reps=REPS)


def test_few_and_unequal_seeds_are_warned_about(tmp_path: Path, manifests: Path) -> None:
  root = tmp_path / "results"
  write_matrix(root, "good", GOOD)
  write_matrix(root, "bad", BAD[:2])
  result = compare.compare(root, reps=REPS)
  group = result.groups[0]
  assert group.seeds == {"bad": 2, "good": 5}
  warnings = " | ".join(group.warnings)
  assert "rule bad: fewer than 3 seeds (2 on a, b, c)" in warnings
  assert "rule good: fewer than 3" not in warnings
  assert "unequal numbers of seeds between rules" in warnings
  expected = stats.interval_estimates({"bad": BAD[:2]}, reps=REPS)["bad"]
  (iqm,) = rows_by(result, rule="bad", metric="iqm")
  assert (iqm.point, iqm.lo, iqm.hi) == pytest.approx(tuple(expected["iqm"]))
  assert "2 seeds" in render_text(result) or "bad 2" in render_text(result)


def test_missing_seed_on_one_task_drops_that_seed_from_the_aggregate(
  tmp_path: Path, manifests: Path
) -> None:
  root = tmp_path / "results"
  write_matrix(root, "good", GOOD)
  write_matrix(root, "bad", BAD)
  shutil.rmtree(root / "toy" / "c" / "bad" / "seed4")
  group = compare.compare(root, reps=REPS).groups[0]
  np.testing.assert_allclose(group.matrices["bad"], BAD[:4])
  assert group.matrix_seeds["bad"] == (0, 1, 2, 3)
  assert any("a/seed4, b/seed4" in w for w in group.warnings)
  per_task = {(r.task, r.rule): len(r.seeds) for r in group.per_task}
  assert per_task[("a", "bad")] == 5 and per_task[("c", "bad")] == 4


def test_tasks_not_shared_by_all_rules_leave_the_aggregate(tmp_path: Path, manifests: Path) -> None:
  root = tmp_path / "results"
  write_matrix(root, "good", GOOD)
  for seed, row in enumerate(BAD):
    for task, value in zip(TASKS[:2], row[:2]):
      write_run(root, task, "bad", seed, float(value))
  group = compare.compare(root, reps=REPS).groups[0]
  assert group.aggregate_tasks == ("a", "b")
  np.testing.assert_allclose(group.matrices["good"], GOOD[:, :2])
  assert any("c (no runs of bad)" in w for w in group.warnings)


def test_protocols_are_never_mixed(results: Path) -> None:
  # One folder per (suite, task, rule, seed): other protocols use other seeds.
  write_matrix(
    results,
    "good",
    GOOD[:3] * 0.5,
    first_seed=10,
    protocol="long",
    env_steps=5000,
    protocol_steps=5000,
  )
  write_matrix(results, "good", GOOD[:3] * 0.1, first_seed=20, env_steps=300)
  result = compare.compare(results, reps=REPS)
  labels = [g.key.protocol for g in result.groups]
  assert labels == ["long", "std", "std@300"]
  by_label = {g.key.protocol: g for g in result.groups}
  np.testing.assert_allclose(by_label["std"].matrices["good"], GOOD)
  np.testing.assert_allclose(by_label["long"].matrices["good"], GOOD[:3] * 0.5)
  np.testing.assert_allclose(by_label["std@300"].matrices["good"], GOOD[:3] * 0.1)
  assert any("several protocols found" in w and "never aggregated" in w for w in result.warnings)
  # Published rows are shown beside off-budget runs of the protocol, marked
  # not comparable (and warned about); they never enter its aggregates.
  off, on = by_label["std@300"], by_label["std"]
  assert [p.rule for p in off.published] == [p.rule for p in on.published] != []
  assert all(p.comparable for p in on.published) and off.comparable_published == []
  assert {p.reason for p in off.published} == {"published at 1k in return; runs: 300 return"}
  assert off.published_aggregate == [] and on.published_aggregate != []
  assert any("not comparable" in w and "'std@300'" in w for w in by_label["std@300"].warnings)
  assert not any("not comparable" in w for w in by_label["std"].warnings)
  only = compare.compare(results, protocol="std@300", reps=REPS)
  assert [g.key.protocol for g in only.groups] == ["std@300"]
  assert not any("several protocols" in w for w in only.warnings)
  by_name = compare.compare(results, protocol="std", reps=REPS)
  assert [g.key.protocol for g in by_name.groups] == ["std", "std@300"]


def test_missing_suite_manifest_is_a_warning(tmp_path: Path, manifests: Path) -> None:
  root = tmp_path / "results"
  write_matrix(root, "good", GOOD, suite="other")
  result = compare.compare(root, reps=REPS)
  assert result.groups[0].published == []
  assert any("suite manifest of 'other' not loaded" in w for w in result.warnings)


# --- output -------------------------------------------------------------------------


def render_text(result: compare.CompareResult) -> str:
  console = Console(record=True, width=200, file=io.StringIO())
  render.render(result, console)
  return console.export_text()


def test_json_is_strict_and_complete(tmp_path: Path, manifests: Path) -> None:
  root = tmp_path / "results"
  write_matrix(root, "good", GOOD[:1])  # one seed: per-task CIs are NaN
  write_matrix(root, "bad", BAD)
  doc = compare.compare(root, reps=REPS).to_json()
  text = json.dumps(doc, allow_nan=False)
  back = json.loads(text)
  assert back["settings"]["reps"] == REPS
  assert "Student-t" in back["settings"]["per_task_ci"]
  group = back["groups"][0]
  assert group["protocol"] == "std" and group["suite"] == "toy"
  row = next(r for r in group["per_task"] if r["rule"] == "good")
  assert row["normalized_score"]["lo"] is None
  assert row["num_seeds"] == 1
  assert group["matrices"]["bad"]["seeds"] == [0, 1, 2, 3, 4]
  assert len(group["probability_of_improvement"]) == 2


def test_render_names_seeds_method_protocol_and_metric(results: Path) -> None:
  text = render_text(compare.compare(results, reps=REPS, seed=7))
  assert "95% stratified bootstrap CI, 2,000 reps, seed 7" in text
  assert "5 seeds per rule" in text
  assert "protocol std" in text and "metric: normalised return" in text
  assert "Student-t" in text
  assert "PPO (test) (published)" in text and "Human (published)" in text
  assert "Probability of improvement" in text and "Optimality gap" in text


def test_rich_markup_in_names_is_shown_literally(tmp_path: Path, manifests: Path) -> None:
  root = tmp_path / "results"
  write_matrix(root, "[bold]x", GOOD)
  assert "[bold]x" in render_text(compare.compare(root, reps=REPS))


# --- export ---------------------------------------------------------------------------


def test_export_csv_loads_with_documented_columns(results: Path, tmp_path: Path) -> None:
  out = tmp_path / "runs.csv"
  text = export.export_csv(results, out=out, aggregate=True, reps=REPS)
  assert out.read_text() == text
  assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
  df = pd.read_csv(out)
  assert tuple(df.columns) == export.COLUMNS
  for column in export.COLUMNS:  # every column is documented
    assert f"`{column}`" in export.__doc__
  counts = df["kind"].value_counts().to_dict()
  assert counts["train"] == 30 * 10
  assert counts["final"] == 30
  assert counts["aggregate"] == 2 * 4
  assert counts["published"] == 4 + 4  # per-task rows + PPO's aggregates
  final = df[(df.kind == "final") & (df.rule == "good") & (df.task == "b")]
  np.testing.assert_allclose(final.sort_values("seed").normalized_score, GOOD[:, 1])
  agg = df[(df.kind == "aggregate") & (df.rule == "good") & (df.metric == "iqm")]
  assert agg.task.tolist() == ["*"] and agg.seed.isna().all()
  want = stats.interval_estimates({"good": GOOD}, reps=REPS)["good"]["iqm"]
  assert (agg.normalized_score.item(), agg.ci_low.item(), agg.ci_high.item()) == pytest.approx(
    tuple(want)
  )
  train = df[df.kind == "train"]
  assert train.score.isna().sum() == 30 * 4  # iterations without episodes
  assert train.normalized_score.dropna().between(-1e-9, 1.0).all()
  published = df[(df.kind == "published") & (df.task == "a")]
  assert set(published.rule) == {"PPO (test)", "Human"}
  assert published.citation.notna().all()


def test_export_without_aggregate_and_with_filters(results: Path) -> None:
  df = pd.read_csv(io.StringIO(export.export_csv(results, rules="bad")))
  assert set(df.kind) == {"train", "final", "published"}
  assert set(df[df.kind != "published"].rule) == {"bad"}
  assert len(df) == 15 * 10 + 15 + 4


def test_export_to_a_missing_folder_is_a_user_error(results: Path, tmp_path: Path) -> None:
  with pytest.raises(UserError, match="does not exist"):
    export.export_csv(results, out=tmp_path / "nope" / "x.csv")


# --- command line -----------------------------------------------------------------------


def invoke(*args: str):
  """Runs the results commands; a UserError becomes exit 1 and 'error: ...'
  on stderr, as the main CLI does."""
  app = typer.Typer()
  cli_results.register(app)
  result = CliRunner().invoke(app, [str(a) for a in args])
  if isinstance(result.exception, UserError):
    return 1, "", f"error: {result.exception}"
  return result.exit_code, result.stdout, result.stderr


def test_cli_compare_json_prints_only_json(results: Path) -> None:
  write_run(results, "a", "good", 9, status="failed")
  code, out, err = invoke(
    "compare", results, "--json", "--reps", REPS, "--metrics", "iqm,og", "--rules", "good,bad"
  )
  assert code == 0
  doc = json.loads(out)
  assert doc["settings"]["metrics"] == ["iqm", "og"]
  assert doc["groups"][0]["rules"] == ["good", "bad"]
  assert doc["excluded"][0]["reason"] == "failed"


def test_cli_compare_table_and_errors(results: Path, tmp_path: Path) -> None:
  code, out, _ = invoke("compare", results, "--reps", REPS, "--seed", 4)
  assert code == 0 and "stratified bootstrap CI, 2,000 reps, seed 4" in out
  code, _, err = invoke("compare", tmp_path / "empty")
  assert code == 1 and err.startswith("error: no runs found under")
  code, _, err = invoke("compare", results, "--metrics", "bogus")
  assert code == 1 and "unknown metric" in err


def test_cli_export_csv(results: Path, tmp_path: Path) -> None:
  code, out, _ = invoke("export", "csv", results, "--aggregate", "--reps", REPS, "--suite", "toy")
  assert code == 0
  df = pd.read_csv(io.StringIO(out))
  assert "aggregate" in set(df.kind)
  target = tmp_path / "out.csv"
  code, out, err = invoke("export", "csv", results, "--out", target)
  assert code == 0 and out == "" and target.is_file()


def test_cli_plot_rejects_unknown_kind(results: Path, tmp_path: Path) -> None:
  code, _, err = invoke("plot", "pie", results, "--out", tmp_path / "x.png")
  assert code == 1
  assert "valid kinds: intervals, curves, profiles, improvement" in err


# --- diverged runs (issue 13) -----------------------------------------------------------


def _diverge(path: Path, iteration: int = 4) -> None:
  """Turn the complete run at `path` into a diverged one (as a training loop
  that saw a non-finite loss at `iteration` records it)."""
  record = store.RunRecord(path)
  summary = record.summary
  with record.lock():
    record.note_divergence(iteration, 100 * (iteration + 1))
    record.mark_complete(summary, env_steps=1000)


def test_diverged_runs_are_excluded_by_default_and_said_so(results: Path) -> None:
  extra = write_run(results, "a", "good", 9, 50.0)  # an absurd score, if counted
  _diverge(extra)
  result = compare.compare(results, reps=REPS)
  [excluded] = result.excluded
  assert (excluded.path, excluded.reason) == (extra, "diverged")
  assert "iteration 4 (500 env steps)" in excluded.detail
  np.testing.assert_allclose(result.groups[0].matrices["good"], GOOD)
  text = " ".join(render_text(result).split())  # captions wrap
  assert "1 diverged run excluded (use --include-diverged to count it at the evaluated" in text
  assert "diverged runs excluded (1)" in text  # beside the aggregate
  assert result.to_json()["settings"]["diverged_runs"] == "excluded"


def test_include_diverged_counts_them_at_the_evaluated_score(results: Path) -> None:
  extra = write_run(results, "a", "good", 9, 50.0)
  _diverge(extra)
  result = compare.compare(results, reps=REPS, include_diverged=True)
  assert result.excluded == []
  assert result.groups[0].seeds["good"] == 5  # task a has 6 seeds; the matrix keeps 5
  doc = result.to_json()["settings"]
  assert doc["diverged_runs"] == "counted at evaluated score" and doc["diverged_counted"] == 1
  text = " ".join(render_text(result).split())  # captions wrap
  assert "diverged runs counted at the evaluated score (1)" in text
  df = pd.read_csv(io.StringIO(export.export_csv(results, include_diverged=True)))
  final = df[(df.kind == "final") & (df.rule == "good") & (df.task == "a")]
  assert dict(zip(final.seed, final.diverged))[9] == 1 and final.diverged.sum() == 1
  warnings: list[str] = []
  df = pd.read_csv(io.StringIO(export.export_csv(results, warn=warnings.append)))
  assert 9 not in set(df[df.kind == "final"].seed)
  assert any(w.startswith("1 diverged run excluded") for w in warnings)


def test_cli_include_diverged_option(results: Path) -> None:
  _diverge(write_run(results, "a", "good", 9, 50.0))
  code, out, _ = invoke("compare", results, "--json", "--reps", REPS)
  assert code == 0 and [e["reason"] for e in json.loads(out)["excluded"]] == ["diverged"]
  code, out, _ = invoke("compare", results, "--json", "--reps", REPS, "--include-diverged")
  assert code == 0 and json.loads(out)["settings"]["diverged_counted"] == 1
  code, out, _ = invoke("export", "csv", results, "--include-diverged")
  assert code == 0 and pd.read_csv(io.StringIO(out)).diverged.sum() > 0
