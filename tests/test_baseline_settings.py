"""Baseline settings per suite and protocol: DQN exploration, PPO's ProcGen batch."""

import pytest

from disco_eval.config import manifests, resolve
from disco_eval.config.suites import load_suite
from disco_eval.rules import dqn


def _settings(rule, suite, protocol=None):
  s = load_suite(suite)
  return resolve.rule_settings(manifests.load_rule_manifest(rule), s, None, s.protocol(protocol))


@pytest.mark.parametrize("rule", ["dqn_reg", "dqn_clipped"])
@pytest.mark.parametrize(
  "suite,protocol,end,decay",
  [
    ("catch", None, 0.05, 1_000),  # classical control (Co-Reyes et al. 2021)
    ("atari", None, 0.01, 1_000_000),  # cleanrl dqn_atari: 10% of 10M
    ("minatar", None, 0.1, 100_000),  # MinAtar examples/dqn.py
    ("procgen", None, 0.01, 5_000_000),  # 10% of 50M
    ("procgen", "easy-200", 0.01, 2_500_000),
    ("crafter", "scoreboard-1m", 0.01, 100_000),
    ("nethack", "challenge", 0.01, 20_000_000),
    ("sokoban", None, 0.01, 10_000_000),
  ],
)
def test_dqn_epsilon_schedule_per_suite(rule, suite, protocol, end, decay):
  r = _settings(rule, suite, protocol)["rule"]
  assert (r["epsilon_start"], r["epsilon_end"], r["epsilon_decay_steps"]) == (1.0, end, decay)
  half = float(dqn.linear_epsilon(decay // 2, 1.0, end, decay))
  assert half == pytest.approx((1.0 + end) / 2, rel=1e-5)
  assert float(dqn.linear_epsilon(decay, 1.0, end, decay)) == pytest.approx(end)
  assert float(dqn.linear_epsilon(10 * decay, 1.0, end, decay)) == pytest.approx(end)


@pytest.mark.parametrize("rule", ["ppo", "dpo"])
def test_procgen_disco_runs_the_four_worker_batch(rule):
  disco = _settings(rule, "procgen", "disco")
  easy = _settings(rule, "procgen", "easy-200")
  # 4 workers x 64 envs x 256 steps (openai/phasic-policy-gradient, train-procgen hard mode).
  assert (disco["train"]["num_envs"], disco["train"]["rollout_len"]) == (256, 257)
  assert disco["rule"]["num_minibatches"] == 8
  # One worker x 64 envs (train-procgen easy mode).
  assert (easy["train"]["num_envs"], easy["train"]["rollout_len"]) == (64, 257)


def test_an_unknown_key_in_a_protocol_table_names_the_table(tmp_path):
  from disco_eval import paths
  from disco_eval.errors import UserError

  text = (paths.manifest_dir("rules") / "ppo.toml").read_text()
  bad = tmp_path / "ppo_bad.toml"
  bad.write_text(
    text.replace('name = "ppo"', 'name = "ppo_bad"')
    + '\n[suites.catch.protocols.reference]\n"train.no_such_key" = 1\n'
  )
  with pytest.raises(UserError, match=r"\[suites.catch.protocols.reference\]"):
    manifests.read_rule_manifest(bad)
