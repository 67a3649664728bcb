"""One run over several local devices (``--devices N``): the same learning as
on one device, rule statistics taken over the whole batch, clear errors.

The pytest process's JAX already sees one CPU device, so the two-device runs
happen in subprocesses started with
XLA_FLAGS=--xla_force_host_platform_device_count=2 (tests/two_devices_probe.py
and the command line).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from disco_eval.config import overrides
from disco_eval.errors import UserError
from disco_eval.train import devices

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO.parent / "shared" / "rules" / "disco_103.npz"
TINY = [
  "--set",
  "train.min_buffer=4",
  "--set",
  "train.sample_entries=4",
  "--set",
  "train.chunk=8",
  "--set",
  "agent.torso_hidden=[32]",
]


def two_device_env(**extra: str) -> dict:
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
  return dict(
    os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **extra
  )


@pytest.fixture(scope="module")
def probe() -> dict:
  weights = str(WEIGHTS) if WEIGHTS.is_file() else "none"
  res = subprocess.run(
    [sys.executable, str(REPO / "tests" / "two_devices_probe.py"), weights],
    cwd=REPO,
    env=two_device_env(),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert res.returncode == 0, res.stderr[-4000:]
  return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_catch_on_two_devices_learns_what_one_device_learns(probe):
  c = probe["catch"]
  # The work is split: half of the environments and of the replay buffer each.
  assert c["buffer_devices"] == 2 and c["buffer_spec"] == "P(None, None, 'data')"
  assert c["env_shard_rows"] == [2, 2]
  assert sum(c["learned"]) >= 15
  # The same actions were sampled: returns are sums of +-1, but 1 and 2 devices
  # are two compiled programs whose logits agree only to rounding, so a rare
  # near-tie may sample another action (one episode: +-2). Not bit-exact.
  np.testing.assert_allclose(c["returns_2"], c["returns_1"], rtol=0, atol=2.0)
  np.testing.assert_allclose(c["losses_2"], c["losses_1"], rtol=1e-4, atol=1e-6)
  assert c["params_moved"] > 1e-2  # learning happened...
  assert c["params_rel_diff"] < 1e-3  # ...the same on both
  assert c["rule_state_rel_diff"] < 1e-3


@pytest.mark.slow
def test_rule_statistics_are_averaged_across_devices(probe):
  s = probe["statistics"]
  assert s["all_reduce"]  # the devices' partial results are combined
  assert s["loss_split"] == pytest.approx(s["loss_whole"], rel=1e-5)
  h0, h1 = s["halves"]
  for key, whole in s["whole"].items():
    # The EMAs move towards the batch's moments: those of the whole batch,
    # i.e. the mean of the two devices' halves, not either half's own.
    assert s["split"][key] == pytest.approx(whole, rel=1e-4, abs=1e-8), key
    assert s["split"][key] == pytest.approx((h0[key] + h1[key]) / 2, rel=1e-4, abs=1e-8), key
    assert abs(h0[key] - h1[key]) > 1e-2 * abs(whole), key
  if probe["rule"] == "disco103":  # the meta-LSTM steps on the pooled whole batch
    hidden = {k: np.asarray(v) for k, v in s["hidden"].items() if k != "halves"}
    np.testing.assert_allclose(hidden["split"], hidden["whole"], atol=1e-5)
    for half in s["hidden"]["halves"]:
      assert np.max(np.abs(hidden["split"] - np.asarray(half))) > 1e-3


@pytest.mark.slow
def test_ppo_minibatches_and_host_trainer_on_two_devices(probe):
  p = probe["ppo"]
  assert p["params_moved"] > 1e-2 and p["params_rel_diff"] < 1e-3
  h = probe["host"]
  assert h["buffer_spec"] == "P(None, None, 'data')"
  assert h["losses_1"][0] == 0.0 and h["losses_1"][1] > 0
  np.testing.assert_allclose(h["losses_2"], h["losses_1"], rtol=1e-4)
  assert h["params_rel_diff"] < 1e-3
  assert h["eval_returns"] == [1.0] * 4


def test_devices_setting_and_its_errors():
  _, train_over, _ = overrides.split_overrides([("train.devices", "2")])
  assert train_over == {"devices": "2"}
  assert devices.make_mesh(1) is None
  with pytest.raises(UserError, match=r"train\.num_envs=3 is not divisible by --devices 2"):
    devices.check_divisible(3, 2)
  with pytest.raises(UserError, match="at least 1"):
    devices.make_mesh(0)
  n = jax.device_count() + 1
  with pytest.raises(UserError, match=f"JAX sees {n - 1} cpu device.*device_count={n}"):
    devices.make_mesh(n)
  with pytest.raises(UserError, match="rule.num_minibatches so that it is a multiple of 2"):
    devices.check_unroll_sizes({"rule.num_minibatches": 3}, 2)


def cli(*args, home: Path) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "disco_eval.cli", *map(str, args)],
    cwd=REPO,
    env=two_device_env(DISCO_EVAL_HOME=str(home)),
    capture_output=True,
    text=True,
    timeout=600,
  )


def one_line_error(res) -> str:
  assert res.returncode == 1, res.stdout + res.stderr
  lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
  return lines[0]


@pytest.mark.slow
def test_cli_devices(tmp_path, disco_home):
  base = ["run", "catch", "--rule", "actor_critic", "--seeds", "1", "--steps", "300", *TINY]
  four = ["--devices", "4", "--set", "train.num_envs=4"]  # divisible: the device count is the error
  line = one_line_error(cli(*base, *four, "--out", tmp_path / "a", home=disco_home))
  assert "JAX sees 2 cpu device(s)" in line
  assert "XLA_FLAGS=--xla_force_host_platform_device_count=4" in line
  line = one_line_error(
    cli(
      *base, "--devices", "2", "--set", "train.num_envs=3", "--out", tmp_path / "b", home=disco_home
    )
  )
  assert "train.num_envs = 3 is out of range: a multiple of train.devices = 2" in line
  assert not (tmp_path / "b").exists()
  res = cli(*base, "--devices", "2", "--out", tmp_path / "c", "--json", home=disco_home)
  assert res.returncode == 0, res.stderr
  assert [r["status"] for r in json.loads(res.stdout)] == ["complete"]
  run = tmp_path / "c" / "catch" / "catch" / "actor_critic" / "seed0"
  config = json.loads((run / "config.json").read_text())
  assert config["train"]["devices"] == 2
  assert config["overrides"]["train.devices"] == "2"
