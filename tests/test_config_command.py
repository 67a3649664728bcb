"""``disco-eval config``: the resolved configuration, every item with its source."""

import json
import subprocess
import sys


def _config(*args: str) -> dict:
  done = subprocess.run(
    [sys.executable, "-m", "disco_eval.cli", "config", *args, "--json"],
    capture_output=True,
    text=True,
    check=True,
  )
  return {r["item"]: r for r in json.loads(done.stdout)["items"]}


def test_procgen_disco103_shows_extended_data_table_6_with_sources():
  items = _config("procgen", "--rule", "disco103")
  expected = {
    "optimizer.learning_rate": 3e-4,
    "optimizer.lr_schedule": "cosine",
    "optimizer.lr_end": 0.0,
    "optimizer.lr_warmup_env_steps": 1_000_000,
    "optimizer.lr_horizon_env_steps": 200_000_000,
    "optimizer.weight_decay": 0.1,
    "optimizer.max_abs_update": 1.0,
    "hyperparams.discount_factor": 0.997,
    "train.rollout_len": 29,
    "derived.learner_batch": 192,
  }
  assert {k: items[k]["value"] for k in expected} == expected
  for key in expected:
    if key.startswith("optimizer.") or key == "hyperparams.discount_factor":
      assert "Extended Data Table 6" in items[key]["source"], key
  assert items["protocol.env_steps"]["value"] == 50_000_000
  assert all(r["source"] for r in items.values())


def test_a_set_override_is_shown_as_such():
  items = _config("crafter", "--rule", "impala", "--set", "optimizer.weight_decay=0.0")
  assert items["optimizer.weight_decay"] == {
    "item": "optimizer.weight_decay",
    "value": 0.0,
    "source": "--set",
  }
  assert items["optimizer.lr_schedule"]["value"] == "constant"
  assert "Crafter" in items["optimizer.learning_rate"]["source"]
