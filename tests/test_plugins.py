"""Plug-in rules: a manifest and a module outside the package, entry points, provenance.

The example rule (examples/reinforce_baseline.*) is copied into a temporary folder and
trained from there; installed packages are faked by a ``*.dist-info`` folder on sys.path
(no pip install).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval import launch, store
from disco_eval.analysis import rule_kinds
from disco_eval.config import manifests
from disco_eval.config.resolve import rule_settings
from disco_eval.config.suites import load_suite
from disco_eval.errors import UserError
from disco_eval.rules import plugins, registry, weights
from disco_eval.rules.base import Rollout
from disco_eval.runs import SweepSpec, plan, run_sweep

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# Small on-policy loop: 4 envs x 8 transitions per update.
SMALL = (
  ("train.num_envs", "4"),
  ("train.rollout_len", "9"),
  ("agent.torso_hidden", "[32]"),
  ("protocol.eval_episodes", "32"),
)


def sha256(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def example(tmp_path: Path) -> Path:
  """The example rule's manifest, copied with its module outside the package folder."""
  folder = tmp_path / "elsewhere"
  folder.mkdir()
  for name in ("reinforce_baseline.py", "reinforce_baseline.toml"):
    shutil.copyfile(EXAMPLES / name, folder / name)
  return folder / "reinforce_baseline.toml"


def write_rule(folder: Path, source: str, module: str = "my_rule.py:make_rule") -> Path:
  """A plug-in manifest `folder`/my_rule.toml (settings of the example) and its module."""
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "my_rule.py").write_text(source)
  text = (EXAMPLES / "reinforce_baseline.toml").read_text()
  text = text.replace('name = "reinforce_baseline"', 'name = "my_rule"')
  text = text.replace('module = "reinforce_baseline.py:make_rule"', f'module = "{module}"')
  path = folder / "my_rule.toml"
  path.write_text(text)
  return path


def plan_of(rule: str, out: Path, steps: int = 600) -> plan.Plan:
  return plan.plan_sweep(SweepSpec("catch", rules=(rule,), seeds=(0,), steps=steps, out=out))


# --- loading from a path -------------------------------------------------------------------


def test_example_manifest_is_a_plugin_and_its_factory_builds_the_rule(example):
  m = manifests.load_manifest_file(example)
  assert (m.kind, m.module, m.category) == (
    "plugin",
    "reinforce_baseline.py:make_rule",
    "hand-designed",
  )
  assert plugins.module_file(m) == example.parent / "reinforce_baseline.py"
  rule = registry.build_manifest_rule(m, m.settings(), "rb")
  assert rule.name == "rb" and (rule.num_epochs, rule.num_minibatches) == (1, 1)
  assert rule.output_spec(3).flat == {"logits": (3,), "v": (1,)}
  resolved = weights.resolve_rule(str(example))
  assert resolved.label == "reinforce_baseline" and resolved.params is None
  assert resolved.module.sha256 == sha256(example.parent / "reinforce_baseline.py")
  assert resolved.module.version is None  # a file, no __version__


@pytest.mark.slow
def test_example_trains_on_catch_from_outside_the_package_and_records_its_source(example, tmp_path):
  out = tmp_path / "results"
  spec = SweepSpec("catch", rules=(str(example),), seeds=(0,), steps=2048, out=out, overrides=SMALL)
  (result,) = run_sweep(spec)
  assert result.status == "complete", result.error
  assert result.summary["env_steps"] >= 2048 and -1.0 <= result.summary["score"] <= 1.0
  config = json.loads((result.path / "config.json").read_text())
  assert config["rule"]["kind"] == "plugin"
  assert config["rule"]["source"] == str(example)
  module = dict(config["rule"]["module"])
  assert len(module.pop("sources_sha256")) == 64  # every source file of the plug-in's folder
  assert module == {
    "factory": "reinforce_baseline.py:make_rule",
    "sha256": sha256(example.parent / "reinforce_baseline.py"),
    "version": None,
  }
  assert config["settings"]["hyperparams"]["entropy_cost"] == 0.01
  assert config["train"]["num_envs"] == 4 and config["train"]["buffer_capacity"] == 1
  assert result.path == store.run_dir(out, "catch", "catch", "reinforce_baseline", 0)
  # Reports read the plug-in's category from the manifest its record names.
  kind = rule_kinds.rule_kind(config["rule"], "catch")
  assert (kind.category, kind.held_out) == ("hand-designed", "yes")


