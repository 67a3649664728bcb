"""``disco-eval plan``: a sweep's units and projected costs, and its errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = [
  "--set",
  "agent.torso_hidden=[16]",
  "--set",
  "protocol.eval_episodes=10",
  "--iterations",
  "1",
  "--repeats",
  "1",
]


def cli(*args, home: Path, timeout=600):
  env = dict(os.environ, DISCO_EVAL_HOME=str(home))
  return subprocess.run(
    [sys.executable, "-m", "disco_eval.cli", "plan", *map(str, args)],
    capture_output=True,
    text=True,
    env=env,
    timeout=timeout,
  )


def one_line_error(res) -> str:
  assert res.returncode == 1, res.stdout + res.stderr
  lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
  assert "Traceback" not in res.stderr
  return lines[0]


@pytest.mark.slow
def test_plan_on_catch_prints_units_and_a_projection(disco_home):
  args = ("catch", "--rule", "actor_critic", "--seeds", "2", "--seeds-per-unit", "1", *TINY)
  res = cli(*args, "--steps", "5800", "--json", home=disco_home)
  assert res.returncode == 0, res.stderr
  plan = json.loads(res.stdout)
  assert [u["seeds"] for u in plan["units"]] == [[0], [1]]
  assert plan["runs"] == 2 and plan["env_steps"] == 2 * 5800
  assert all(u["env_steps_per_run"] == 5800 and u["iterations"] == 100 for u in plan["units"])
  (m,) = plan["measurements"]  # both units are one seed of one rule: measured once
  assert m["iteration_s"] > 0 and m["state_bytes"] > 0 and m["device_bytes"] > m["state_bytes"]
  unit = plan["units"][0]
  assert unit["wall_s"] >= 100 * m["iteration_s"]
  assert unit["disk_bytes"] >= 3 * m["state_bytes"] + 100 * m["metrics_row_bytes"]
  assert plan["wall_s"] == pytest.approx(sum(u["wall_s"] for u in plan["units"]))
  res = cli("catch", "--rule", "actor_critic", "--seeds", "1", *TINY, home=disco_home)
  assert res.returncode == 0, res.stderr
  assert "1 units, 1 runs, 58,000 env steps; projected wall" in res.stdout
  assert "measured actor_critic/catch x1 seed(s)" in res.stdout


@pytest.mark.parametrize(
  "args, words",
  [
    (["nosuchsuite"], "nosuchsuite"),
    (["catch", "--iterations", "0"], "--iterations must be at least 1"),
    (["catch", "--repeats", "0"], "--repeats must be at least 1"),
    (["catch", "--seeds", "0"], "seeds"),
    (["catch", "--set", "train.nosuchkey=1"], "nosuchkey"),
    (["catch", "--rule", "nosuchrule"], "nosuchrule"),
  ],
)
def test_bad_plan_input_is_one_line(disco_home, args, words):
  line = one_line_error(cli(*args, home=disco_home, timeout=300))
  assert words in line
