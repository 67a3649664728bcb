"""Each suite's `disco` protocol as DiscoRL's Fig. 2 plots it, every item with a source, the
community protocols beside it, DiscoRL's IMPALA and OpenAI's PPO reward normalisation."""

import dataclasses
import json
import math
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from disco_eval.cli import app
from disco_eval.config import manifests, resolve, suites
from disco_eval.config.run_config import RuleIdentity
from disco_eval.envs import crafter as cr
from disco_eval.errors import UserError
from disco_eval.rules import ppo
from disco_eval.rules import reward_norm as rn
from disco_eval.rules.base import Rollout

SUITES = tuple(sorted(p.stem for p in (Path(__file__).parents[1] / "suites").glob("*.toml")))
HELD_OUT = ("crafter", "nethack", "procgen", "sokoban")
COMMUNITY = {
  "procgen": ("easy-200",),
  "crafter": ("scoreboard-1m",),
  "nethack": ("challenge",),
  "sokoban": ("unfiltered-test", "hard"),
}


def _batch(protocol: suites.Protocol) -> int:
  """Trajectories per learner step."""
  return protocol.get("num_envs") * protocol.get("sample_entries")


# --- the disco protocols -----------------------------------------------------------------------


@pytest.mark.parametrize("name", HELD_OUT)
def test_disco_is_the_default_and_the_community_protocols_are_beside_it(name):
  s = suites.load_suite(name)
  assert s.default_protocol == "disco" and s.protocol().name == "disco"
  assert set(COMMUNITY[name]) <= set(s.protocols)
  assert s.protocol().get("rollout_len") == 29  # DiscoRL's trajectory length everywhere


def test_procgen_disco_is_hard_full_distribution_50m_with_192_trajectories():
  s = suites.load_suite("procgen")
  p = s.protocol("disco")
  assert p.get("env_steps") == 50_000_000 and p.get("metric") == "return"
  assert p.get("distribution_mode") == "hard" and p.get("num_levels") == 0
  assert _batch(p) == 192 and p.get("updates_per_iteration") == 1
  assert "IQM" in p.get("aggregate") and "HARD" in p.get("aggregate")
  assert s.normalization_for("starpilot", "disco") == {"min": 1.5, "max": 35.0}
  assert "Extended Data Table 6" in p.sources["sample_entries"]
  assert "num_levels" in p.disagreement


def test_procgen_cpu_batch_is_a_named_override_that_shows_in_the_label():
  s = suites.load_suite("procgen")
  p = s.protocol("disco+cpu-small-batch")
  assert p.name == "disco+cpu-small-batch" and p.base == "disco"
  assert _batch(p) == 64 and p.get("updates_per_iteration") == 3
  assert p.get("env_steps") == 50_000_000 and not p.unsourced()
  manifest = manifests.load_rule_manifest("impala")
  rule = RuleIdentity("impala", manifest.kind, None, None)
  cfg = resolve.resolve(s, "coinrun", rule, manifest, protocol=p.name, steps=40_000)
  assert cfg.label == "disco+cpu-small-batch@40000"
  assert cfg.train.sample_entries == 1 and cfg.train.updates_per_iteration == 3
  full = resolve.resolve(s, "coinrun", rule, manifest)
  assert full.label == "disco" and full.train.sample_entries == 3
  # The label's base finds the protocol's constants.
  assert s.normalization_for("coinrun", cfg.label) == {"min": 5.0, "max": 10.0}
  with pytest.raises(UserError, match="unknown override 'nope'.*cpu-small-batch"):
    s.protocol("disco+nope")


def test_crafter_disco_is_20m_episode_return_and_scoreboard_is_1m_score():
  s = suites.load_suite("crafter")
  p = s.protocol("disco")
  assert p.get("env_steps") == 20_000_000 and p.get("metric") == "return"
  assert p.get("score_window_steps") == 100_000
  assert set(p.get("reported_beside")) == {"crafter_score", "reward"}
  assert "our choice" in p.sources["score_window_steps"]
  board = s.protocol("scoreboard-1m")
  assert board.get("env_steps") == 1_000_000 and board.get("metric") == "score"
  assert "print_reward.py" in board.sources["reward_description"]


def test_nethack_disco_is_2b_mean_score_and_says_the_sources_disagree():
  s = suites.load_suite("nethack")
  p = s.protocol("disco")
  assert s.tasks == ("NetHackChallenge-v0",)
  assert p.get("env_steps") == 2_000_000_000 and p.get("metric") == "mean_score"
  assert p.get("reported_beside") == ["median_score"]
  assert "Extended Data Table 6" in p.disagreement["env_steps"]
  assert "2,000M" in p.disagreement["env_steps"]
  challenge = s.protocol("challenge")
  assert challenge.get("metric") == "median_score" and challenge.get("eval_episodes") == 4096


