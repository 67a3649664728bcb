"""Tests of the rule manifests in rules/*.toml and their settings."""

from pathlib import Path

import pytest

from disco_eval.config import manifests
from disco_eval.config.resolve import rule_settings
from disco_eval.config.suites import load_suite
from disco_eval.errors import UserError

VALID_MANIFEST = """
name = "{name}"
kind = "disco"
category = "discovered-weights"
discovered_on = ["catch"]
architecture = "disco103"
description = "A test rule."
filename = "x.npz"
sha256 = "{sha}"
licence = "MIT"
citation = "Nobody (2025)."

[optimizer]
learning_rate = 3e-4
"""


def _write_manifests(root: Path, monkeypatch: pytest.MonkeyPatch, **files: str) -> Path:
  """Point DISCO_EVAL_MANIFESTS at `root` holding rules/NAME.toml = text."""
  (root / "rules").mkdir(parents=True)
  for name, text in files.items():
    (root / "rules" / f"{name}.toml").write_text(text)
  monkeypatch.setenv("DISCO_EVAL_MANIFESTS", str(root))
  return root / "rules"


def test_list_shows_builtin_rules():
  found = manifests.list_rule_manifests()
  names = [m.name for m in found]
  assert names == sorted(names)
  assert {"disco103", "actor_critic"} <= set(names)


def test_disco103_fields():
  m = manifests.load_rule_manifest("disco103")
  assert m.kind == "disco"
  assert m.architecture == "disco103"
  assert m.filename == "disco_103.npz"
  assert m.sha256 == "dac840a15b81e8805326363458c33979626172618f620d9e6e170315388530aa"
  assert m.source_url.startswith("https://")
  assert m.learned
  assert m.path.name == "disco103.toml"
  assert m.suites["catch"] == {"optimizer.learning_rate": 1e-2}


def test_actor_critic_is_hand_designed():
  m = manifests.load_rule_manifest("actor_critic")
  assert m.filename is None and m.sha256 is None and m.architecture is None
  assert not m.learned
  assert m.hyperparams["entropy_cost"] == 0.2


def test_unknown_rule_lists_known_ones():
  with pytest.raises(UserError) as info:
    manifests.load_rule_manifest("nope")
  message = str(info.value)
  assert message.startswith("unknown rule 'nope'; known rules: ")
  assert "actor_critic, disco103" in message
  assert ".npz" in message


@pytest.mark.parametrize("name", ["../rules/disco103", "", ".hidden", "a/b"])
def test_odd_rule_names_are_unknown(name):
  with pytest.raises(UserError, match="unknown rule"):
    manifests.load_rule_manifest(name)


def test_settings_suite_override():
  m = manifests.load_rule_manifest("disco103")
  assert m.settings()["optimizer"]["learning_rate"] == 3e-4
  assert rule_settings(m, load_suite("catch"))["optimizer"]["learning_rate"] == 1e-2
  assert rule_settings(m, load_suite("procgen"))["optimizer"]["learning_rate"] == 3e-4
  assert set(m.settings()) == {"hyperparams", "rule", "agent", "optimizer", "train"}
  assert m.settings()["train"] == {}  # Disco103 runs the protocol's loop


def test_settings_user_overrides_apply_after_suite():
  m = manifests.load_rule_manifest("disco103")
  s = rule_settings(
    m,
    load_suite("catch"),
    {
      "optimizer.learning_rate": 1,
      "hyperparams.value_cost": "0.5",
      "agent.torso_hidden": [64, 64],
      "rule.num_bins": "51",
    },
  )
  assert s["optimizer"]["learning_rate"] == 1.0
  assert isinstance(s["optimizer"]["learning_rate"], float)
  assert s["hyperparams"]["value_cost"] == 0.5
  assert s["agent"]["torso_hidden"] == [64, 64]
  assert s["rule"]["num_bins"] == 51


def test_settings_is_a_deep_copy():
  m = manifests.load_rule_manifest("disco103")
  s = m.settings()
  s["agent"]["torso_hidden"].append(1)
  s["optimizer"]["learning_rate"] = 5.0
  assert m.agent["torso_hidden"] == [512, 512]
  assert m.settings()["optimizer"]["learning_rate"] == 3e-4


