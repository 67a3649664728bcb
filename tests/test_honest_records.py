"""Issue 13, items 2 and 4: divergence is an outcome, JSON is strict, and
damaged records are reported and never re-approved.

The sweeps are tiny Catch runs (58 env steps per iteration, chunks of 4
iterations). Divergence is forced by poisoning one seed's parameters with NaN
after a chunk, so that no setting validation can refuse it beforehand.
"""

import json
import math
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from disco_eval.analysis import compare, export
from disco_eval.cli import common
from disco_eval.errors import UserError
from disco_eval.runs import run_sweep
from disco_eval.runs import unit_runs as unit_runs_module
from disco_eval.runs.spec import SweepSpec
from disco_eval.store import RunRecord, write_json_atomic

OVERRIDES = (
  ("train.min_buffer", "4"),
  ("train.sample_entries", "4"),
  ("train.chunk", "4"),
  ("agent.torso_hidden", "[16]"),
)
STEPS = 58 * 8  # two chunks


def _spec(out: Path, seeds=(0,)) -> SweepSpec:
  return SweepSpec(
    suite="catch",
    rules=("actor_critic",),
    seeds=tuple(seeds),
    steps=STEPS,
    out=out,
    overrides=OVERRIDES,
    checkpoint_every=1,
  )


def _files(folder: Path) -> dict[str, bytes]:
  return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
  """A results folder with one complete tiny Catch run (seed 0), trained."""
  out = tmp_path_factory.mktemp("done")
  [result] = run_sweep(_spec(out))
  assert result.status == "complete", result.error
  return out


@pytest.fixture
def written_run(tmp_path) -> Path:
  """A results folder with one complete Catch run written through the store
  (no training): config, metrics, summary and status."""
  out = tmp_path / "written"
  record = RunRecord.open(out, "catch", "catch", "actor_critic", 0, WRITTEN_CONFIG)
  with record.lock():
    record.mark_running(0)
    record.append_metrics([{"env_steps": 58 * (i + 1), "avg_return": 0.5} for i in range(8)])
    summary = {"protocol": "reference", "env_steps": STEPS, "metric": "return"}
    record.mark_complete({**summary, "score": 0.5, "normalized_score": 0.75}, env_steps=STEPS)
  return out


WRITTEN_CONFIG = {
  "suite": "catch",
  "task": "catch",
  "seed": 0,
  "env_steps": STEPS,
  "protocol": {"name": "reference", "env_steps": STEPS, "metric": "return"},
  "rule": {"name": "actor_critic", "kind": "actor_critic", "sha256": None},
  "train": {"num_envs": 2, "rollout_len": 29, "chunk": 4, "iterations": 8},
}


def _copy(done_run: Path, tmp_path: Path) -> tuple[Path, Path]:
  out = tmp_path / "results"
  shutil.copytree(done_run, out)
  return out, out / "catch" / "catch" / "actor_critic" / "seed0"


# --- item 4: damaged records are never re-approved ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
  "lose,message",
  [
    ("config.json", "config.json is missing"),
    ("metrics.csv", "metrics.csv is missing while status.json says complete"),
  ],
)
def test_rerun_refuses_a_damaged_record_and_leaves_it_untouched(done_run, tmp_path, lose, message):
  out, run = _copy(done_run, tmp_path)
  (run / lose).unlink()
  before = _files(run)
  with pytest.raises(UserError, match=message) as caught:
    run_sweep(_spec(out))
  text = str(caught.value)
  assert "\n" not in text and f"remove {run} to train it again" in text
  assert _files(run) == before


