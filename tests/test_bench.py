"""`disco-eval bench` measures (numbers are not asserted: they belong in docs)."""

import pytest

from disco_eval import bench
from disco_eval.errors import UserError


@pytest.mark.slow
def test_bench_reports_every_measurement():
  res = bench.run_bench(
    "catch",
    "actor_critic",
    seeds=2,
    chunk=2,
    repeats=1,
    overrides=(("agent.torso_hidden", "[16]"),),
  )
  assert res["env_steps_per_s"] > 0 and res["train_steps_per_s"] > 0
  assert 0 < res["train_over_env_ratio"]
  assert set(res["scaling"]) == {"taking_turns", "vmapped"}
  assert res["learner"]["step_s"] > 0 and 0 < res["learner"]["rule_share"]
  assert "cpu" in res["device"].lower() or "gpu" in res["device"].lower()
  rows = dict(bench.report_rows(res))
  assert rows["2 seeds, vmapped"].endswith("one seed's") and "jax" in rows["versions"]


def test_bench_refuses_bad_counts():
  with pytest.raises(UserError, match="--seeds must be at least 1"):
    bench.run_bench("catch", seeds=0)
  with pytest.raises(UserError, match="--repeats must be at least 1"):
    bench.run_bench("catch", repeats=0)


def test_bench_cost_json_gives_flops_and_bytes(disco103_npz, disco_home):
  """`bench catch --cost --json`: XLA's cost analysis of the compiled learner
  and policy steps (nothing runs), positive FLOPs and bytes, and the learner
  with the taken-action gradient reads fewer bytes than the all-action one."""
  import json
  import os
  import subprocess
  import sys

  res = subprocess.run(
    [sys.executable, "-m", "disco_eval.cli", "bench", "catch", "--cost", "--json"]
    + ["--rule", str(disco103_npz), "--set", "agent.torso_hidden=[32]"],
    capture_output=True,
    text=True,
    env=dict(os.environ, DISCO_EVAL_HOME=str(disco_home)),
    timeout=600,
  )
  assert res.returncode == 0, res.stderr
  out = json.loads(res.stdout)
  assert out["taken_action_grad"] and out["protocol"] == "reference"
  for name in ("learner", "learner_all_actions", "policy"):
    assert out[name]["flops"] > 0 and out[name]["bytes_accessed"] > 0, name
  per = out["per_env_step"]
  assert per["total_bytes_accessed"] > per["learner_bytes_accessed"] > 0
  assert per["learner_all_actions_bytes_accessed"] > per["learner_bytes_accessed"]
