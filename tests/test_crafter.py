"""Crafter: the score, the environment adapter and a tiny sweep with the real game."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("crafter")

from disco_eval.envs import crafter as cr  # noqa: E402
from disco_eval.runs import SweepSpec, run_sweep  # noqa: E402

PUBLISHED = (
  Path(__file__).resolve().parents[2] / "shared" / "published" / "crafter_published_per_seed.csv"
)
TINY = {
  "torso": "impala_cnn",
  "impala_channels": [4, 8],
  "impala_hidden": 32,
  "model_lstm_size": 16,
  "model_head_hidden": [16],
}


def test_score_matches_the_published_per_seed_figures():
  if not PUBLISHED.exists():
    pytest.skip(f"{PUBLISHED} is not here")
  with open(PUBLISHED, newline="") as f:
    rows = list(csv.DictReader(f))
  assert rows
  for row in rows:
    rates = [float(row[f"sr_{k}"]) for k in cr.ACHIEVEMENTS]
    assert cr.crafter_score(rates) == pytest.approx(float(row["score_pct"]), abs=6e-4)


def test_score_edges():
  assert cr.crafter_score([0.0] * 22) == 0.0
  assert cr.crafter_score([100.0] * 22) == pytest.approx(100.0)
  # One achievement always unlocked, the others never: (101 ** (1/22)) - 1.
  assert cr.crafter_score([100.0] + [0.0] * 21) == pytest.approx(101 ** (1 / 22) - 1)


def test_score_from_rows_counts_every_episode():
  zero = {f"ach_{k}": 0.0 for k in cr.ACHIEVEMENTS}
  rows = [
    {"env_steps": 100, "episodes": 0, "avg_return": float("nan"), **zero},
    {"env_steps": 200, "episodes": 2, "avg_return": 3.0, **zero, "ach_collect_wood": 2.0},
    {
      "env_steps": 300,
      "episodes": 2,
      "avg_return": 1.0,
      **zero,
      "ach_collect_wood": 1.0,
      "ach_wake_up": 1.0,
    },
  ]
  out = cr.score_from_rows(rows)
  assert out["train_episodes"] == 4 and out["mean_return"] == pytest.approx(2.0)
  # The scoreboard's reward: the first episode(s) ending in the last 100k steps.
  assert out["reward"] == pytest.approx(3.0)
  assert out["success_rates"]["collect_wood"] == 75.0
  assert out["success_rates"]["wake_up"] == 25.0
  expected = math.exp((math.log(76) + math.log(26)) / 22) - 1
  assert out["score"] == pytest.approx(expected)
  assert math.isnan(cr.score_from_rows(rows[:1])["score"])


def test_env_adapter_is_seeded_channel_first_and_reports_achievements():
  a, b = cr.CrafterEnv(seed=3), cr.CrafterEnv(seed=3)
  oa, ob = a.reset(), b.reset()
  assert oa.shape == cr.OBSERVATION_SHAPE and oa.dtype == np.uint8
  # The world of an episode is drawn from the seed (creature moves later are
  # not bit-reproducible: crafter iterates sets of objects).
  np.testing.assert_array_equal(oa, ob)
  assert not np.array_equal(oa, cr.CrafterEnv(seed=4).reset())
  rng = np.random.default_rng(0)
  for _ in range(3000):
    obs, reward, term, trunc, info = a.step(int(rng.integers(cr.NUM_ACTIONS)))
    assert obs.shape == cr.OBSERVATION_SHAPE
    if term or trunc:
      assert set(info) == set(cr.EPISODE_COLUMNS)
      assert all(info[c] in (0.0, 1.0) for c in info if c.startswith("ach_"))
      assert term and not trunc  # a random player dies long before 10,000 steps
      assert info["episode_steps"] > 1
      break
    assert info is None
  else:
    pytest.fail("no episode ended in 3,000 random steps")


@pytest.mark.slow
def test_tiny_crafter_sweep(tmp_path, disco103_npz):
  spec = SweepSpec(
    suite="crafter",
    rules=(str(disco103_npz),),
    seeds=(0,),
    protocol="scoreboard-1m",
    steps=1200,
    out=tmp_path,
    overrides=(
      ("train.num_envs", "4"),
      ("train.rollout_len", "25"),
      ("train.min_buffer", "4"),
      ("train.sample_entries", "1"),
      ("train.buffer_capacity", "8"),
      ("train.chunk", "4"),
      *((f"agent.{k}", v if isinstance(v, str) else json.dumps(v)) for k, v in TINY.items()),
    ),
  )
  results = run_sweep(spec)
  assert [r.status for r in results] == ["complete"], [r.error for r in results]
  path, summary = results[0].path, results[0].summary
  config = json.loads((path / "config.json").read_text())
  assert config["protocol"]["name"] == "scoreboard-1m" and summary["protocol"] == "scoreboard-1m"
  assert summary["metric"] == "score" and summary["score_from"] == "training episodes"
  with open(path / "metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 12 and int(rows[-1]["env_steps"]) == 1200
  assert {f"ach_{k}" for k in cr.ACHIEVEMENTS} <= set(rows[0])
  episodes = sum(int(r["episodes"]) for r in rows)
  assert summary["train_episodes"] == episodes > 0  # random players die within ~300 steps
  assert set(summary["success_rates"]) == set(cr.ACHIEVEMENTS)
  assert 0.0 <= summary["score"] <= 100.0
  assert summary["normalized_score"] == pytest.approx(summary["score"] / 100)
  assert math.isfinite(summary["reward"])
  assert any(int(r["learner_steps"]) > 0 for r in rows)