@pytest.mark.parametrize(
  "damage,message",
  [
    (lambda run: (run / "config.json").unlink(), "config.json is missing"),
    (lambda run: (run / "metrics.csv").unlink(), "metrics.csv is missing"),
    (lambda run: (run / "metrics.csv").write_bytes(b"\xff\xfe"), "metrics.csv is unreadable"),
    (lambda run: (run / "summary.json").write_text("{"), "summary.json is unreadable"),
  ],
)
def test_open_refuses_a_damaged_record_and_writes_nothing(written_run, damage, message):
  run = written_run / "catch" / "catch" / "actor_critic" / "seed0"
  damage(run)
  before = _files(run)
  with pytest.raises(UserError, match=message):
    RunRecord.open(written_run, "catch", "catch", "actor_critic", 0, WRITTEN_CONFIG)
  assert _files(run) == before


def test_compare_and_export_list_every_damaged_seed_folder(written_run, tmp_path):
  out, good = _copy(written_run, tmp_path)
  rule = good.parent
  for seed in (1, 2, 3):
    shutil.copytree(good, rule / f"seed{seed}")
  (rule / "seed1" / "metrics.csv").unlink()
  (rule / "seed2" / "config.json").unlink()
  (rule / "seed3" / "metrics.csv").write_text("env_steps,loss\n1,2,3\n")
  (rule / "seed4").mkdir()
  (rule / "notes").mkdir()
  (rule / "notes" / "todo.txt").write_text("rerun seed 2")
  result = compare.compare(out, reps=50)
  reasons = {e.path.name: e.reason for e in result.excluded}
  assert reasons == {
    "seed1": "missing_metrics",
    "seed2": "missing_config",
    "seed3": "unreadable",
    "seed4": "empty",
    "notes": "foreign",
  }
  assert result.groups[0].seeds == {"actor_critic": 1}
  warnings: list[str] = []
  export.export_csv(out, warn=warnings.append)
  for name in reasons:
    assert any(f"{rule / name}:" in w for w in warnings), name


# --- item 2: divergence is an outcome ------------------------------------------------


def _poison_seed(monkeypatch, index: int, after_iteration: int) -> None:
  """Make the trainer's parameters of seed `index` (in the group) NaN once a
  chunk ends past `after_iteration`."""
  real = unit_runs_module.make_trainer

  def make_trainer(*args, **kwargs):
    trainer = real(*args, **kwargs)
    vmapped, turns = trainer.run_vmapped, trainer.run_turns

    def poisoned_vmapped(state, rule_params, it, count):
      state, m = vmapped(state, rule_params, it, count)
      if it + count <= after_iteration:
        return state, m
      params = jax.tree.map(lambda x: x.at[index].set(jnp.nan), state.params)
      return state._replace(params=params), m

    def poisoned_turns(states, rule_params, it, count):
      states, m = turns(states, rule_params, it, count)
      if it + count <= after_iteration:
        return states, m
      states = list(states)
      nan = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), states[index].params)
      states[index] = states[index]._replace(params=nan)
      return states, m

    object.__setattr__(trainer, "run_vmapped", poisoned_vmapped)
    object.__setattr__(trainer, "run_turns", poisoned_turns)
    return trainer

  monkeypatch.setattr(unit_runs_module, "make_trainer", make_trainer)


@pytest.mark.slow
def test_a_diverged_seed_is_recorded_diverged_and_its_group_goes_on(tmp_path, monkeypatch):
  _poison_seed(monkeypatch, index=1, after_iteration=0)
  results = run_sweep(_spec(tmp_path, seeds=(0, 1)))
  by_seed = {r.seed: r for r in results}
  assert by_seed[0].status == "complete" and by_seed[1].status == "diverged"
  status = RunRecord(by_seed[1].path).status
  assert status["status"] == "diverged"
  assert status["diverged"] == {"iteration": 3, "env_steps": 4 * 58}
  summary = json.loads((by_seed[1].path / "summary.json").read_text())
  assert summary["diverged"] == status["diverged"]
  for path in tmp_path.rglob("*.json"):
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text, path
  # compare excludes it by default and says so; --include-diverged counts it.
  default = compare.compare(tmp_path, reps=50)
  assert [e.reason for e in default.excluded] == ["diverged"]
  assert "iteration 3" in default.excluded[0].detail
  assert default.diverged_note.startswith("1 diverged run excluded (use --include-diverged")
  assert default.to_json()["settings"]["diverged_runs"] == "excluded"
  included = compare.compare(tmp_path, reps=50, include_diverged=True)
  settings = included.to_json()["settings"]
  if summary["score"] is None:
    assert [e.reason for e in included.excluded] == ["diverged"]
  else:
    assert included.excluded == [] and settings["diverged_counted"] == 1
  assert settings["diverged_runs"] == "counted at evaluated score"


