"""One config resolution: precedence, the protocol label, unknown keys."""

import dataclasses
import json
from pathlib import Path

import pytest

from disco_eval import store
from disco_eval.config import label, manifests, overrides, resolve, schema, suites
from disco_eval.config.run_config import RuleIdentity
from disco_eval.errors import UserError
from disco_eval.rules import registry
from disco_eval.runs import SweepSpec, plan_sweep

REPO = Path(__file__).resolve().parents[1]
# The keys of config.json before the label was stored (seed, versions and
# created are added per run).
OLD_KEYS = {
  "suite",
  "task",
  "protocol",
  "rule",
  "settings",
  "train",
  "env_steps",
  "budget",
  "overrides",
}


def _identity(name: str) -> RuleIdentity:
  kind = manifests.load_rule_manifest(name).kind
  return RuleIdentity(name=name, kind=kind, sha256=None, source=None)


def _resolve(rule: str, suite: str = "catch", **kwargs):
  return resolve.resolve(
    suites.load_suite(suite), suite, _identity(rule), manifests.load_rule_manifest(rule), **kwargs
  )


# --- precedence ----------------------------------------------------------------


def test_protocol_then_rule_train_table_then_set():
  """The protocol's loop, the rule's [train] table over it, --set train.* last."""
  impala = _resolve("impala")
  assert impala.train.num_envs == 2 and impala.train.buffer_capacity == 1024
  ppo = _resolve("ppo")
  assert ppo.train.num_envs == 16 and ppo.train.buffer_capacity == 1
  ppo = _resolve("ppo", overrides=(("train.num_envs", "8"),))
  assert ppo.train.num_envs == 8 and ppo.train.buffer_capacity == 1


def test_per_suite_table_then_global_then_scoped_set():
  base = _resolve("disco103").settings["optimizer"]["learning_rate"]
  assert base == 1e-2  # [suites.catch] over 3e-4
  glob = _resolve("disco103", overrides=(("optimizer.learning_rate", "2e-3"),))
  assert glob.settings["optimizer"]["learning_rate"] == 2e-3
  both = (("lr", "2e-3"), ("disco103.lr", "5e-4"))  # alias; scoped after global
  assert _resolve("disco103", overrides=both).settings["optimizer"]["learning_rate"] == 5e-4


def test_scoped_overrides_reach_only_their_rule():
  pairs = (("ppo.lr", "3e-4"), ("train.chunk", "4"))
  scoped = overrides.scope_overrides(pairs, ["ppo", "impala"])
  assert scoped["ppo"] == (("optimizer.learning_rate", "3e-4"), ("train.chunk", "4"))
  assert scoped["impala"] == (("train.chunk", "4"),)
  impala = _resolve("impala", overrides=pairs, scoped=scoped["impala"])
  assert impala.settings["optimizer"]["learning_rate"] == 5e-4  # its own [suites.catch]
  assert impala.train.chunk == 4 and impala.overrides == pairs
  with pytest.raises(UserError, match="protocol settings apply to every rule"):
    overrides.scope_overrides((("ppo.protocol.eval_episodes", "3"),), ["ppo", "impala"])


def test_steps_flag_sets_the_budget_and_smoke_settings_follow():
  full = _resolve("impala")
  assert full.budget == 58000 and full.env_steps == 58000 and full.label == "reference"
  small = _resolve("impala", steps=600)
  assert small.budget == 600 and small.train.iterations == 11 and small.env_steps == 638
  assert small.label == "reference@600"
  evals = _resolve("impala", steps=600, overrides=(("protocol.eval_episodes", "7"),))
  assert evals.protocol.get("eval_episodes") == 7
  assert evals.label == "reference@600+eval_episodes=7"


# --- the stored config and its label -------------------------------------------


