"""Golden parity: our Disco103 reproduces the reference implementation."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from disco_eval.rules import verify, weights

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"
FILES = sorted(GOLDEN.glob("*.npz"))


@pytest.fixture(scope="module")
def params():
  path = GOLDEN.parent / "rules" / "disco_103.npz"
  if not path.is_file():
    pytest.skip(f"{path} is missing")
  return weights.load_params(path)


def test_golden_files_present():
  if not GOLDEN.is_dir():
    pytest.skip(f"{GOLDEN} is missing")
  assert len(FILES) >= 5, FILES


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_key_within_bounds(params, path):
  checks = verify.check_golden(params, verify.load_golden(path))
  keys = {c.key for c in checks}
  # Every output, new-state, gradient and debug key is compared.
  assert {
    "out/pi_hat",
    "out/total_loss",
    "grad/agent_out/q",
    "out/meta_state/rnn_state/hidden",
    "debug/trajectory_input",
  } <= keys
  assert len(checks) >= 40
  bad = [(c.key, c.max_abs_err, c.bound) for c in checks if not c.ok]
  assert not bad, bad


def test_sequence_with_carried_state(params):
  seq = sorted(GOLDEN.glob("seq_step*.npz"))
  if len(seq) < 3:
    pytest.skip("sequence files missing")
  results = list(verify.check_files(params, seq))
  assert len(results) == 3
  for i, (_, checks) in enumerate(results):
    carried = [c for c in checks if c.key.startswith("carried/")]
    assert len(carried) == (0 if i == 0 else 8)
    assert all(c.ok for c in checks), [c.key for c in checks if not c.ok]


def test_tampered_output_is_caught(params, tmp_path):
  data = verify.load_golden(FILES[0])
  data["out/pi_hat"] = data["out/pi_hat"] + 0.01
  bad = tmp_path / "tampered.npz"
  np.savez(bad, **data)
  checks = {c.key: c for c in verify.check_golden(params, verify.load_golden(bad))}
  assert not checks["out/pi_hat"].ok
  assert checks["out/y_hat"].ok


def _cli(*args, env_home):
  import os

  env = dict(os.environ, DISCO_EVAL_HOME=str(env_home))
  return subprocess.run(
    [sys.executable, "-m", "disco_eval.cli", *args],
    capture_output=True,
    text=True,
    env=env,
    timeout=600,
  )


@pytest.mark.slow
def test_cli_verify_passes_and_fails(params, tmp_path, disco_home):
  rules = disco_home / "rules"
  rules.mkdir(parents=True)
  shutil.copy(GOLDEN.parent / "rules" / "disco_103.npz", rules / "disco_103.npz")
  ok = _cli("rules", "verify", "disco103", "--golden", *map(str, FILES), env_home=disco_home)
  assert ok.returncode == 0, ok.stdout + ok.stderr
  assert f"all {len(FILES)} file(s) within bounds" in ok.stdout.replace("\n", " ")
  data = verify.load_golden(FILES[0])
  data["grad/agent_out/logits"] = data["grad/agent_out/logits"] * 1.5
  bad = tmp_path / "bad.npz"
  np.savez(bad, **data)
  res = _cli("rules", "verify", "disco103", "--golden", str(bad), env_home=disco_home)
  assert res.returncode == 1
  assert "OUT OF BOUNDS" in res.stdout
