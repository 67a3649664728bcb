"""Honest labels in every report: held-out suites and rule kinds, published rows
of another metric or budget marked not comparable, and scores read from a
training curve at a budget (``compare --at STEPS``).

Held-out labels are checked on run records written as the store writes them
(Disco103 on ProcGen, Crafter and Catch, with the rules' real manifests), the
curve reading on synthetic records with known rows and on a real tiny Catch run.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from disco_eval import store
from disco_eval.analysis import at_steps, compare, export, plots, render, rule_kinds
from disco_eval.cli import results as cli_results
from disco_eval.config import suites
from disco_eval.config.manifests import load_rule_manifest
from disco_eval.errors import UserError
from disco_eval.paths import PROJECT_ROOT

REPS = 200


def write_record(
  root: Path,
  suite: str,
  task: str,
  label: str,
  seed: int,
  rule_doc: dict,
  *,
  protocol: str,
  budget: int,
  score: float,
  normalized: float,
  metric: str = "return",
  rows: list[dict] | None = None,
  beside: dict | None = None,
  runtime: dict | None = None,
) -> Path:
  """A complete run folder as the store writes it (config, metrics, summary);
  `beside`: figures the protocol reports beside the score."""
  config = {
    "suite": suite,
    "task": task,
    "seed": seed,
    "protocol": {
      "name": protocol,
      "env_steps": budget,
      "metric": metric,
      "reported_beside": list(beside or {}),
    },
    "rule": rule_doc,
    "train": {"num_envs": 2, "rollout_len": 5},
    "env_steps": budget,
    "budget": budget,
  }
  if runtime is not None:
    config["runtime"] = runtime
  record = store.RunRecord.open(root, suite, task, label, seed, config)
  steps = budget // 10
  rows = rows or [
    {"iteration": i, "env_steps": (i + 1) * steps, "episodes": 2, "avg_return": 0.1 * i}
    for i in range(10)
  ]
  record.append_metrics(rows)
  summary = {
    "score": score,
    "normalized_score": normalized,
    "metric": metric,
    "protocol": protocol,
    "env_steps": budget,
    **(beside or {}),
  }
  record.mark_complete(summary, env_steps=budget)
  return record.path


def disco103_doc() -> dict:
  manifest = load_rule_manifest("disco103")
  return {"name": "disco103", "kind": "disco", "sha256": manifest.sha256, "source": "x.npz"}


def hand_doc(name: str) -> dict:
  return {"name": name, "kind": name, "sha256": None, "source": None}


CHECKPOINT = {"name": "mine", "kind": "disco", "sha256": "ab" * 32, "source": "/tmp/mine.npz"}


@pytest.fixture
def three_suites(tmp_path: Path) -> Path:
  """Disco103, actor_critic and a custom checkpoint on ProcGen, Crafter and Catch."""
  root = tmp_path / "results"
  for name in ("procgen", "crafter", "catch"):
    manifest = suites.load_suite(name)
    protocol = manifest.protocol()
    task = manifest.tasks[0]
    for label, doc in (
      ("disco103", disco103_doc()),
      ("actor_critic", hand_doc("actor_critic")),
      ("mine", CHECKPOINT),
    ):
      value = manifest.normalization_for(task, protocol.name)["max"]
      write_record(
        root,
        name,
        task,
        label,
        0,
        doc,
        protocol=protocol.name,
        budget=int(protocol.get("env_steps")),
        score=value,
        normalized=1.0,
        metric=str(protocol.get("metric")),
      )
  return root


def text_of(result: compare.CompareResult) -> str:
  console = Console(file=io.StringIO(), width=400, color_system=None)
  render.render(result, console)
  return console.file.getvalue()


def test_disco103_is_not_held_out_on_procgen_only(three_suites: Path) -> None:
  result = compare.compare(three_suites, reps=REPS)
  kinds = {g.key.suite: g.kinds for g in result.groups}
  assert kinds["procgen"]["disco103"].held_out == "no"
  assert kinds["crafter"]["disco103"].held_out == "yes"
  assert kinds["catch"]["disco103"].held_out == "yes"
  for suite in ("procgen", "crafter", "catch"):
    assert kinds[suite]["actor_critic"] == rule_kinds.RuleCategory("hand-designed", "yes")
    assert kinds[suite]["mine"].held_out == "unknown"
    assert kinds[suite]["disco103"].category == "discovered (learned weights)"
  doc = {g["suite"]: g["rule_kinds"] for g in result.to_json()["groups"]}
  assert doc["procgen"]["disco103"]["held_out"] == "no"
  assert "procgen" in doc["procgen"]["disco103"]["discovered_on"]


def test_tables_mark_not_held_out_and_kinds(three_suites: Path) -> None:
  procgen = text_of(compare.compare(three_suites, suite="procgen", reps=REPS))
  assert "not held out" in procgen and "discovered (learned weights)" in procgen
  assert "hand-designed" in procgen and "unknown" in procgen
  assert re.search(r"disco103: not held out on procgen", procgen)
  for suite in ("crafter", "catch"):
    text = text_of(compare.compare(three_suites, suite=suite, reps=REPS))
    assert "not held out" not in text
    assert "discovered (learned weights)" in text


def test_csv_rows_carry_held_out_and_category(three_suites: Path) -> None:
  df = pd.read_csv(io.StringIO(export.export_csv(three_suites, aggregate=True, reps=REPS)))
  runs = df[df.kind.isin(["train", "final", "aggregate"])]
  disco = runs[runs.rule == "disco103"]
  assert set(disco[disco.suite == "procgen"].held_out) == {"no"}
  assert set(disco[disco.suite != "procgen"].held_out) == {"yes"}
  assert set(runs[runs.rule == "mine"].held_out) == {"unknown"}
  assert set(runs[runs.rule == "actor_critic"].category) == {"hand-designed"}
  published = df[df.kind == "published"]
  assert not published.empty and set(published.held_out) == {"published"}


def svg_text(path: Path) -> str:
  """The text of an SVG written with text kept as text, tags removed."""
  return " ".join(re.sub(r"<[^>]+>", " ", path.read_text()).split())


def test_plot_captions_mark_not_held_out(three_suites: Path, tmp_path: Path) -> None:
  procgen = plots.plot("intervals", three_suites, tmp_path / "p.svg", suite="procgen", reps=REPS)
  assert "disco103: not held out on procgen" in svg_text(procgen)
  catch = plots.plot("profiles", three_suites, tmp_path / "c.svg", suite="catch", reps=REPS)
  assert "not held out" not in svg_text(catch) and "held out unknown" in svg_text(catch)


def test_a_file_of_published_weights_is_that_rule() -> None:
  doc = {**disco103_doc(), "name": "disco_103"}
  assert rule_kinds.rule_kind(doc, "procgen").held_out == "no"
  assert rule_kinds.rule_kind(doc, "catch").held_out == "yes"
  assert rule_kinds.rule_kind(CHECKPOINT, "catch").category == rule_kinds.CHECKPOINT
  assert rule_kinds.rule_kind({"name": "nobody"}, "catch").held_out == "unknown"


# --- published rows of another metric or budget ---------------------------------------

TOY = """
name = "toy"
description = "synthetic"
backend = "jax"
tasks = ["a"]
default_protocol = "std"

