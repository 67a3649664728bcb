"""`rules verify` checks a golden file's layout strictly (issue 13, item 8).

Each test copies a public golden file to tmp_path, damages the copy (a
required input or output key deleted, an array reshaped, a size that
disagrees), and checks that the verify functions and the command line both
refuse it with one line naming the file and the key, exit 1, no traceback.
No golden file is ever written into the repository.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from disco_eval.cli import main
from disco_eval.errors import UserError
from disco_eval.rules import golden_format, verify, weights

SHARED = Path(__file__).resolve().parents[2] / "shared"
GOLDEN = SHARED / "golden" / "rule_step_T5_B3_A4_s0.npz"  # T=5, B=3, A=4
WEIGHTS = SHARED / "rules" / "disco_103.npz"


def _truncate_time(a: np.ndarray) -> np.ndarray:
  return a[:-1]


def _drop_batch(a: np.ndarray) -> np.ndarray:
  return a[:, :2]


def _narrow_last(a: np.ndarray) -> np.ndarray:
  return a[..., :500]


# (what is done, key, expected text after "FILE: ").
DAMAGE = [
  ("delete", "target_out/q", "key target_out/q is missing (FORMAT.md requires it)"),
  ("delete", "rewards", "key rewards is missing (FORMAT.md requires it)"),
  ("delete", "meta_state/td_ema/moment2", "key meta_state/td_ema/moment2 is missing"),
  ("delete", "out/total_loss", "key out/total_loss is missing (FORMAT.md requires it)"),
  ("delete", "out/loss_per_step", "key out/loss_per_step is missing"),
  ("delete", "grad/agent_out/z", "key grad/agent_out/z is missing"),
  (
    _truncate_time,
    "rewards",
    "rewards has shape (5, 3), expected (T+1, B) = (6, 3) as in actions",
  ),
  (
    _drop_batch,
    "out/pi_hat",
    "out/pi_hat has shape (5, 2, 4), expected (T, B, A) = (5, 3, 4) as in actions and "
    "agent_out/logits",
  ),
  (
    _truncate_time,
    "out/q_td",
    "out/q_td has shape (4, 3), expected (T, B) = (5, 3) as in actions",
  ),
  (
    _narrow_last,
    "agent_out/y",
    "agent_out/y has shape (6, 3, 500), expected (T+1, B, Y) = (6, 3, 600) as in actions and "
    "the rule",
  ),
  (
    _truncate_time,
    "debug/rho",
    "debug/rho has shape (4, 3), expected (T, B) = (5, 3) as in actions",
  ),
]
IDS = [f"{'delete' if d == 'delete' else d.__name__}-{k}" for d, k, _ in DAMAGE]


@pytest.fixture(scope="module")
def params():
  if not WEIGHTS.is_file() or not GOLDEN.is_file():
    pytest.skip(f"{WEIGHTS} or {GOLDEN} is missing")
  return weights.load_params(WEIGHTS)


def _damaged_copy(tmp_path: Path, damage, key: str) -> Path:
  """A copy of GOLDEN in tmp_path with `key` deleted or changed by `damage`."""
  with np.load(GOLDEN) as f:
    data = {k: f[k] for k in f.files}
  if damage == "delete":
    del data[key]
  else:
    data[key] = damage(data[key])
  path = tmp_path / f"damaged_{key.replace('/', '_')}.npz"
  np.savez(path, **data)
  return path


def _run_cli(monkeypatch, capsys, disco_home: Path, *args: str) -> tuple[int, str, str]:
  """Runs the `disco-eval` entry point in-process; returns (exit code, out, err)."""
  rules = disco_home / "rules"
  rules.mkdir(parents=True, exist_ok=True)
  if not (rules / WEIGHTS.name).is_file():
    shutil.copy(WEIGHTS, rules / WEIGHTS.name)
  monkeypatch.setattr(sys, "argv", ["disco-eval", *args])
  with pytest.raises(SystemExit) as exit_info:
    main()
  captured = capsys.readouterr()
  return exit_info.value.code or 0, captured.out, captured.err


@pytest.mark.parametrize(("damage", "key", "message"), DAMAGE, ids=IDS)
def test_verify_functions_refuse_damaged_file(params, tmp_path, damage, key, message):
  path = _damaged_copy(tmp_path, damage, key)
  with pytest.raises(UserError) as load_error:
    verify.load_golden(path, golden_format.rule_dims(params))
  assert str(load_error.value).startswith(f"{path}: {message}"), str(load_error.value)
  with pytest.raises(UserError) as files_error:
    list(verify.check_files(params, [GOLDEN, path]))
  assert str(files_error.value) == str(load_error.value)


@pytest.mark.parametrize(("damage", "key", "message"), DAMAGE, ids=IDS)
def test_check_golden_refuses_damaged_data(params, tmp_path, damage, key, message):
  with np.load(_damaged_copy(tmp_path, damage, key)) as f:
    data = {k: f[k] for k in f.files}
  with pytest.raises(UserError, match="^mine.npz: ") as error:
    verify.check_golden(params, data, name="mine.npz")
  assert message in str(error.value)


@pytest.mark.parametrize(("damage", "key", "message"), DAMAGE[::3], ids=IDS[::3])
def test_cli_prints_one_line_and_exits_1(
  params, tmp_path, monkeypatch, capsys, disco_home, damage, key, message
):
  path = _damaged_copy(tmp_path, damage, key)
  code, out, err = _run_cli(
    monkeypatch, capsys, disco_home, "rules", "verify", "disco103", "--golden", str(path)
  )
  assert code == 1
  assert "Traceback" not in out + err
  assert err.strip().startswith(f"error: {path}: {message}"), err
  assert len(err.strip().splitlines()) == 1, err
  assert "PASS" not in out  # nothing was computed for the sound file before it


def test_values_that_disagree_with_the_arrays(params, tmp_path):
  with np.load(GOLDEN) as f:
    data = {k: f[k] for k in f.files}
  dims = golden_format.rule_dims(params)
  assert golden_format.golden_problems(data, dims) == []
  cases = {
    "meta/T": (np.int32(4), "meta/T is 4, but the arrays have T = 5"),
    "actions": (data["actions"] + 4, "actions holds values in [4, 7], expected [0, A) = [0, 4)"),
    "rule/prediction_size": (
      np.int32(500),
      "rule/prediction_size is 500, expected Y = 600 as in the rule",
    ),
    "out/total_loss": (np.zeros((1,), np.float32), "out/total_loss has shape (1,), expected a"),
  }
  for key, (value, message) in cases.items():
    problems = golden_format.golden_problems({**data, key: value}, dims)
    assert problems and problems[0].startswith(message), (key, problems)
  as_float = {**data, "actions": data["actions"].astype(np.float32)}
  assert golden_format.golden_problems(as_float, dims) == [
    "actions has dtype float32, expected an integer dtype"
  ]


def test_optional_debug_key_may_be_absent(params, tmp_path):
  with np.load(GOLDEN) as f:
    data = {k: f[k] for k in f.files if k != "debug/rho"}
  assert golden_format.golden_problems(data, golden_format.rule_dims(params)) == []


def test_untouched_copy_still_passes(params, tmp_path, monkeypatch, capsys, disco_home):
  copy = tmp_path / GOLDEN.name
  shutil.copy(GOLDEN, copy)
  assert golden_format.golden_problems(verify.load_golden(copy)) == []
  code, out, err = _run_cli(
    monkeypatch, capsys, disco_home, "rules", "verify", "disco103", "--golden", str(copy)
  )
  assert code == 0, out + err
  assert "all 1 file(s) within bounds" in out.replace("\n", " ")
