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
