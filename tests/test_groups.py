"""A compared group is one configuration; named checkpoints.

Records are written without training: their configs are the ones a sweep
resolves (runs.plan), their scores are chosen. A seed made with other
settings (another learning rate, other weights) copied beside ordinary seeds
is reported apart under a label naming the difference, with a warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from disco_eval import launch, store
from disco_eval.analysis import collect, compare, labels
from disco_eval.config import suites
from disco_eval.config.fingerprint import fingerprint, settings_of
from disco_eval.errors import UserError
from disco_eval.rules import weights
from disco_eval.runs import plan
from disco_eval.runs.spec import SweepSpec

SUITE = "catch"
TASK = "catch"


@pytest.fixture
def cached(disco_home: Path, disco103_npz: Path) -> Path:
  """The published weights in the test's cache (so `disco103` resolves)."""
  (disco_home / "rules").mkdir(parents=True)
  dest = disco_home / "rules" / disco103_npz.name
  shutil.copyfile(disco103_npz, dest)
  return dest


def other_weights(source: Path, dest: Path, scale: float = 1.01) -> Path:
  """A valid weights file with Disco103's shapes and other values."""
  with np.load(source) as npz:
    arrays = {k: npz[k] * scale for k in npz.files}
  dest.parent.mkdir(parents=True, exist_ok=True)
  np.savez(dest, **arrays)
  return dest


def configs_of(rules: tuple[str, ...], overrides=()) -> dict[str, dict]:
  """The config a sweep of `rules` on Catch records, by rule label."""
  spec = SweepSpec(SUITE, rules=rules, seeds=(0,), steps=600, overrides=tuple(overrides))
  planned = plan.plan_sweep(spec)
  suite = suites.load_suite(SUITE)
  return {
    u.label: plan.run_config(
      spec, suite, u.task, planned.rules[u.rule_index], u.overrides
    ).to_json()
    for u in planned.units
  }


def write(root: Path, config: dict, seed: int, score: float, rule: str | None = None) -> Path:
  """A complete run of `config` at `seed` with a chosen score."""
  rule = rule or config["rule"]["name"]
  doc = {**config, "seed": seed, "versions": store.versions(), "created": "now"}
  record = store.RunRecord.open(root, SUITE, TASK, rule, seed, doc)
  record.append_metrics([{"iteration": 0, "env_steps": config["env_steps"], "loss": 0.1}])
  summary = {
    "suite": SUITE,
    "task": TASK,
    "rule": rule,
    "seed": seed,
    "protocol": config["protocol"]["name"],
    "env_steps": config["env_steps"],
    "score": score,
    "normalized_score": (score + 1) / 2,
    "metric": "return",
  }
  record.mark_complete(summary, env_steps=config["env_steps"])
  return record.path


def test_seed_with_another_learning_rate_is_not_pooled(cached, tmp_path):
  root = tmp_path / "results"
  (plain,) = configs_of(("disco103",)).values()
  (fast,) = configs_of(("disco103",), [("lr", "0.003")]).values()
  for seed in range(3):
    write(root, plain, seed, 0.1 * seed)
  # made elsewhere with --set lr=0.003, copied in beside the others
  write(tmp_path / "other", fast, 3, 0.9)
  shutil.copytree(tmp_path / "other" / SUITE, root / SUITE, dirs_exist_ok=True)

  (group,) = compare.compare(root, reps=50).groups
  assert group.rules == ("disco103", "disco103[lr=0.003]")
  seeds = {row.rule: row.seeds for row in group.per_task}
  assert seeds == {"disco103": (0, 1, 2), "disco103[lr=0.003]": (3,)}
  warning = next(w for w in group.warnings if "different settings" in w)
  assert "disco103 (3 seeds)" in warning and "disco103[lr=0.003] (1 seed)" in warning
  (alone,) = compare.compare(root, rules="disco103[lr=0.003]", reps=50).groups
  assert alone.rules == ("disco103[lr=0.003]",)
  with pytest.raises(UserError, match=r"labels found: disco103, disco103\[lr=0.003\]"):
    compare.compare(root, rules="disco103[lr=1]", reps=50)