def test_changed_module_source_is_a_changed_setting_on_resume(example, tmp_path):
  out = tmp_path / "results"
  spec = SweepSpec("catch", rules=(str(example),), seeds=(0,), steps=64, out=out, overrides=SMALL)
  (first,) = run_sweep(spec)
  assert first.status == "complete", first.error
  (again,) = run_sweep(spec)  # same source: the finished run is recognised
  assert again.status in ("skipped", "complete")
  module = example.parent / "reinforce_baseline.py"
  module.write_text(module.read_text() + "\n# a change\n")
  with pytest.raises(UserError, match=r"rule\.module\.sha256 is .* there but .* now"):
    run_sweep(spec)


# --- errors ------------------------------------------------------------------------------


BROKEN_RETURN = """
def make_rule(settings, name, axis_name=None):
  return {"name": name}
"""


@pytest.mark.parametrize(
  "source, module, where, expected",
  [
    ("", "missing.py:make_rule", "resolve", r"module file .*missing\.py not found; fix 'module'"),
    (
      "def other(s, name, axis_name=None): pass\n",
      "my_rule.py:make_rule",
      "resolve",
      r"my_rule\.py has no function 'make_rule'; it defines: other; fix 'module'",
    ),
    (
      "x = 1 / 0\n",
      "my_rule.py:make_rule",
      "resolve",
      r"importing .*my_rule\.py failed: ZeroDivisionError: division by zero \(line 1\); fix",
    ),
    ("def make_rule(:\n", "my_rule.py:make_rule", "resolve", r"SyntaxError: .*\(line 1\)"),
    (
      "",
      "no_such_pkg_p16.rules:make_rule",
      "resolve",
      r"module 'no_such_pkg_p16.rules' not found; install the package",
    ),
    (
      BROKEN_RETURN,
      "my_rule.py:make_rule",
      "plan",
      r"returned a dict without name, num_epochs, num_minibatches, output_spec, init_state, targets, "
      r"loss; return an update rule",
    ),
    (
      "def make_rule(settings, name):\n  return None\n",
      "my_rule.py:make_rule",
      "plan",
      r"make_rule\(settings, name=, axis_name=\) raised TypeError: .*axis_name",
    ),
  ],
)
def test_plugin_errors_are_one_line_and_name_the_fix(tmp_path, source, module, where, expected):
  path = write_rule(tmp_path / "rule", source, module)
  with pytest.raises(UserError, match=expected) as e:
    if where == "resolve":
      weights.resolve_rule(str(path))
    else:
      plan_of(str(path), tmp_path / "out")
  assert "\n" not in str(e.value)
  assert not (tmp_path / "out").exists()


def test_settings_the_example_does_not_declare_fail_while_planning(example, tmp_path):
  text = example.read_text().replace("[rule]\n", "[rule]\nno_such_key = 1\n")
  example.write_text(text)
  with pytest.raises(UserError, match=r"unknown key 'no_such_key' in \[rule\]"):
    plan_of(str(example), tmp_path / "out")


@pytest.mark.parametrize(
  "edit, expected",
  [
    (('module = "reinforce_baseline.py:make_rule"\n', ""), r"needs field 'module'"),
    (('kind = "plugin"', 'kind = "ppo"'), r"field 'module' is for plug-in rules"),
    (('"reinforce_baseline.py:make_rule"', '"reinforce_baseline.py"'), r"write SOURCE:FUNCTION"),
    (('category = "hand-designed"\n', ""), r"missing required field 'category'"),
    (('"hand-designed"', '"discovered-closed-form"'), r"needs 'discovered_on'"),
  ],
)
def test_plugin_manifest_fields_are_checked(example, edit, expected):
  example.write_text(example.read_text().replace(*edit))
  with pytest.raises(UserError, match=expected):
    manifests.load_manifest_file(example)