def test_to_json_is_the_old_config_plus_the_label():
  cfg = _resolve("ppo", steps=600, overrides=(("ppo.lr", "3e-4"),))
  doc = cfg.to_json()
  assert set(doc) == OLD_KEYS | {"label"}
  assert doc["protocol"]["name"] == "reference" and doc["protocol"]["num_envs"] == 2
  assert doc["rule"] == {"name": "ppo", "kind": "ppo", "sha256": None, "source": None}
  assert doc["train"] == dataclasses.asdict(cfg.train)
  assert doc["overrides"] == {"ppo.lr": "3e-4"}
  assert doc["label"] == label.protocol_label(doc) == cfg.label
  json.dumps(doc)  # JSON-able as it is
  unseeded = dataclasses.replace(cfg, episodes_reproducible=False).to_json()
  assert unseeded["episodes_reproducible"] is False and unseeded["label"] == cfg.label
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.budget = 1


def test_label_of_old_stored_configs():
  old = {
    "protocol": {"name": "1m", "env_steps": 1_000_000},
    "train": {"num_envs": 16, "rollout_len": 29},
    "env_steps": 1_000_384,
  }
  assert label.protocol_label(old) == "1m"  # rounded up: on protocol
  assert label.protocol_label({**old, "env_steps": 40_000}) == "1m@40000"
  assert label.protocol_label({**old, "budget": 40_000}) == "1m@40000"
  assert label.protocol_label({**old, "budget": 1_000_000, "env_steps": 1}) == "1m"
  changed = {**old, "overrides": {"protocol.eval_episodes": "8", "lr": "1"}}
  assert label.protocol_label(changed) == "1m+eval_episodes=8"
  assert label.protocol_label({"protocol": "standard"}) == "standard"
  assert label.protocol_label({}) is None
  assert label.protocol_label({}, "p", 10) == "p"
  assert label.run_label({**old, "label": "stored"}) == "stored"
  assert label.run_label(old) == "1m"


def test_a_record_written_before_the_label_still_resumes(tmp_path):
  cfg = _resolve("impala", steps=600)
  doc = {**cfg.to_json(), "seed": 0, "versions": store.versions(), "created": "x"}
  old = {k: v for k, v in doc.items() if k != "label"}
  store.RunRecord.open(tmp_path, "catch", "catch", "impala", 0, old)
  record = store.RunRecord.open(tmp_path, "catch", "catch", "impala", 0, doc)
  with record.lock():
    pass
  assert record.config["label"] == "reference@600"


# --- unknown keys ----------------------------------------------------------------


def test_unknown_set_keys_are_refused():
  with pytest.raises(
    UserError,
    match=r"unknown setting 'hyperparams.nope'; valid keys in "
    r"\[hyperparams\]: .*vtrace_lambda",
  ):
    _resolve("impala", overrides=(("hyperparams.nope", "1"),))
  with pytest.raises(UserError, match="unknown setting 'train.nope'; train settings"):
    _resolve("impala", overrides=(("train.nope", "1"),))
  with pytest.raises(UserError, match="unknown setting 'protocol.nope'"):
    _resolve("impala", overrides=(("protocol.nope", "1"),))


def test_schema_names_the_key_the_table_and_the_valid_keys():
  @dataclasses.dataclass(frozen=True)
  class Toy:
    a: float
    b: int

  assert schema.from_tables(Toy, {"hyperparams": {"a": 1}, "rule": {"b": 2.0}}, "t") == Toy(1.0, 2)
  with pytest.raises(
    UserError,
    match=r"^t: unknown key 'c' in \[rule\]; valid keys of "
    r"\[hyperparams\] and \[rule\]: a, b$",
  ):
    schema.from_tables(Toy, {"hyperparams": {"a": 1}, "rule": {"b": 2, "c": 3}}, "t")
  with pytest.raises(UserError, match="t: missing key 'b'"):
    schema.from_tables(Toy, {"hyperparams": {"a": 1}}, "t")


def test_every_shipped_manifest_matches_its_kind():
  for m in manifests.list_rule_manifests():
    registry.check_settings(m.kind, m.settings(), str(m.path))
    rule = registry.build_rule(m.kind, m.settings(), m.name)
    assert rule.name == m.name