@pytest.mark.slow
def test_a_group_whose_every_seed_diverged_stops_and_is_still_evaluated(tmp_path, monkeypatch):
  _poison_seed(monkeypatch, index=0, after_iteration=0)
  [result] = run_sweep(_spec(tmp_path))
  assert result.status == "diverged"
  rows = RunRecord(result.path).read_metrics()
  assert rows[-1]["env_steps"] == 4 * 58  # stopped after the first chunk
  summary = RunRecord(result.path).summary
  assert "score" in summary and summary["diverged"]["env_steps"] == 4 * 58
  # A rerun leaves a diverged run alone.
  [again] = run_sweep(_spec(tmp_path))
  assert again.status == "skipped"


# --- strict JSON ----------------------------------------------------------------------


def test_print_json_is_strict(capsys):
  common.print_json({"score": float("nan"), "inf": float("inf"), "ok": [1.5]})
  text = capsys.readouterr().out
  assert json.loads(text) == {"inf": None, "ok": [1.5], "score": None, "schema_version": 1}
  assert "NaN" not in text and "Infinity" not in text


def test_a_config_with_nan_is_written_as_strict_json(tmp_path):
  path = tmp_path / "config.json"
  write_json_atomic(path, {"lr": float("nan"), "nested": {"x": [float("-inf")]}})
  assert json.loads(path.read_text(), parse_constant=pytest.fail) == {
    "lr": None,
    "nested": {"x": [None]},
  }


def test_a_diverged_run_is_never_marked_complete(tmp_path):
  record = RunRecord.open(tmp_path, "catch", "catch", "r", 0, {"seed": 0})
  with record.lock():
    record.mark_running(58)
    record.append_metrics([{"env_steps": 58, "loss": float("nan")}])
    record.note_divergence(0, 58)
    record.mark_running(116)  # later heartbeats keep the divergence
    record.mark_complete({"score": float("nan")}, env_steps=116)
  status = record.status
  assert status["status"] == "diverged" and status["diverged"]["iteration"] == 0
  assert record.summary["score"] is None and not record.is_complete() and record.is_finished()


def test_a_failed_evaluation_of_diverged_params_leaves_a_null_score(monkeypatch):
  from types import SimpleNamespace

  from disco_eval.config.suites import Protocol
  from disco_eval.runs import final
  from disco_eval.runs.context import UnitContext

  def broken(*args):
    raise ValueError("invalid action")

  monkeypatch.setattr(final, "final_figures", broken)
  suite = SimpleNamespace(name="catch", normalize=lambda task, score, protocol: score)
  protocol = Protocol("reference", "", {})
  rule = SimpleNamespace(label="r", sha256=None)
  rows = [{"avg_return": 0.5}]
  cfg = SimpleNamespace(iterations=10, steps_per_iteration=10)
  ctx = UnitContext(None, rule, suite, "catch", protocol, cfg, None, lambda p: None)
  summary = final.run_summary(ctx, 0, {"w": jnp.full(3, jnp.nan)}, rows, 1.0, 1)
  assert math.isnan(summary["score"]) and "invalid action" in summary["eval_error"]
  with pytest.raises(ValueError):  # finite parameters: a real error, never hidden
    final.run_summary(ctx, 0, {"w": jnp.zeros(3)}, rows, 1.0, 1)