def test_run_with_other_weights_sha_is_noticed(cached, tmp_path):
  root = tmp_path / "results"
  (plain,) = configs_of(("disco103",)).values()
  for seed in range(2):
    write(root, plain, seed, 0.5)
  odd = json.loads(json.dumps(plain))
  odd["rule"]["sha256"] = "1a2b3c4d" + "0" * 56
  write(root, odd, 2, 0.5)

  (group,) = compare.compare(root, reps=50).groups
  assert group.rules == ("disco103", "disco103[sha256=1a2b3c4d]")
  assert any("different settings" in w for w in group.warnings)


def test_named_checkpoint_is_labelled_by_its_name(cached, tmp_path):
  copy = tmp_path / "ckpt" / "disco_103.npz"
  copy.parent.mkdir()
  shutil.copyfile(cached, copy)
  assert weights.resolve_rule(f"mine={copy}").label == "mine"
  (label,) = configs_of((f"mine={copy}",))
  assert label == "mine"
  assert store.run_dir(tmp_path, SUITE, TASK, label, 0).parent.name == "mine"


def test_named_checkpoint_name_is_checked(cached, tmp_path):
  other = other_weights(cached, tmp_path / "w.npz")
  with pytest.raises(UserError, match="invalid rule name"):
    weights.resolve_rule(f"bad name={other}")
  with pytest.raises(UserError, match="not its published weights"):
    weights.resolve_rule(f"disco103={other}")
  assert weights.resolve_rule(f"disco103={cached}").label == "disco103"
  out = tmp_path / "out"
  cli = [sys.executable, "-m", "disco_eval.cli", "run", SUITE, "--rule", f"a b={other}"]
  env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
  done = subprocess.run([*cli, "--out", str(out)], capture_output=True, text=True, env=env)
  assert done.returncode == 1
  (line,) = done.stderr.strip().splitlines()
  assert line.startswith("error:") and "invalid rule name 'a b'" in line
  assert not out.exists()


def test_custom_checkpoint_saved_as_disco103_is_not_labelled_disco103(cached, tmp_path):
  mine = other_weights(cached, tmp_path / "mine" / "disco103.npz")
  label = weights.resolve_rule(str(mine)).label
  sha = weights.sha256_file(mine)
  assert label == f"disco103-{sha[:8]}" != "disco103"
  published = tmp_path / "copy" / "disco103.npz"
  published.parent.mkdir()
  shutil.copyfile(cached, published)
  assert weights.resolve_rule(str(published)).label == "disco103"


def test_two_files_with_one_basename_compare_as_two_rules(cached, tmp_path):
  a = other_weights(cached, tmp_path / "a" / "w.npz", 1.01)
  b = other_weights(cached, tmp_path / "b" / "w.npz", 0.99)
  found = configs_of((str(a), str(b)))
  assert sorted(found) == sorted(f"w-{weights.sha256_file(p)[:8]}" for p in (a, b)), (
    "distinct labels"
  )
  root = tmp_path / "results"
  for config in found.values():
    for seed in range(2):
      write(root, config, seed, 0.3)
  (group,) = compare.compare(root, reps=50).groups
  assert set(group.rules) == set(found)


def test_variants_of_one_learning_rate_across_tasks_share_a_label():
  base = {"rule": {"name": "r", "kind": "k", "sha256": None}, "settings": {"optimizer": {}}}
  plain = {**base, "settings": {"optimizer": {"learning_rate": 0.001}}, "overrides": {}}
  fast = {
    **base,
    "settings": {"optimizer": {"learning_rate": 0.003}},
    "overrides": {"optimizer.learning_rate": "0.003"},
  }
  found = labels.variant_labels("r", {fingerprint(plain): plain, fingerprint(fast): fast})
  assert found == {fingerprint(plain): "r", fingerprint(fast): "r[lr=0.003]"}