def _copy_rules(tmp_path, monkeypatch, name, edit):
  folder = tmp_path / "manifests"
  (folder / "rules").mkdir(parents=True)
  (folder / "suites").symlink_to(REPO / "suites")
  for path in (REPO / "rules").glob("*.toml"):
    text = path.read_text()
    (folder / "rules" / path.name).write_text(edit(text) if path.stem == name else text)
  monkeypatch.setenv("DISCO_EVAL_MANIFESTS", str(folder))


def test_unknown_rule_key_in_a_manifest_fails_before_any_work(tmp_path, monkeypatch):
  _copy_rules(
    tmp_path,
    monkeypatch,
    "impala",
    lambda t: t.replace("pg_cost = 1.0", "pg_cost = 1.0\npg_costs = 2.0"),
  )
  with pytest.raises(
    UserError,
    match=r"impala.toml: unknown key 'pg_costs' in "
    r"\[hyperparams\]; valid keys of .*pg_cost",
  ):
    plan_sweep(SweepSpec(suite="catch", rules=("impala",), seeds=(0,), out=tmp_path))


@pytest.mark.parametrize("table,line", [("optimizer", "lr = 1.0"), ("train", "chunks = 3")])
def test_unknown_optimizer_or_train_key_in_a_manifest(tmp_path, monkeypatch, table, line):
  _copy_rules(
    tmp_path, monkeypatch, "ppo", lambda t: t.replace(f"[{table}]\n", f"[{table}]\n{line}\n")
  )
  key = line.split(" ")[0]
  with pytest.raises(
    UserError,
    match=rf"ppo.toml: unknown key '{key}' in \[{table}\]; "
    "valid keys: ",
  ):
    manifests.load_rule_manifest("ppo")


def test_every_loop_and_protocol_setting_is_declared_once():
  from disco_eval.config import fingerprint, validate
  from disco_eval.config.setting import declared
  from disco_eval.config.train import TrainConfig
  from disco_eval.store import config_match

  assert [s.name for s in declared(TrainConfig)] == [
    f.name for f in dataclasses.fields(TrainConfig)
  ]
  # What records and labels were made with before the declarations existed.
  assert overrides.TRAIN_KEYS == (
    *("num_envs", "rollout_len", "buffer_capacity", "min_buffer", "sample_entries"),
    *("updates_per_iteration", "chunk", "vmap_seeds", "learner_microbatches", "devices"),
    *("frame_stack", "policy_lag"),
  )
  assert set(validate.LOOP) == {*overrides.TRAIN_KEYS, "iterations"}
  assert overrides.PROTOCOL_KEYS == ("eval_episodes", "eval_max_steps", "eval_envs")
  assert set(validate.PROTOCOL) == {"env_steps", "eval_episodes", "eval_envs", "eval_max_steps"}
  assert set(label.IGNORED_TRAIN_KEYS) == {"chunk", "iterations"}
  assert label.LABELLED_TRAIN_KEYS == ("frame_stack", "policy_lag")
  later = {"learner_microbatches": 1, "devices": 1, "frame_stack": 1, "policy_lag": 0}
  assert fingerprint.LATER_KEYS == {f"train.{k}": str(v) for k, v in later.items()}
  assert {k[1]: v for k, v in config_match.LATER_CONFIG_KEYS.items() if k[0] == "train"} == later


def test_a_protocol_reads_its_items_typed_with_the_declared_defaults():
  bare = suites.Protocol("p", "", {})
  assert (bare.typed.eval_episodes, bare.typed.metric, bare.typed.final_window) == (
    100,
    "return",
    100,
  )
  assert bare.typed.eval_envs is None and not bare.typed.smoke
  set_ = suites.Protocol("p", "", {"eval_episodes": 8, "metric": "median_score", "smoke": True})
  assert (set_.typed.eval_episodes, set_.typed.metric, set_.typed.smoke) == (
    8,
    "median_score",
    True,
  )


def test_the_docs_tables_of_settings_are_printed_from_the_declarations():
  from disco_eval.config import docs_tables

  docs = (Path(__file__).parents[1] / "docs" / "protocols.md").read_text()
  assert docs_tables.refresh(docs) == docs, (
    "docs/protocols.md is out of date: run python3 -m disco_eval.config.docs_tables"
  )
  for table in docs_tables.tables().values():
    assert table in docs
