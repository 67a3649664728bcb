"""Rule variants (input ablations) and `disco-eval analyze`: the variants zero exactly the
inputs they say, the sensitivity is the gradient it claims to be, and each analysis runs on
a tiny real Catch run."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.analysis.inside import golden, probes, sensitivity
from disco_eval.config.run_config import RuleIdentity
from disco_eval.errors import UserError
from disco_eval.rules import disco, variants, weights

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"
TINY = ["--set", "train.min_buffer=4", "--set", "train.sample_entries=4"]
TINY += ["--set", "train.chunk=5", "--set", "agent.torso_hidden=[32]"]


def cli(*args, home: Path, timeout=600):
  env = dict(os.environ, DISCO_EVAL_HOME=str(home))
  return subprocess.run(
    [sys.executable, "-m", "disco_eval.cli", *map(str, args)],
    capture_output=True,
    text=True,
    env=env,
    timeout=timeout,
  )


def one_line_error(res) -> str:
  assert res.returncode == 1, res.stdout + res.stderr
  lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
  return lines[0]


FILES = sorted(GOLDEN.glob("rule_step_*.npz"))


@pytest.fixture(scope="module")
def params():
  path = GOLDEN.parent / "rules" / "disco_103.npz"
  if not path.is_file():
    pytest.skip(f"{path} is missing")
  return weights.load_params(path)


def _golden(i: int = 0):
  if not FILES:
    pytest.skip(f"{GOLDEN} holds no golden files")
  return golden.golden_inputs(FILES[i])


def test_zero_yz_zeroes_exactly_y_and_z():
  inp, _, _ = _golden()
  zeroed = variants.zero_yz(inp)
  for which in ("agent_out", "target_out"):
    before, after = getattr(inp, which), getattr(zeroed, which)
    assert set(before) == set(after)
    for leaf in before:
      if leaf in ("y", "z"):
        assert after[leaf].shape == before[leaf].shape
        assert not np.any(np.asarray(after[leaf])) and np.any(np.asarray(before[leaf]))
      else:
        assert after[leaf] is before[leaf]
  for field in ("actions", "rewards", "is_terminal", "behaviour_logits"):
    assert getattr(zeroed, field) is getattr(inp, field)


def test_variants_targets_ignore_exactly_what_they_say(params):
  inp, state, cfg = _golden()
  noisy = inp._replace(
    agent_out={**inp.agent_out, "y": inp.agent_out["y"] + 1.0, "z": inp.agent_out["z"] * 2.0},
    target_out={**inp.target_out, "y": -inp.target_out["y"]},
  )
  step = jax.jit(variants.variant_meta_step, static_argnames=("cfg", "variant"))
  full = jax.jit(disco.meta_step, static_argnames=("cfg",))
  # no-yz: no target sees the predictions (the same program on different y, z).
  a, _ = step(params, state, inp, cfg, variant="no-yz")
  b, _ = step(params, state, noisy, cfg, variant="no-yz")
  for x, y in ((a.pi_hat, b.pi_hat), (a.y_hat, b.y_hat), (a.z_hat, b.z_hat)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # no-yz-bootstrap: y and z targets as no-yz's, the policy target as the full rule's.
  c, _ = step(params, state, inp, cfg, variant="no-yz-bootstrap")
  f, _, _ = full(params, state, inp, cfg)
  np.testing.assert_allclose(np.asarray(c.y_hat), np.asarray(a.y_hat), rtol=0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(c.z_hat), np.asarray(a.z_hat), rtol=0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(c.pi_hat), np.asarray(f.pi_hat), rtol=0, atol=1e-5)
  assert np.max(np.abs(np.asarray(f.y_hat) - np.asarray(a.y_hat))) > 1e-4
  assert np.max(np.abs(np.asarray(f.pi_hat) - np.asarray(a.pi_hat))) > 1e-4


def test_variant_specs_and_records(disco103_npz):
  assert variants.split("disco103") == ("disco103", None)
  assert variants.split("disco103:no-yz") == ("disco103", "no-yz")
  assert variants.split("x=/a/b.npz:no-yz-bootstrap") == ("x=/a/b.npz", "no-yz-bootstrap")
  with pytest.raises(UserError, match="known variants"):
    variants.split("disco103:no-y")
  rule = weights.resolve_rule(f"{disco103_npz}:no-yz")
  assert (rule.label, rule.variant) == ("disco_103:no-yz", "no-yz")
  with pytest.raises(UserError, match="Disco103's architecture"):
    weights.resolve_rule("actor_critic:no-yz")
  plain = RuleIdentity("disco103", "disco", "abc", "/x.npz")
  assert "variant" not in plain.to_json()  # older records keep matching
  assert (
    RuleIdentity("disco103:no-yz", "disco", "abc", "/x.npz", variant="no-yz").to_json()["variant"]
    == "no-yz"
  )


def _to64(tree):
  return jax.tree.map(
    lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
  )


def test_sensitivity_gradient_matches_finite_differences(params):
  """In float64: <grad, d> equals the central difference of <u, X_t> along d (|err| <= 1e-6
  relative, the differences' own error being O(eps^2) ~ 1e-8)."""
  inp, state, cfg = _golden()
  with jax.enable_x64(True):
    p64, inp64, st64 = _to64(params), _to64(inp), _to64(state)
    rng = np.random.default_rng(0)
    t = 1
    for target, leaf in (("y", ("agent", "y")), ("pi", ("target", "z")), ("z", ("agent", "z"))):
      size = inp.agent_out["logits"].shape[-1] if target == "pi" else inp.agent_out["y"].shape[-1]
      u = jnp.asarray(rng.normal(size=size))
      grads = sensitivity.probe_gradients(p64, st64, inp64, cfg, target, t, u)
      which, name = leaf
      base = getattr(inp64, "agent_out" if which == "agent" else "target_out")[name]
      d = jnp.asarray(rng.normal(size=base.shape))

      def f(eps, t=t, which=which, name=name, base=base, d=d, target=target, u=u):
        out = {**getattr(inp64, f"{which}_out"), name: base + eps * d}
        moved = inp64._replace(**{f"{which}_out": out})
        res, _, _ = disco.meta_step(p64, st64, moved, cfg, differentiable=True)
        x = {"y": res.y_hat, "z": res.z_hat, "pi": res.pi_hat}[target]
        return float(jnp.sum(x[t] @ u))

      eps = 1e-4
      fd = (f(eps) - f(-eps)) / (2 * eps)
      analytic = float(jnp.sum(grads[leaf] * d))
      assert abs(fd - analytic) <= 1e-6 * max(1.0, abs(analytic)), (target, fd, analytic)
      assert abs(analytic) > 1e-4  # the path exists


def test_sensitivity_of_no_yz_is_zero_and_curves_count_pairs(params):
  inp, state, cfg = _golden()
  s = sensitivity.sensitivity(params, state, inp, cfg, variant="no-yz", probes=1)
  assert all(float(np.max(v)) == 0.0 for v in s.values())
  steps, batch = inp.rewards.shape
  c = sensitivity.curves(s, 1)
  assert list(c.count) == [(steps - max(0, k - 1)) * batch for k in range(steps + 1)]


def test_future_targets_stay_in_the_episode():
  # One env: the episode ends at step 3 (discount 0), reward 1 arrives with step 3.
  rewards = np.array([[0], [0], [0], [1], [0], [0], [0], [0]], np.float32)
  discounts = np.array([[1], [1], [1], [0], [1], [1], [1], [1]], np.float32)
  entropy = np.arange(8, dtype=np.float64)[:, None]
  got = probes.future_targets(rewards, discounts, entropy, horizon=2, threshold=1.0)
  large, valid = got["future_large_reward"]
  assert valid[:, 0].tolist() == [True] * 6 + [False] * 2
  assert large[:6, 0].tolist() == [0, 1, 1, 0, 0, 0]
  ent, ok = got["future_policy_entropy"]
  assert ok[:6, 0].tolist() == [True, True, False, True, True, True]
  assert ent[0, 0] == 1.5 and ent[1, 0] == 2.0


def test_probe_learns_a_simple_function():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 3))
  folds, _ = probes.cross_validate(x, x[:, 0] * 2.0 + x[:, 1], classify=False, steps=300)
  assert folds.shape == (5,) and float(np.mean(folds)) > 0.9
  folds, base = probes.cross_validate(x, (x[:, 2] > 0).astype(float), classify=True, steps=300)
  assert float(np.mean(folds)) > 0.9 and 0.5 <= base < 0.7