[protocols.std]
description = "standard"
env_steps = 1000
metric = "return"
reported_beside = ["solve_rate"]

[normalization]
a = { min = 0.0, max = 10.0 }

[[published]]
rule = "Same"
task = "a"
protocol = "std"
score = 5.0
citation = "fixture: no metric or budget given (the protocol's)"

[[published]]
rule = "Other metric"
task = "a"
protocol = "std"
score = 50.0
metric = "score"
env_steps = 1000
citation = "fixture"

[[published]]
rule = "Other budget"
task = "a"
protocol = "std"
score = 8.0
metric = "return"
env_steps = 200_000_000
citation = "fixture"

[[published]]
rule = "Halfway"
task = "a"
protocol = "std"
score = 3.0
metric = "return"
env_steps = 500
read_off = "figure"
citation = "fixture"

[[published]]
rule = "Unstated"
task = "a"
protocol = "std"
score = 4.0
metric = "return"
env_steps = 0
budget_note = "the paper gives no budget"
citation = "fixture"

[[published_other_metric]]
rule = "Solver"
task = "a"
protocol = "std"
metric = "solve_rate"
value = 0.7
env_steps = 1000
citation = "fixture"
"""


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
  """Three seeds of one rule on a one-task suite with published rows of
  every kind; the curve of each seed rises 0, 1, ..., 9 (rows every 100 steps)."""
  folder = tmp_path / "manifests"
  (folder / "suites").mkdir(parents=True)
  shutil.copytree(PROJECT_ROOT / "rules", folder / "rules")
  (folder / "suites" / "toy.toml").write_text(TOY)
  monkeypatch.setenv("DISCO_EVAL_MANIFESTS", str(folder))
  root = tmp_path / "results"
  for seed in range(3):
    rows = [
      {"iteration": i, "env_steps": 100 * (i + 1), "episodes": 1 + seed, "avg_return": i + seed}
      for i in range(10)
    ]
    write_record(
      root, "toy", "a", "alpha", seed, hand_doc("alpha"), protocol="std", budget=1000,
      score=6.0, normalized=0.6, rows=rows, beside={"solve_rate": 0.5},
    )  # fmt: skip
  return root


def test_published_rows_of_another_metric_or_budget_are_not_comparable(toy: Path) -> None:
  [group] = compare.compare(toy, reps=REPS).groups
  by_rule = {p.rule: p for p in group.published}
  assert by_rule["Same"].comparable and by_rule["Same"].env_steps == 1000
  assert by_rule["Same"].metric == "return"  # the protocol's, for rows without one
  assert by_rule["Solver"].comparable  # a metric the runs report beside their score
  assert by_rule["Other metric"].reason == "published at 1k in score; runs: 1k return"
  assert by_rule["Other budget"].reason == "published at 200M in return; runs: 1k return"
  assert by_rule["Halfway"].reason == "published at 500 in return; runs: 1k return"
  assert "budget not stated (the paper gives no budget)" in by_rule["Unstated"].reason
  assert {p.rule for p in group.comparable_published} == {"Same", "Solver"}
  assert {r.rule for r in group.published_aggregate} == {"Same"}
  assert by_rule["Halfway"].label == "Halfway (published), read off a figure"
  text = text_of(compare.compare(toy, reps=REPS))
  assert "not comparable: published at 200M in return; runs: 1k return" in text
  df = pd.read_csv(io.StringIO(export.export_csv(toy, aggregate=True, reps=REPS)))
  pub = df[(df.kind == "published") & (df.task == "a")].set_index("rule")
  assert pub.loc["Same", "comparable"] == "yes" and pub.loc["Other budget", "comparable"] == "no"
  assert pub.loc["Other budget", "note"].startswith("not comparable: published at 200M")
  assert "read off a figure" in pub.loc["Halfway", "note"]
  assert pub.loc["Solver", "score"] == 0.7 and pub.loc["Solver", "metric"] == "solve_rate"
  aggregates = df[(df.kind == "published") & (df.task == "*")]
  assert set(aggregates.rule) == {"Same"}


def hand_value(path: Path, steps: int) -> float:
  """The curve's value at `steps`, straight from metrics.csv (module docstring
  of disco_eval.analysis.at_steps)."""
  with open(path / "metrics.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if int(r["env_steps"]) <= steps]
  last = max(int(r["env_steps"]) for r in rows)
  chosen = [
    r
    for r in rows
    if (int(r["env_steps"]) > 0.95 * steps or int(r["env_steps"]) == last)
    and r["avg_return"] not in ("", "nan")
    and int(r["episodes"]) > 0
  ]
  weights = [int(r["episodes"]) for r in chosen]
  return sum(w * float(r["avg_return"]) for w, r in zip(weights, chosen)) / sum(weights)


def test_at_reads_the_curve_and_compares_published_rows_at_that_budget(toy: Path) -> None:
  [group] = compare.compare(toy, reps=REPS, at="500").groups
  assert group.read_at == 500 and group.metric == "return" and group.env_steps == (500,)
  [row] = group.per_task
  # Rows at 500 only (window (475, 500]): seed s logged avg_return 4 + s.
  assert row.score.mean == pytest.approx(5.0)
  for seed in range(3):
    path = toy / "toy" / "a" / "alpha" / f"seed{seed}"
    assert hand_value(path, 500) == 4 + seed
  by_rule = {p.rule: p for p in group.published}
  assert by_rule["Halfway"].comparable
  assert by_rule["Same"].reason == "published at 1k in return; runs: 500 return"
  assert not by_rule["Solver"].comparable  # a curve gives no solve rate
  text = text_of(compare.compare(toy, reps=REPS, at="500"))
  assert "read from the training curve at 500 steps" in text
  assert "published values read off a figure: Halfway" in text
  df = pd.read_csv(io.StringIO(export.export_csv(toy, aggregate=True, reps=REPS, at=500)))
  at = df[df.kind == "curve_at"]
  assert len(at) == 3 and set(at.note) == {"read from the training curve at 500 steps"}
  assert sorted(at.score) == [4.0, 5.0, 6.0] and "final" not in set(df.kind)


def test_the_window_weighs_episodes(toy: Path) -> None:
  # Seed 2 logs a row every 10 steps: the window (950, 1000] holds 5 rows,
  # weighed by the episodes that ended in each (rows without any are skipped).
  path = toy / "toy" / "a" / "alpha" / "seed2"
  rows = [
    {"iteration": i, "env_steps": 10 * (i + 1), "episodes": i % 3, "avg_return": float(i)}
    for i in range(100)
  ]
  store.RunRecord(path).truncate_metrics(0)
  store.RunRecord(path).append_metrics(rows)
  want = (2 * 95 + 1 * 97 + 2 * 98) / 5  # rows 960..1000: episodes 2, 0, 1, 2, 0
  assert hand_value(path, 1000) == pytest.approx(want)
  seed2 = next(r for r in compare.collect(toy).runs if r.seed == 2)
  assert at_steps.value_at(seed2, 1000) == pytest.approx(want)
  [group] = compare.compare(toy, reps=REPS, at="1k").groups
  assert group.per_task[0].score.mean == pytest.approx((9 + 10 + want) / 3)


def test_at_refuses_a_run_that_never_reached_the_budget(toy: Path) -> None:
  with pytest.raises(UserError, match=r"reached 1,000 env steps, short of --at 2,000"):
    compare.compare(toy, reps=REPS, at="2000")
  res = CliRunner().invoke(_app(), ["compare", str(toy), "--at", "1M"])
  assert isinstance(res.exception, UserError)
  assert "short of --at 1,000,000" in str(res.exception)
  assert "\n" not in str(res.exception)


@pytest.mark.parametrize(
  "text, steps",
  [("1000000", 1_000_000), ("1e6", 1_000_000), ("1M", 1_000_000), ("50m", 50_000_000),
   ("2.5M", 2_500_000), ("100k", 100_000), ("2B", 2_000_000_000), ("1_000_000", 1_000_000)],
)  # fmt: skip
def test_steps_forms(text: str, steps: int) -> None:
  assert at_steps.parse_steps(text) == steps


@pytest.mark.parametrize("text", ["abc", "0", "1.5", "-3", "1e-3", "M"])
def test_bad_steps_are_user_errors(text: str) -> None:
  with pytest.raises(UserError, match="--at"):
    at_steps.parse_steps(text)


def _app():
  import typer

  app = typer.Typer()
  cli_results.register(app)
  return app


# --- a real tiny Catch run --------------------------------------------------------------

TINY = (
  ("train.min_buffer", "4"),
  ("train.sample_entries", "4"),
  ("train.chunk", "8"),
  ("agent.torso_hidden", "[32]"),
)


@pytest.mark.slow
def test_compare_at_on_a_real_catch_run_equals_the_curve(tmp_path: Path) -> None:
  from disco_eval.runs import SweepSpec, run_sweep

  [result] = run_sweep(
    SweepSpec(
      suite="catch", rules=("actor_critic",), seeds=(0,), steps=600, out=tmp_path, overrides=TINY
    )
  )
  assert result.status == "complete"
  for steps in (400, 638):
    want = hand_value(result.path, steps)
    [group] = compare.compare(tmp_path, reps=REPS, at=steps).groups
    assert group.per_task[0].score.mean == pytest.approx(want, rel=1e-12)
    assert group.kinds["actor_critic"].category == "hand-designed"
  doc = json.loads(
    CliRunner().invoke(_app(), ["compare", str(tmp_path), "--at", "400", "--json"]).output
  )
  [group] = doc["groups"]
  assert group["source"] == "read from the training curve at 400 steps"
  assert group["per_task"][0]["score"]["mean"] == pytest.approx(hand_value(result.path, 400))


def test_cli_export_and_plot_take_at(toy: Path, tmp_path: Path) -> None:
  out = tmp_path / "at.csv"
  res = CliRunner().invoke(_app(), ["export", "csv", str(toy), "--at", "500", "--out", str(out)])
  assert res.exit_code == 0, res.output
  assert set(pd.read_csv(out).kind) == {"train", "curve_at", "published"}
  svg = tmp_path / "at.svg"
  res = CliRunner().invoke(_app(), ["plot", "profiles", str(toy), "--at", "5e2", "--out", str(svg)])
  assert res.exit_code == 0, res.output
  assert "read from the training curve at 500 steps" in svg_text(svg)
  res = CliRunner().invoke(_app(), ["plot", "curves", str(toy), "--at", "500", "--out", str(svg)])
  assert isinstance(res.exception, UserError) and "drop --at" in str(res.exception)


def test_compare_shows_each_rules_backend(tmp_path: Path) -> None:
  root = tmp_path / "results"
  gpu = {"backend": "gpu", "device_kind": "NVIDIA H200", "device_count": 1, "deterministic": True}
  for label, doc, runtime in (
    ("disco103", disco103_doc(), gpu),
    ("actor_critic", hand_doc("actor_critic"), {"backend": "cpu"}),
    ("ppo", hand_doc("ppo"), None),  # a record from before the backend was recorded
  ):
    write_record(
      root,
      "catch",
      "catch",
      label,
      0,
      doc,
      protocol="reference",
      budget=58000,
      score=0.5,
      normalized=0.75,
      runtime=runtime,
    )
  result = compare.compare(root, reps=REPS)
  (group,) = result.groups
  assert group.backends == {
    "disco103": "gpu: NVIDIA H200 x1, deterministic",
    "actor_critic": "cpu",
    "ppo": "unknown",
  }
  assert "gpu: NVIDIA H200 x1, deterministic" in text_of(result)
  assert result.to_json()["groups"][0]["backends"]["actor_critic"] == "cpu"