@pytest.mark.parametrize(
  "key, expected",
  [
    (
      "optimizer.lr",
      "valid keys in [optimizer]: b1, b2, eps, learning_rate, lr_end, lr_horizon_env_steps, "
      "lr_schedule, lr_warmup_env_steps, max_abs_update, weight_decay",
    ),
    ("optimiser.learning_rate", "agent, hyperparams, optimizer, rule"),
    ("learning_rate", "agent, hyperparams, optimizer, rule"),
  ],
)
def test_bad_override_key_names_valid_keys(key, expected):
  m = manifests.load_rule_manifest("disco103")
  with pytest.raises(UserError) as info:
    rule_settings(m, load_suite("catch"), {key: 1.0})
  assert f"unknown setting '{key}'" in str(info.value)
  assert expected in str(info.value)


@pytest.mark.parametrize(
  "key, value",
  [
    ("rule.num_bins", 1.5),
    ("rule.num_bins", True),
    ("agent.torso", 3),
    ("optimizer.learning_rate", "fast"),
    ("agent.torso_hidden", [1.5]),
  ],
)
def test_bad_override_type(key, value):
  m = manifests.load_rule_manifest("disco103")
  with pytest.raises(UserError, match=key.replace(".", r"\.")):
    rule_settings(m, load_suite("catch"), {key: value})


def test_missing_required_field_names_file_and_field(tmp_path, monkeypatch):
  text = VALID_MANIFEST.format(name="broken", sha="0" * 64).replace('licence = "MIT"\n', "")
  folder = _write_manifests(tmp_path, monkeypatch, broken=text)
  with pytest.raises(UserError) as info:
    manifests.load_rule_manifest("broken")
  assert str(info.value) == (f"{folder / 'broken.toml'}: missing required field 'licence'")


@pytest.mark.parametrize(
  "edit, expected",
  [
    (('sha256 = "{sha}"\n', ""), "field 'sha256' is required"),
    (('sha256 = "{sha}"', 'sha256 = "abc"'), "64 lowercase hex"),
    (('name = "{name}"', 'name = "other"'), "make them match"),
    (('kind = "disco"', "kind = 3"), "field 'kind' must be a non-empty string"),
    (("[optimizer]", "[optimiser]"), "unknown field 'optimiser'"),
    (
      ("learning_rate = 3e-4", 'learning_rate = 3e-4\n[suites.catch]\n"optimizer.lr" = 1.0'),
      "unknown setting 'optimizer.lr'",
    ),
    (("learning_rate = 3e-4", "learning_rate = "), "invalid TOML"),
  ],
)
def test_invalid_manifests(tmp_path, monkeypatch, edit, expected):
  text = VALID_MANIFEST.replace(*edit).format(name="bad", sha="0" * 64)
  _write_manifests(tmp_path, monkeypatch, bad=text)
  with pytest.raises(UserError) as info:
    manifests.load_rule_manifest("bad")
  assert expected in str(info.value)
  assert "bad.toml" in str(info.value)


def test_bare_dotted_suite_keys_are_accepted(tmp_path, monkeypatch):
  catch = load_suite("catch")  # before the manifests folder moves
  text = VALID_MANIFEST.format(name="ok", sha="0" * 64)
  text += "\n[suites.catch]\noptimizer.learning_rate = 1e-2\n"
  _write_manifests(tmp_path, monkeypatch, ok=text)
  m = manifests.load_rule_manifest("ok")
  assert rule_settings(m, catch)["optimizer"]["learning_rate"] == 1e-2


def test_builtin_manifests_declare_category_and_discovery():
  by_name = {m.name: m for m in manifests.list_rule_manifests()}
  disco = by_name["disco103"]
  assert disco.category == "discovered-weights"
  assert disco.discovered_on == ("atari", "procgen", "dmlab-30")
  assert not disco.held_out_on("atari")
  assert not disco.held_out_on("procgen") and disco.held_out_on("crafter")
  assert by_name["ppo"].category == "hand-designed" and by_name["ppo"].held_out_on("procgen")
  assert by_name["ppo"].category_label == "hand-designed"


@pytest.mark.parametrize(
  "edit, message",
  [
    (('category = "discovered-weights"', 'category = "magic"'), "field 'category' is 'magic'"),
    (('discovered_on = ["catch"]\n', ""), "needs 'discovered_on'"),
    (('category = "discovered-weights"', 'category = "hand-designed"'), "has no 'discovered_on'"),
    (('discovered_on = ["catch"]', "discovered_on = 3"), "must be a list of environment names"),
  ],
)
def test_category_errors(edit, message, tmp_path, monkeypatch):
  text = VALID_MANIFEST.format(name="broken", sha="0" * 64).replace(*edit)
  folder = _write_manifests(tmp_path, monkeypatch, broken=text)
  with pytest.raises(UserError, match=message):
    manifests.load_rule_manifest("broken")
  assert folder
