"""NetHack (NLE NetHackChallenge-v0): encoding, adapter and a tiny sweep with the real game."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("nle")

from disco_eval.analysis import compare  # noqa: E402
from disco_eval.envs import nethack  # noqa: E402
from disco_eval.runs import SweepSpec, run_sweep  # noqa: E402

TINY = {
  "torso": "glyph_net",
  "glyph_embed_dim": 4,
  "glyph_map_channels": [4],
  "glyph_crop_channels": [4],
  "glyph_blstats_hidden": 8,
  "glyph_hidden": 32,
  "model_lstm_size": 16,
  "model_head_hidden": [16],
}


def test_encode_layout_and_clipping():
  glyphs = np.arange(21 * 79, dtype=np.int16).reshape(21, 79)
  blstats = np.arange(27, dtype=np.int64)
  blstats[20] = 10**9
  obs = nethack.encode(glyphs, blstats)
  assert obs.shape == nethack.OBSERVATION_SHAPE and obs.dtype == np.int16
  np.testing.assert_array_equal(obs[: 21 * 79], glyphs.reshape(-1))
  assert obs[21 * 79 + 20] == 32767 and obs[21 * 79 + 5] == 5


def test_glyph_torso_reads_the_same_layout():
  from disco_eval.agents import glyph

  assert glyph.OBS_LEN == nethack.OBS_LEN
  assert (glyph.GLYPH_ROWS, glyph.GLYPH_COLS, glyph.NUM_BLSTATS) == (
    nethack.GLYPH_ROWS,
    nethack.GLYPH_COLS,
    nethack.NUM_BLSTATS,
  )


def test_env_adapter_refuses_nothing_and_returns_scores_as_rewards():
  env = nethack.NetHackEnv(seed=123)  # the seed is ignored: the env refuses seeding
  try:
    obs = env.reset()
    assert obs.shape == nethack.OBSERVATION_SHAPE
    assert (obs[: 21 * 79] >= 0).all() and (obs[: 21 * 79] <= 5976).all()
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(300):
      obs, reward, term, trunc, info = env.step(int(rng.integers(nethack.NUM_ACTIONS)))
      total += reward
      assert reward >= 0.0  # the challenge's reward: in-game score increments
      if term or trunc:
        assert set(info) == set(nethack.EPISODE_COLUMNS)
        break
  finally:
    env.close()


def test_unknown_task_is_refused():
  with pytest.raises(ValueError, match="NetHackChallenge-v0"):
    nethack.NetHackTask("NetHackScore-v0")


@pytest.mark.slow
def test_tiny_nethack_sweep_and_compare(tmp_path, disco103_npz):
  spec = SweepSpec(
    suite="nethack",
    rules=(str(disco103_npz),),
    seeds=(0,),
    protocol="challenge",
    steps=400,
    out=tmp_path,
    overrides=(
      ("train.num_envs", "4"),
      ("train.rollout_len", "20"),
      ("train.min_buffer", "2"),
      ("train.sample_entries", "1"),
      ("train.buffer_capacity", "4"),
      ("train.chunk", "5"),
      ("protocol.eval_episodes", "3"),
      ("protocol.eval_max_steps", "60"),
      *((f"agent.{k}", v if isinstance(v, str) else json.dumps(v)) for k, v in TINY.items()),
    ),
  )
  results = run_sweep(spec)
  assert [r.status for r in results] == ["complete"], [r.error for r in results]
  path, summary = results[0].path, results[0].summary
  config = json.loads((path / "config.json").read_text())
  assert config["episodes_reproducible"] is False
  assert config["protocol"]["eval_episodes"] == 3 and config["protocol"]["smoke"] is True
  assert summary["metric"] == "median_score" and summary["eval_episodes"] == 3
  assert summary["eval_truncated"] <= 3
  assert math.isfinite(summary["score"]) and math.isfinite(summary["mean_score"])
  assert summary["score"] >= 0.0
  # Nothing but the run record is written in the run folder (no ttyrecs).
  assert {p.name for p in path.iterdir()} <= {
    ".lock",
    "checkpoint",
    "config.json",
    "metrics.csv",
    "policy.npz",
    "rule_state.npz",
    "status.json",
    "summary.json",
  }
  result = compare.compare(tmp_path, reps=200)
  [group] = result.groups
  assert group.key.protocol.startswith("challenge@400+eval_episodes=3")
  assert group.norm_label.startswith("raw")
  [row] = group.per_task
  assert row.beside["mean_score"] == pytest.approx(summary["mean_score"])
  published = {p.rule: p for p in group.published}
  assert group.rules == ("disco_103",)
  disco = published["Disco103 (DiscoRL paper, published)"]
  assert math.isnan(disco.score) and disco.beside == {"mean_score": 1114.24}
  assert any("not comparable" in w for w in group.warnings)
