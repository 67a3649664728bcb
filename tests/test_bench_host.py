"""Host-stepped suites: `disco-eval bench` measures them (numbers are not
asserted: they belong in docs)."""

import pytest

pytest.importorskip("envpool")

from disco_eval import bench  # noqa: E402

TINY = {"agent.impala_channels": "[8, 8, 8]", "agent.impala_hidden": "64"}


@pytest.mark.slow
def test_bench_on_procgen_reports_every_measurement():
  res = bench.run_bench(
    "procgen",
    "actor_critic",
    seeds=2,
    task="coinrun",
    repeats=1,
    overrides=(("train.num_envs", "4"), ("train.rollout_len", "8"), *TINY.items()),
  )
  assert res["suite"] == "procgen" and res["backend"] == "envpool" and res["envpool"]
  assert res["env_steps_per_s"] > 0 and res["train_steps_per_s"] > 0
  m = res["one_seed"]
  assert m["train_steps_per_s"] > 0 and m["actor_steps_per_s"] > m["train_steps_per_s"]
  split = m["split_per_iteration"]
  assert set(split) == {"env_s", "policy_s", "host_s", "learner_s"}
  assert split["env_s"] > 0 and split["policy_s"] > 0 and split["learner_s"] > 0
  assert 0 < res["train_over_env_ratio"] < res["actor_over_env_ratio"]
  assert res["learner"]["step_s"] > 0 and 0 < res["learner"]["rule_share"]
  assert set(res["scaling"]) == {"taking_turns", "batched"} and res["seeds"] == 2
  assert res["scaling"]["taking_turns"]["steps_per_s"] > 0
  assert res["scaling"]["batched"]["steps_per_s"] > 0
  assert res["policy_lag"] == 0 and res["chunk_steps_per_s"] > 0
  rows = dict(bench.report_rows(res))
  assert "envpool" in rows["versions"] and "training steps/s, 1 seed" in rows
  assert not any("overlap" in name for name in rows)
  assert res["train_steps_per_s"] == m["train_steps_per_s"]