def test_sokoban_disco_is_100m_mean_return_with_solve_rate_beside():
  s = suites.load_suite("sokoban")
  p = s.protocol("disco")
  assert p.get("env_steps") == 100_000_000 and p.get("metric") == "return"
  assert p.get("reported_beside") == ["solve_rate"]
  assert p.get("eval_levels") == "unfiltered-test" and p.get("rollout_len") == 29
  assert "disco_rl" in p.sources["rollout_len"]
  assert "env_steps" in p.disagreement
  test = s.protocol("unfiltered-test")
  assert test.get("metric") == "solve_rate" and test.get("eval_levels") == "unfiltered-test"


# --- sources ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUITES)
def test_every_item_of_every_protocol_and_override_has_a_source(name):
  s = suites.load_suite(name)
  for p in [*s.protocols.values(), *s.overrides.values()]:
    assert p.unsourced() == [], (name, p.name)
    for text in [*p.sources.values(), *p.disagreement.values()]:
      assert len(text) > 10


@pytest.mark.parametrize("name", SUITES)
def test_published_rows_carry_metric_and_budget(name):
  s = suites.load_suite(name)
  for table in ("published", "published_other_metric"):
    for e in s.raw.get(table, []):
      where = (name, e["rule"], e.get("task"))
      assert isinstance(e.get("metric"), str) and e["metric"], where
      steps = e.get("env_steps")
      assert isinstance(steps, int) and steps >= 0, where
      if steps == 0:
        assert e.get("budget_note"), where
      assert e.get("read_off") in (None, "figure"), where
      assert e["protocol"] in s.protocols, where
      if table == "published":
        assert e["metric"] == s.protocols[e["protocol"]].get("metric"), where


def test_nethack_leaderboard_lines_are_labelled_by_extended_data_table_4_ranks():
  s = suites.load_suite("nethack")
  rows = {e["rule"].split(" (")[0]: e for e in s.raw["published"] if "Leaderboard" in e["rule"]}
  # Ranked as Extended Data Table 4 ranks them (by median): Best = RAPH, 2nd = KakaoBrain.
  assert rows["Leaderboard best"]["score"] == pytest.approx(1350.81)
  assert "RAPH" in rows["Leaderboard best"]["rule"]
  assert rows["Leaderboard 2nd"]["score"] == pytest.approx(2062.79)
  assert "highest mean" in rows["Leaderboard 2nd"]["rule"]
  assert all(e["metric"] == "mean_score" for e in rows.values())


def _manifest(tmp_path, extra: str):
  path = tmp_path / "toy.toml"
  path.write_text(
    'name = "toy"\nbackend = "jax"\ntasks = ["catch"]\ndefault_protocol = "p"\n'
    '[protocols.p]\nenv_steps = 100\nmetric = "return"\n' + extra
  )
  return path


def test_sources_naming_no_item_or_empty_are_one_line_errors(tmp_path):
  with pytest.raises(UserError, match="'budget' is not an item"):
    suites._read(_manifest(tmp_path, '[protocols.p.sources]\nbudget = "Oh et al. 2025"\n'))
  with pytest.raises(UserError, match="'metric' must be a non-empty string"):
    suites._read(_manifest(tmp_path, '[protocols.p.sources]\nmetric = ""\n'))
  p = suites._read(_manifest(tmp_path, '[protocols.p.sources]\nmetric = "our choice: x"\n'))
  assert p.protocol().unsourced() == ["env_steps"]
  assert "sources" not in p.protocol().settings  # documentation, not a setting


# --- suites show -------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "name,protocol",
  [(n, p) for n in SUITES for p in suites.load_suite(n).protocols]
  + [("procgen", "disco+cpu-small-batch")],
)
def test_suites_show_prints_items_sources_and_published_budgets(name, protocol):
  res = CliRunner().invoke(
    app, ["suites", "show", name, "--protocol", protocol], env={"COLUMNS": "240"}
  )
  assert res.exit_code == 0, res.output
  p = suites.load_suite(name).protocol(protocol)
  assert "items and sources" in res.output and "(no source)" not in res.output
  assert "our choice" in res.output
  assert re.search(r"env_steps\s*│\s*" + str(p.get("env_steps")), res.output)
  if suites.published_entries(suites.load_suite(name), protocol):
    assert "budget (env steps)" in res.output and p.get("metric") in res.output