@given(
  seed=st.integers(0, 10**6),
  created=st.text(max_size=8),
  source=st.text(max_size=8),
  task=st.sampled_from(["a", "b"]),
)
def test_fingerprint_ignores_seed_volatile_keys_and_where_the_file_lay(seed, created, source, task):
  old = {
    "suite": "s",
    "task": "a",
    "rule": {"name": "r", "kind": "disco", "sha256": "ab", "source": "/x"},
    "train": {"num_envs": 2, "chunk": 5, "iterations": 3},
    "seed": 0,
  }
  new = {
    **old,
    "task": task,
    "seed": seed,
    "created": created,
    "label": created,
    "rule": {**old["rule"], "source": source},
    "train": {**old["train"], "chunk": 7, "learner_microbatches": 1, "devices": 1},
  }
  assert fingerprint(new) == fingerprint(old)
  changed = {**new, "train": {**new["train"], "num_envs": 4}}
  assert fingerprint(changed) != fingerprint(old)
  assert settings_of(changed)["train.num_envs"] == "4"
  # Package versions count by major.minor (docs/reliability.md), patch releases do not.
  v1, v2, v3 = ({**new, "versions": {"jax": v}} for v in ("0.4.30", "0.4.35", "0.5.0"))
  assert fingerprint(v1) == fingerprint(v2) != fingerprint(v3)


def test_named_checkpoint_reaches_workers_by_an_absolute_path(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  spec = SweepSpec(SUITE, rules=("mine=ckpt/w.npz", "ckpt/v.npz", "disco103"), out=Path("r"))
  assert launch.for_workers(spec).rules == (
    f"mine={tmp_path / 'ckpt' / 'w.npz'}",
    str(tmp_path / "ckpt" / "v.npz"),
    "disco103",
  )


def test_label_names_every_difference_and_a_filter_can_name_it(tmp_path):
  def config(lr: float, envs: int, overrides: dict) -> dict:
    return {
      "rule": {"name": "r", "kind": "k", "sha256": None},
      "settings": {"optimizer": {"learning_rate": lr}},
      "train": {"num_envs": envs},
      "overrides": overrides,
    }

  plain = config(0.001, 2, {})
  both = config(0.003, 4, {"lr": "0.003", "train.num_envs": "4"})
  other = config(0.001, 2, {"ppo.lr": "1"})  # scoped to another rule: still plain
  found = labels.variant_labels("r", {fingerprint(c): c for c in (plain, both)})
  assert found[fingerprint(both)] == "r[lr=0.003,train.num_envs=4]"
  assert fingerprint(other) == fingerprint(plain)
  assert collect.parse_list("a,r[lr=0.003,train.num_envs=4]") == (
    "a",
    "r[lr=0.003,train.num_envs=4]",
  )


@given(
  st.lists(
    st.tuples(
      st.sampled_from([0.001, 0.003, 0.01]),
      st.sampled_from([2, 4]),
      st.sampled_from(["aa", "bb"]),
      st.booleans(),
    ),
    min_size=1,
    max_size=6,
  ),
  st.randoms(),
)
def test_variant_labels_are_distinct_and_do_not_depend_on_order(items, rng):
  configs = {}
  for lr, envs, sha, overridden in items:
    config = {
      "rule": {"name": "r", "kind": "disco", "sha256": sha},
      "settings": {"optimizer": {"learning_rate": lr}},
      "train": {"num_envs": envs},
      "overrides": {"lr": str(lr)} if overridden else {},
    }
    configs.setdefault(fingerprint(config), config)
  found = labels.variant_labels("r", configs)
  assert len(set(found.values())) == len(configs)
  assert all(v == "r" or v.startswith("r[") for v in found.values())
  shuffled = list(configs.items())
  rng.shuffle(shuffled)
  assert labels.variant_labels("r", dict(shuffled)) == found