def test_a_manifest_may_not_take_a_builtin_rules_name(example, tmp_path):
  clash = tmp_path / "x" / "ppo.toml"
  clash.parent.mkdir()
  clash.write_text(example.read_text().replace('name = "reinforce_baseline"', 'name = "ppo"'))
  with pytest.raises(UserError, match="'ppo' is a built-in rule's; rename"):
    weights.resolve_rule(str(clash))
  with pytest.raises(UserError, match="rule manifest not found"):
    weights.resolve_rule(str(tmp_path / "nope.toml"))


def test_cli_run_with_a_broken_plugin_is_one_line(tmp_path):
  path = write_rule(tmp_path / "rule", "def other(): pass\n")
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  cmd = [sys.executable, "-m", "disco_eval.cli", "run", "catch", "--rule", str(path)]
  done = subprocess.run(
    [*cmd, "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env
  )
  assert done.returncode == 1
  (line,) = done.stderr.strip().splitlines()
  assert line.startswith("error:") and "has no function 'make_rule'" in line
  assert not (tmp_path / "o").exists()


# --- entry points --------------------------------------------------------------------------


def fake_package(site: Path, dist: str, package: str, body: str, entries: dict[str, str]) -> None:
  """An installed distribution `dist` 0.1 on `site`: package `package` with `body` in its
  __init__.py, entry points `entries` (name -> "module:function") in group disco_eval.rules."""
  (site / package).mkdir(parents=True)
  (site / package / "__init__.py").write_text(body)
  info = site / f"{dist.replace('-', '_')}-0.1.dist-info"  # as wheels name it
  info.mkdir()
  (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
  (info / "top_level.txt").write_text(package + "\n")
  lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
  (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{lines}")


PACKAGE = """
from pathlib import Path

HERE = Path(__file__).parent


def path_manifest():
  return str(HERE / "pkg_rule.toml")


def dict_manifest():
  return {
    "name": "pkg_dict",
    "kind": "plugin",
    "module": "p16pkg.rule:make_rule",
    "category": "discovered-closed-form",
    "discovered_on": ["minatar"],
    "description": "a rule given as a dict",
    "licence": "MIT",
    "citation": "none",
    "hyperparams": {"discount_factor": 0.99, "value_cost": 0.5, "entropy_cost": 0.01},
    "rule": {"normalize_adv": True},
  }


def broken():
  raise RuntimeError("boom")
"""


@pytest.fixture
def installed(tmp_path: Path, example: Path, monkeypatch) -> Path:
  """A fake installed package p16pkg registering pkg_rule (a path), pkg_dict (a dict) and
  pkg_broken (whose function fails)."""
  site = tmp_path / "site"
  fake_package(
    site,
    "p16-rules-pkg",
    "p16pkg",
    PACKAGE,
    {
      "pkg_rule": "p16pkg:path_manifest",
      "pkg_dict": "p16pkg:dict_manifest",
      "pkg_broken": "p16pkg:broken",
    },
  )
  shutil.copyfile(example.parent / "reinforce_baseline.py", site / "p16pkg" / "rule.py")
  text = example.read_text().replace('name = "reinforce_baseline"', 'name = "pkg_rule"')
  text = text.replace('"reinforce_baseline.py:make_rule"', '"p16pkg.rule:make_rule"')
  (site / "p16pkg" / "pkg_rule.toml").write_text(text)
  monkeypatch.syspath_prepend(str(site))
  yield site
  for name in [n for n in sys.modules if n == "p16pkg" or n.startswith("p16pkg.")]:
    del sys.modules[name]


def test_installed_packages_register_rules_by_entry_point(installed, tmp_path):
  found, problems = plugins.entry_point_manifests()
  assert [m.name for m in found] == ["pkg_dict", "pkg_rule"]
  (problem,) = problems
  assert "entry point 'pkg_broken'" in problem and "RuntimeError: boom" in problem
  rule = weights.resolve_rule("pkg_rule")
  assert rule.label == "pkg_rule" and rule.manifest.module == "p16pkg.rule:make_rule"
  assert rule.module.version == "0.1"  # the distribution's
  assert rule.module.sha256 == sha256(installed / "p16pkg" / "rule.py")
  planned = plan_of("pkg_dict", tmp_path / "out")
  assert [u.label for u in planned.units] == ["pkg_dict"]
  assert planned.rules[0].manifest.discovered_on == ("minatar",)
  with pytest.raises(UserError, match="unknown rule 'pkg_nope'"):
    weights.resolve_rule("pkg_nope")


def test_rules_list_shows_category_and_discovery_of_builtin_and_installed_rules(installed):
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(REPO)])}
  cmd = [sys.executable, "-m", "disco_eval.cli", "rules", "list", "--json"]
  done = subprocess.run(cmd, capture_output=True, text=True, env=env)
  assert done.returncode == 0, done.stderr
  rows = {r["name"]: r for r in json.loads(done.stdout)}
  assert rows["disco103"]["category_label"] == "discovered (learned weights)"
  assert rows["disco103"]["discovered_on"] == ["atari", "procgen", "dmlab-30"]
  assert (rows["ppo"]["category"], rows["ppo"]["discovered_on"]) == ("hand-designed", [])
  assert rows["pkg_rule"]["source"] == "installed" and rows["pkg_rule"]["kind"] == "plugin"
  assert rows["pkg_dict"]["category_label"] == "discovered (closed form)"
  assert rows["pkg_dict"]["discovered_on"] == ["minatar"]
  assert "pkg_broken" not in rows and "warning: entry point 'pkg_broken'" in done.stderr
  table = subprocess.run(cmd[:-1], capture_output=True, text=True, env={**env, "COLUMNS": "200"})
  assert "discovered (closed form)" in table.stdout and "plugin (installed)" in table.stdout