def test_suites_show_json_has_sources_and_the_published_fields():
  res = CliRunner().invoke(app, ["suites", "show", "nethack", "--json"])
  assert res.exit_code == 0, res.output
  info = json.loads(res.output)
  assert info["protocol"] == "disco" and "env_steps" in info["disagreement"]
  assert set(info["sources"]) == set(info["settings"])
  disco103 = [r for r in info["published"] if r["rule"].startswith("Disco103")]
  assert disco103[0]["env_steps"] == 2_000_000_000 and disco103[0]["metric"] == "mean_score"


# --- Crafter figures ---------------------------------------------------------------------------


def _rows(spec):
  zero = {f"ach_{k}": 0.0 for k in cr.ACHIEVEMENTS}
  return [{"env_steps": s, "episodes": n, "avg_return": r, **zero} for s, n, r in spec]


def test_scoreboard_reward_is_the_first_episode_ending_in_the_last_100k_steps():
  rows = _rows([(50_000, 1, 1.0), (150_000, 1, 2.0), (190_000, 0, math.nan), (260_000, 1, 4.0)])
  # The last episode ends at 260,000: the first ending at or after 160,000 is at 260,000 itself
  # (150,000 is too early), so the reward is 4; an average over all episodes would say 2.33.
  assert cr.scoreboard_reward(rows) == 4.0
  rows = _rows([(50_000, 1, 1.0), (170_000, 2, 3.0), (240_000, 1, 5.0), (260_000, 1, 7.0)])
  assert cr.scoreboard_reward(rows) == 3.0  # two episodes ended there: their mean
  assert math.isnan(cr.scoreboard_reward(_rows([(100, 0, math.nan)])))


def test_disco_figures_score_the_mean_return_of_the_last_window():
  rows = _rows([(50_000, 2, 1.0), (150_000, 1, 2.0), (200_000, 3, 6.0)])
  p = suites.load_suite("crafter").protocol("disco")
  out = cr.figures_for(rows, p)
  # Episodes ending after 200,000 - 100,000: one of return 2 and three of mean 6.
  assert out["score"] == pytest.approx((2.0 + 3 * 6.0) / 4) and out["score_episodes"] == 4
  assert out["crafter_score"] == pytest.approx(0.0) and out["reward"] == 2.0
  board = cr.figures_for(rows, suites.load_suite("crafter").protocol("scoreboard-1m"))
  assert board["score"] == pytest.approx(0.0) and "crafter_score" not in board


# --- DiscoRL's IMPALA --------------------------------------------------------------------------


def test_impala_has_disco103s_agent_and_optimiser_and_impala_paper_keeps_the_paper():
  impala = manifests.load_rule_manifest("impala")
  disco = manifests.load_rule_manifest("disco103")
  paper = manifests.load_rule_manifest("impala_paper")
  mine, theirs = impala.settings(), disco.settings()
  assert mine["agent"] == theirs["agent"] and mine["optimizer"] == theirs["optimizer"]
  # The same per-suite settings, but Catch (not a suite of the paper): IMPALA's own learning
  # rate there (rules/impala.toml: Disco103's 1e-2 collapses this loss).
  assert {k: v for k, v in impala.suites.items() if k != "catch"} == {
    k: v for k, v in disco.suites.items() if k != "catch"
  }
  assert impala.suites["catch"]["optimizer.learning_rate"] == 5e-4
  assert mine["hyperparams"]["discount_factor"] == theirs["hyperparams"]["discount_factor"]
  assert mine["hyperparams"]["vtrace_lambda"] == 1.0 and impala.kind == "actor_critic"
  assert paper.settings()["optimizer"]["learning_rate"] == 6e-4 and paper.kind == "actor_critic"


# --- PPO reward normalisation --------------------------------------------------------------------


def _baselines_vecnormalize(rewards, dones, gamma, clip, eps):
  """openai/baselines VecNormalize(ob=False).step_wait over [T, B] rewards, as a plain loop."""
  t, b = rewards.shape
  ret, mean, var, count = np.zeros(b), 0.0, 1.0, 1e-4
  out = np.zeros((t, b))
  for i in range(t):
    ret = ret * gamma + rewards[i]
    bm, bv, bc = ret.mean(), ret.var(), b
    delta, tot = bm - mean, count + bc
    mean, var = mean + delta * bc / tot, (var * count + bv * bc + delta**2 * count * bc / tot) / tot
    count = tot
    out[i] = np.clip(rewards[i] / np.sqrt(var + eps), -clip, clip)
    ret[dones[i]] = 0.0
  return out


def _normalize(state, rewards, valid=None, terminal=None, gamma=0.5):
  rewards = jnp.asarray(rewards, jnp.float32)
  valid = jnp.ones_like(rewards) if valid is None else jnp.asarray(valid)
  terminal = jnp.zeros(rewards.shape, bool) if terminal is None else jnp.asarray(terminal)
  return rn.normalize(state, rewards, valid, terminal, gamma, 10.0, 1e-8)


