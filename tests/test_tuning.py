"""Tuning labelled honestly (``run --sweep``, ``compare --select``), published rows
compared only with their like (policy, estimator, selection), held out ``near``,
and one-task intervals that say their limits.

Selection is checked on run records written as the store writes them, in the
configuration folders a sweep writes, with known scores; a slow test sweeps two
learning rates on real tiny Catch runs.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from disco_eval import store
from disco_eval.analysis import compare, evaluation, export, intervals, plots, rule_kinds
from disco_eval.analysis import select as choose
from disco_eval.analysis.published import published_rows
from disco_eval.config import suites
from disco_eval.config.manifests import load_rule_manifest
from disco_eval.errors import UserError
from disco_eval.runs import SweepSpec, sweep_grid

REPS = 200
LRS = {"0.001": [0.1, 0.2, 0.3, 0.4], "0.03": [0.5, 0.6, 0.0, 0.1]}  # seed -> normalised score


def write_run(root: Path, lr: str, seed: int, normalized: float) -> Path:
  """A complete actor_critic Catch run with learning rate `lr`, in the sweep's
  configuration folder under `root`."""
  config = {
    "suite": "catch",
    "task": "catch",
    "seed": seed,
    "protocol": {"name": "reference", "env_steps": 1000, "metric": "return"},
    "rule": {"name": "actor_critic", "kind": "actor_critic", "sha256": None, "source": None},
    "settings": {"optimizer": {"learning_rate": float(lr)}},
    "overrides": {"optimizer.learning_rate": lr},
    "train": {"num_envs": 2, "rollout_len": 5},
    "env_steps": 1000,
    "budget": 1000,
  }
  folder = root / f"optimizer.learning_rate={lr}"
  record = store.RunRecord.open(folder, "catch", "catch", "actor_critic", seed, config)
  record.append_metrics([{"iteration": 0, "env_steps": 1000, "episodes": 2, "avg_return": 0.0}])
  score = 2 * normalized - 1
  summary = {"score": score, "normalized_score": normalized, "metric": "return"}
  record.mark_complete({**summary, "protocol": "reference", "env_steps": 1000}, env_steps=1000)
  return record.path


@pytest.fixture
def swept(tmp_path: Path) -> Path:
  root = tmp_path / "results"
  for lr, scores in LRS.items():
    for seed, x in enumerate(scores):
      write_run(root, lr, seed, x)
  return root


# --- run --sweep ----------------------------------------------------------------


def test_sweep_items_form_a_grid_of_configurations() -> None:
  grid = sweep_grid.parse_sweeps(["lr=1e-4,3e-4", "hyperparams.entropy_cost=0.01,0.1"], {}, "x")
  configs = sweep_grid.configurations(grid)
  assert [c.folder for c in configs] == [
    "lr=1e-4,hyperparams.entropy_cost=0.01",
    "lr=1e-4,hyperparams.entropy_cost=0.1",
    "lr=3e-4,hyperparams.entropy_cost=0.01",
    "lr=3e-4,hyperparams.entropy_cost=0.1",
  ]
  spec = SweepSpec(suite="catch", out=Path("out"), overrides=(("train.chunk", "8"),))
  specs = sweep_grid.expand(spec, grid)
  assert specs[1].out == Path("out") / "lr=1e-4,hyperparams.entropy_cost=0.1"
  assert specs[1].overrides == (
    ("train.chunk", "8"),
    ("lr", "1e-4"),
    ("hyperparams.entropy_cost", "0.1"),
  )
  assert sweep_grid.expand(spec, {}) == [spec]


def test_sweep_protocol_takes_the_manifests_tuning_grid() -> None:
  for name in ("crafter", "nethack", "procgen", "sokoban"):
    manifest = suites.load_suite(name)
    grid = sweep_grid.parse_sweeps(["protocol"], manifest.raw, "disco")
    assert grid == {"optimizer.learning_rate": ["0.0001", "0.0003", "0.0005"]}
    source = manifest.raw["tuning"]["disco"]["sources"]["optimizer.learning_rate"]
    assert "Methods" in source and "only tuned the learning rate" in source
  with pytest.raises(UserError, match="names no tuning grid"):
    sweep_grid.parse_sweeps(["protocol"], suites.load_suite("catch").raw, "reference")


@pytest.mark.parametrize("items", [["lr"], ["lr="], ["lr=1,1"], ["lr=1", "lr=2"], ["lr=a/b"]])
def test_bad_sweeps_are_one_line_errors(items: list[str]) -> None:
  with pytest.raises(UserError):
    sweep_grid.parse_sweeps(items, {}, "x")


def test_a_swept_key_cannot_be_set_too() -> None:
  spec = SweepSpec(suite="catch", overrides=(("lr", "1e-3"),))
  with pytest.raises(UserError, match="both --set and --sweep"):
    sweep_grid.expand(spec, {"lr": ["1e-4"]})


def test_configuration_folders_are_scanned_as_results_folders(swept: Path) -> None:
  found = store.scan_runs(swept)
  assert len(found) == 8 and all(r.problem is None for r in found)


# --- compare --select -----------------------------------------------------------


def test_select_on_disjoint_seeds(swept: Path) -> None:
  result = compare.compare(swept, reps=REPS, select="lr", select_seeds="0-1", report_seeds="2-3")
  [sel] = result.selections
  # IQM on seeds 0-1: 0.001 -> 0.15, 0.03 -> 0.55: 0.03 kept, reported on seeds 2-3.
  assert sel.value == "0.03" and not sel.optimistic
  assert sel.candidates == {"0.001": pytest.approx(0.15), "0.03": pytest.approx(0.55)}
  label = "actor_critic[lr=0.03; selected on seeds 0-1, reported on seeds 2-3]"
  [group] = result.groups
  assert group.rules == (label,)
  assert group.per_task[0].normalized.mean == pytest.approx(0.05)
  assert any("candidates" in n for n in group.notes)


def test_select_on_the_reported_seeds_is_labelled_optimistic_everywhere(
  swept: Path, tmp_path: Path
) -> None:
  result = compare.compare(swept, reps=REPS, select="optimizer.learning_rate")
  [sel] = result.selections
  assert sel.optimistic and sel.note == choose.OPTIMISTIC
  doc = result.to_json()
  assert doc["selection"][0]["candidates"] == {"0.001": pytest.approx(0.25), "0.03": 0.3}
  assert all(choose.OPTIMISTIC in r for g in doc["groups"] for r in g["rules"])
  assert doc["groups"][0]["measured"]["policy"] == "sampling"
  assert doc["groups"][0]["measured"]["selection"] != "none"
  opts = choose.options("lr", None, None)
  text = export.export_csv(swept, suite="catch", aggregate=True, reps=REPS, select=opts)
  df = pd.read_csv(__import__("io").StringIO(text))
  runs = df[df.kind.isin(["final", "aggregate", "train"])]
  assert not runs.empty and all(choose.OPTIMISTIC in r for r in runs.rule)
  svg = plots.plot("intervals", swept, tmp_path / "s.svg", reps=REPS, select=opts)
  caption = " ".join(re.sub(r"<[^>]+>", " ", svg.read_text()).split())
  assert "selected on the reported seeds (optimistic)" in caption
  assert "candidates" in caption


def test_select_needs_swept_runs(tmp_path: Path) -> None:
  write_run(tmp_path, "0.001", 0, 0.5)
  with pytest.raises(UserError, match="no rule has runs that differ"):
    compare.compare(tmp_path, reps=REPS, select="lr")
  with pytest.raises(UserError, match="go with --select"):
    compare.compare(tmp_path, reps=REPS, report_seeds="0")
  with pytest.raises(UserError, match="--select-seeds expects"):
    choose.parse_seeds("a-b", "--select-seeds")


# --- published rows compared with their like -----------------------------------


def test_discogen_rows_are_not_comparable_with_sampling_runs() -> None:
  rows, _ = published_rows(suites.load_suite("minatar"))
  discogen = [r for r in rows if "DiscoGen" in r.rule]
  assert discogen and all(r.policy == "greedy" for r in discogen)
  assert all(set(r.sources) == {"policy", "estimator", "selection"} for r in discogen)
  runs = evaluation.run_measure(suites.load_suite("minatar").protocol("10m").settings)
  assert runs == ("sampling", "final-policy evaluation")
  reason = evaluation.measure_differences("greedy", None, "best of 10 learning rates", runs)
  assert evaluation.verdict(False, reason) == "not comparable (greedy, best of 10 learning rates)"
  assert evaluation.measure_differences("sampling", "final-policy evaluation", "none", runs) is None
  crafter = suites.load_suite("crafter").protocol("disco").settings
  assert evaluation.run_measure(crafter)[1] == "training episodes"


# --- held out: near -------------------------------------------------------------


def test_disco103_is_held_out_near_on_minatar() -> None:
  manifest = load_rule_manifest("disco103")
  doc = {"name": "disco103", "kind": "disco", "sha256": manifest.sha256, "source": "x.npz"}
  kind = rule_kinds.rule_kind(doc, "minatar")
  assert kind.held_out == "near" and kind.marker == "held out: near"
  assert "Atari" in kind.near_note
  assert rule_kinds.rule_kind(doc, "crafter").held_out == "yes"
  assert rule_kinds.rule_kind(doc, "procgen").held_out == "no"
  [line] = rule_kinds.footnotes({"disco103": kind}, "minatar")
  assert line.startswith("disco103: held out but near on minatar")


# --- intervals over one task -----------------------------------------------------


def test_one_task_intervals_say_their_limits() -> None:
  assert [intervals.distinct_resamples(n) for n in (3, 4, 5)] == [10, 35, 126]
  from disco_eval.analysis.results import AggregateRow

  x = np.array([[0.2], [0.4], [0.9]])
  rows = [AggregateRow("r", m, 0.5, 0.4, 0.6, 3) for m in ("iqm", "mean")]
  iqm, mean = intervals.one_task_rows(rows, {"r": x}, 0.95)
  assert math.isnan(iqm.lo) and iqm.interval.startswith("none: 3 seeds give 10")
  assert mean.interval == intervals.STUDENT_T
  half = 4.302652729911275 * x.std(ddof=1) / math.sqrt(3)
  assert mean.lo == pytest.approx(x.mean() - half) and mean.hi == pytest.approx(x.mean() + half)
  assert intervals.one_task_warnings({"r": x})
  five = intervals.one_task_rows(rows[:1], {"r": np.arange(5.0)[:, None]}, 0.95)[0]
  assert five.interval.startswith(intervals.BOOTSTRAP) and five.lo == 0.4


# --- a real sweep ---------------------------------------------------------------


@pytest.mark.slow
def test_a_real_sweep_of_two_learning_rates_on_catch(tmp_path: Path) -> None:
  from disco_eval.cli import app

  args = ["run", "catch", "--rule", "actor_critic", "--seeds", "2", "--steps", "116"]
  args += ["--sweep", "lr=1e-3,3e-2", "--out", str(tmp_path), "--allow-cpu", "--json"]
  res = CliRunner().invoke(app, args)
  assert res.exit_code == 0, res.output
  configurations = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("lr="))
  assert configurations == ["lr=1e-3", "lr=3e-2"]
  doc = compare.compare(tmp_path, reps=REPS, select="lr", select_seeds="0", report_seeds="1")
  [sel] = doc.selections
  assert set(sel.candidates) == {"0.001", "0.03"}
  assert doc.groups[0].rules == (
    f"actor_critic[lr={sel.value}; selected on seeds 0, reported on seeds 1]",
  )
  same = json.dumps(compare.compare(tmp_path, reps=REPS, select="lr").to_json())
  assert "selected on the reported seeds (optimistic)" in same