# --- named checkpoints ---------------------------------------------------------------------


def test_named_checkpoints_with_one_file_name_are_two_rules(disco_home, disco103_npz, tmp_path):
  (disco_home / "rules").mkdir(parents=True)
  shutil.copyfile(disco103_npz, disco_home / "rules" / disco103_npz.name)
  a, b = tmp_path / "a" / "w.npz", tmp_path / "b" / "w.npz"
  for path in (a, b):
    path.parent.mkdir()
    shutil.copyfile(disco103_npz, path)
  planned = plan.plan_sweep(
    SweepSpec("catch", rules=(f"first={a}", f"second={b}"), seeds=(0,), steps=600)
  )
  assert [u.label for u in planned.units] == ["first", "second"]
  assert [str(r.path) for r in planned.rules.values()] == [str(a), str(b)]


def test_a_manifest_reaches_workers_by_an_absolute_path(example, tmp_path, monkeypatch):
  monkeypatch.chdir(example.parent)
  spec = SweepSpec("catch", rules=("reinforce_baseline.toml", "ppo"), out=Path("r"))
  assert launch.for_workers(spec).rules == (str(example), "ppo")


def test_example_rule_computes_reinforce_with_a_baseline_by_hand(example):
  m = manifests.load_manifest_file(example)
  settings = rule_settings(m, load_suite("catch"), {"rule.normalize_adv": "false"})
  rule = registry.build_manifest_rule(m, settings, "rb")
  batch = Rollout(  # T = 2 transitions of one trajectory; the episode ends after the first
    observations=jnp.zeros((3, 1, 8, 8)),
    actions=jnp.asarray([[0], [2], [1]], jnp.int32),
    rewards=jnp.asarray([[0.0], [1.0], [2.0]]),
    discounts=jnp.asarray([[1.0], [0.0], [1.0]]),
    behaviour_logits=jnp.zeros((3, 1, 3)),
  )
  out = {"logits": jnp.zeros((3, 1, 3)), "v": jnp.asarray([[[0.5]], [[0.25]], [[4.0]]])}
  targets, state, _ = rule.targets(None, rule.init_state(None, None), batch, out, None, None)
  returns, advantage = targets
  np.testing.assert_allclose(returns[:, 0], [1.0, 2.0 + 0.99 * 4.0], rtol=1e-6)
  np.testing.assert_allclose(advantage[:, 0], [0.5, 5.96 - 0.25], rtol=1e-6)
  loss, _ = rule.loss(out, targets, batch)
  log3 = np.log(3.0)
  expected = [
    log3 * 0.5 + 0.5 * 0.5 * 0.5**2 - 0.01 * log3,
    log3 * 5.71 + 0.5 * 0.5 * 5.71**2 - 0.01 * log3,
  ]
  np.testing.assert_allclose(loss[:, 0], expected, rtol=1e-5)