def test_reward_norm_on_hand_computed_returns():
  # One env, gamma 0.5, rewards 2, 0, 1: returns 2, 1, 1.5. The first reward meets a variance
  # of ~5e-4 (one return, the 1e-4 prior count) and is clipped to 10; the third is divided by
  # the std of {2, 1, 1.5} (population variance 1/6): sqrt(6).
  normed, state = _normalize(rn.init(), [[2.0], [0.0], [1.0]], terminal=[[0], [0], [1]])
  np.testing.assert_allclose(np.asarray(normed)[:, 0], [10.0, 0.0, math.sqrt(6)], rtol=1e-3)
  assert float(state.mean) == pytest.approx(1.5, rel=1e-3)
  assert float(state.var) == pytest.approx(1 / 6, rel=1e-3)
  assert float(state.ret[0]) == 0.0  # the episode ended: its running return restarts


def test_reward_norm_matches_baselines_and_carries_across_batches():
  rng = np.random.default_rng(0)
  t, b = 12, 3
  rewards = rng.normal(size=(t, b)) * 3
  dones = rng.random((t, b)) < 0.2
  want = _baselines_vecnormalize(rewards, dones, 0.5, 10.0, 1e-8)
  whole, _ = _normalize(rn.init(), rewards, terminal=dones)
  np.testing.assert_allclose(np.asarray(whole), want, rtol=2e-4, atol=1e-5)
  first, state = _normalize(rn.init(), rewards[:5], terminal=dones[:5])
  second, _ = _normalize(state, rewards[5:], terminal=dones[5:])
  np.testing.assert_allclose(np.concatenate([first, second]), want, rtol=2e-4, atol=1e-5)


def test_reward_norm_skips_masked_transitions():
  rewards = np.array([[2.0], [0.0], [1.0]])
  plain, s1 = _normalize(rn.init(), rewards)
  padded = np.array([[2.0], [0.0], [0.0], [1.0]])
  valid = np.array([[1.0], [1.0], [0.0], [1.0]])
  masked, s2 = _normalize(rn.init(), padded, valid=valid)
  np.testing.assert_allclose(np.asarray(masked)[[0, 1, 3]], np.asarray(plain), rtol=1e-6)
  assert float(masked[2, 0]) == 0.0 and float(s1.count) == float(s2.count)


def test_ppo_on_procgen_normalises_rewards_in_its_state():
  s = suites.load_suite("procgen")
  manifest = manifests.load_rule_manifest("ppo")
  rule = RuleIdentity("ppo", manifest.kind, None, None)
  cfg = resolve.resolve(s, "coinrun", rule, manifest)
  assert cfg.settings["rule"]["reward_norm"] is True
  assert cfg.settings["rule"]["reward_norm_gamma"] == 0.99  # VecNormalize's default, not 0.999
  assert (
    resolve.resolve(suites.load_suite("catch"), "catch", rule, manifest).settings["rule"][
      "reward_norm"
    ]
    is False
  )
  agent = ppo.from_settings(cfg.settings)
  t, b, a = 4, 2, 3
  batch = Rollout(
    jnp.zeros((t + 1, b, 1)),
    jnp.zeros((t + 1, b), jnp.int32),
    jnp.full((t + 1, b), 5.0),
    jnp.ones((t + 1, b)),
    jnp.zeros((t + 1, b, a)),
  )
  out = {"logits": jnp.zeros((t + 1, b, a)), "v": jnp.zeros((t + 1, b, 1))}
  state = agent.init_state(None, None)
  targets, state, logs = agent.targets(None, state, batch, out, None, None)
  assert float(state.count) == pytest.approx(t * b, abs=1e-3)
  assert "reward_norm_std" in logs
  # Raw rewards of 5 would give returns near 5 * (1 + 0.999 * 0.95 + ...); normalised ones
  # are divided by the std of the running returns, so they differ.
  raw = ppo.PPO(dataclasses.replace(agent.cfg, reward_norm=False))
  raw_targets, _, _ = raw.targets(None, (), batch, out, None, None)
  assert not np.allclose(np.asarray(targets.returns), np.asarray(raw_targets.returns))


def test_every_agent_item_has_a_source():
  for suite in suites.list_suites():
    agent = suite.raw.get("agent", {})
    cited = suite.raw.get("agent_sources", {})
    missing = [k for k in agent if not str(cited.get(k, "")).strip()]
    assert not missing, f"suites/{suite.name}.toml [agent_sources] lacks {missing}"
  for name in ("disco103", "impala"):
    manifest = manifests.load_rule_manifest(name)
    missing = [k for k in manifest.agent if f"agent.{k}" not in manifest.sources]
    assert not missing, f"rules/{name}.toml [sources] lacks agent.{missing}"
