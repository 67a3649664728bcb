"""Sweep planning: settings precedence, protocol budgets and normalisation."""

import dataclasses
from pathlib import Path

import pytest

from disco_eval.config import manifests, overrides, resolve, suites
from disco_eval.errors import UserError


def _suite(tmp_path, text):
  (tmp_path / "suites").mkdir(exist_ok=True)
  (tmp_path / "suites" / "toy.toml").write_text(text)
  return suites.load_suite("toy")


TOY = """
name = "toy"
backend = "jax"
tasks = ["a", "b"]
default_protocol = "p"
[agent]
torso = "special"
torso_hidden = [7]
[protocols.p]
env_steps = 1000
num_envs = 4
rollout_len = 10
[protocols.p.normalization]
a = { min = 0.0, max = 10.0 }
[protocols.q]
env_steps = 500
[normalization]
a = { min = 0.0, max = 2.0 }
b = { min = -1.0, max = 1.0 }
"""


@pytest.fixture
def toy(tmp_path, monkeypatch):
  monkeypatch.setenv("DISCO_EVAL_MANIFESTS", str(tmp_path))
  (tmp_path / "rules").symlink_to(Path(__file__).resolve().parents[1] / "rules")
  return _suite(tmp_path, TOY)


def test_protocol_normalisation_wins_over_the_suite_table(toy):
  assert toy.normalize("a", 5.0, "p") == pytest.approx(0.5)
  assert toy.normalize("a", 5.0, "p@2000") == pytest.approx(0.5)
  assert toy.normalize("a", 1.0, "q") == pytest.approx(0.5)
  assert toy.normalize("b", 0.0, "p") == pytest.approx(0.5)


def test_budget_and_loop_settings_come_from_the_protocol(toy):
  cfg = resolve.train_config(toy.protocol("p"), None, {})
  assert cfg.num_envs == 4 and cfg.rollout_len == 10 and cfg.iterations == 25
  cfg = resolve.train_config(toy.protocol("p"), 95, {"chunk": "5"})
  assert cfg.iterations == 3 and cfg.chunk == 5
  with pytest.raises(UserError, match="valid protocols: p, q"):
    toy.protocol("z")


def test_suite_agent_table_sits_between_rule_defaults_and_overrides(toy):
  m = manifests.load_rule_manifest("disco103")
  s = resolve.rule_settings(m, toy, {})
  assert s["agent"]["torso"] == "special" and s["agent"]["torso_hidden"] == [7]
  assert s["agent"]["model_lstm_size"] == 128  # untouched rule default
  s = resolve.rule_settings(m, toy, {"agent.torso_hidden": "[9]"})
  assert s["agent"]["torso_hidden"] == [9] and s["agent"]["torso"] == "special"
  m2 = dataclasses.replace(m, suites={"toy": {"agent.torso": "mlp"}})
  assert resolve.rule_settings(m2, toy, {})["agent"]["torso"] == "mlp"


def test_keys_brought_by_the_suite_agent_table_can_be_overridden(toy):
  m = manifests.load_rule_manifest("disco103")
  toy.raw["agent"]["conv_channels"] = [32, 32]
  s = resolve.rule_settings(m, toy, {"agent.conv_channels": "[8]"})
  assert s["agent"]["conv_channels"] == [8]
  with pytest.raises(UserError, match="unknown setting 'agent.nope'"):
    resolve.rule_settings(m, toy, {"agent.nope": "1"})


def test_unknown_train_setting_is_refused():
  with pytest.raises(UserError, match="train.chunk"):
    overrides.split_overrides((("train.nope", "1"),))


def test_train_setting_must_be_an_integer(toy):
  with pytest.raises(UserError, match="train.chunk must be an integer, got 'x'"):
    resolve.train_config(toy.protocol("p"), None, {"chunk": "x"})