# --- the commands, on a tiny real run --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, disco103_npz_module):
  home = tmp_path_factory.mktemp("home")
  res = cli("rules", "pull", "disco103", "--file", disco103_npz_module, home=home)
  assert res.returncode == 0, res.stderr
  out = tmp_path_factory.mktemp("res")
  args = ["run", "catch", "--rule", "disco103:no-yz", "--seeds", "1", "--steps", "1160"]
  res = cli(*args, "--out", out, "--checkpoint-every", "1", "--json", *TINY, home=home)
  assert res.returncode == 0, res.stderr
  run = out / "catch" / "catch" / "disco103:no-yz" / "seed0"
  return home, run


@pytest.fixture(scope="module")
def disco103_npz_module():
  path = GOLDEN.parent / "rules" / "disco_103.npz"
  if not path.is_file():
    pytest.skip(f"{path} is missing")
  return path


@pytest.mark.slow
def test_analyze_commands_on_a_tiny_run(tiny_run, tmp_path):
  home, run = tiny_run
  config = json.loads((run / "config.json").read_text())
  assert config["rule"]["name"] == "disco103:no-yz" and config["rule"]["variant"] == "no-yz"
  summary = json.loads((run / "summary.json").read_text())
  assert summary["rule"] == "disco103:no-yz"

  out = tmp_path / "boot.csv"
  res = cli("analyze", "bootstrap", "disco103", "--run", run, "--out", out, home=home)
  assert res.returncode == 0, res.stderr
  rows = [r for r in csv.reader(x for x in out.read_text().splitlines() if x[:1] != "#")]
  assert rows[0][:3] == ["k", "pairs", "y_hat<-y"] and len(rows) == 1 + 29
  assert float(rows[2][2]) > 0  # the full rule bootstraps y from y at t+1

  for kind, name in (("traces", "trace.png"), ("traces", "trace.csv"), ("probes", "p.csv")):
    extra = ["--envs", "8", "--steps", "40", "--train-steps", "50"] if kind == "probes" else []
    res = cli("analyze", kind, run, "--out", tmp_path / name, *extra, home=home)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / name).stat().st_size > 100
  table = (tmp_path / "p.csv").read_text()
  assert "future_large_reward" in table and "future_policy_entropy" in table

  line = one_line_error(cli("analyze", "traces", tmp_path, "--out", tmp_path / "x.csv", home=home))
  assert "not a run folder" in line
  line = one_line_error(cli("analyze", "probes", run, "--out", tmp_path / "x.txt", home=home))
  assert ".csv" in line
  line = one_line_error(cli("analyze", "bootstrap", "disco103:nope", "--out", out, home=home))
  assert "known variants" in line
  line = one_line_error(cli("analyze", "bootstrap", "disco103", "--out", out, home=home))
  assert "--golden" in line
