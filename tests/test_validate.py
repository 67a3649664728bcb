"""Settings are validated before anything runs (disco_eval.config.validate).

Through the command line: each bad value of the issue's probes is one line
``error: KEY = VALUE is out of range: ...``, exit 1, and the results folder
stays empty. Property-based: the validator's verdict equals a plain
re-statement of each rule, over random values.
"""

import dataclasses
import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disco_eval.cli import main
from disco_eval.config import manifests, resolve, suites, validate
from disco_eval.config.run_config import RuleIdentity
from disco_eval.config.train import TrainConfig
from disco_eval.errors import UserError

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def disco103_cached(disco_home: Path, disco103_npz: Path) -> Path:
  """Disco103's published weights where the (temporary) cache expects them."""
  folder = disco_home / "rules"
  folder.mkdir(parents=True)
  (folder / "disco_103.npz").symlink_to(disco103_npz)
  return disco_home


def run_cli(monkeypatch, capsys, *args) -> tuple[int, list[str]]:
  """`disco-eval ARGS` through the console-script wrapper: (exit code,
  non-empty stderr lines)."""
  monkeypatch.setattr(sys, "argv", ["disco-eval", *map(str, args)])
  with pytest.raises(SystemExit) as exit_info:
    main()
  lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  return exit_info.value.code, lines


def assert_refused(monkeypatch, capsys, out: Path, *args) -> str:
  """Runs `args` on Catch into `out`; checks exit 1, one `error:` line and
  nothing written under `out`. Returns the line."""
  steps = [] if "--steps" in args else ["--steps", 1000]  # small, should a bad value run
  code, lines = run_cli(
    monkeypatch, capsys, "run", "catch", "--seeds", 1, "--out", out, *steps, *args
  )
  assert code == 1, lines
  assert len(lines) == 1, lines
  assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
  assert not out.exists() or not any(out.iterdir())
  return lines[0]


PROBES = [
  ("optimizer.learning_rate", "nan", "a finite number > 0"),
  ("optimizer.learning_rate", "inf", "a finite number > 0"),
  ("optimizer.learning_rate", "-1e-3", "a finite number > 0"),
  ("hyperparams.discount_factor", "2", "a number in [0, 1]"),
  ("train.num_envs", "0", "an integer >= 1"),
  ("train.rollout_len", "0", "an integer >= 2"),
  ("train.num_envs", "-2", "an integer >= 1"),
  ("train.sample_entries", "0", "an integer >= 1"),
]


@pytest.mark.parametrize("key, value, allowed", PROBES)
def test_issue_probes_are_one_line_errors_and_write_nothing(
  monkeypatch, capsys, tmp_path, key, value, allowed
):
  out = tmp_path / "results"
  line = assert_refused(
    monkeypatch, capsys, out, "--rule", "actor_critic", "--set", f"{key}={value}"
  )
  assert f"{key} = " in line and allowed in line
  assert f"--set {key}=" in line


@pytest.mark.parametrize("value", ["nan", "inf", "-1e-3"])
def test_disco103_learning_rate_probes(monkeypatch, capsys, tmp_path, disco103_cached, value):
  out = tmp_path / "results"
  line = assert_refused(monkeypatch, capsys, out, "--set", f"optimizer.learning_rate={value}")
  assert line.startswith(f"error: optimizer.learning_rate = {float(value)!r} is out of range")


@pytest.mark.parametrize(
  "args, key",
  [
    (["--rule", "ppo", "--set", "rule.num_minibatches=3"], "rule.num_minibatches"),
    (["--set", "train.learner_microbatches=3"], "train.learner_microbatches"),
    (["--set", "train.min_buffer=2000"], "train.min_buffer"),
    (["--set", "train.sample_entries=2000"], "train.sample_entries"),
    (["--set", "train.num_envs=3", "--devices", "2"], "train.num_envs"),
    (["--set", "agent.head_init_std=nan"], "agent.head_init_std"),
    (["--set", "rule.max_abs_value=inf"], "rule.max_abs_value"),
    (["--set", "optimizer.b2=1"], "optimizer.b2"),
    (["--set", "protocol.eval_episodes=0"], "protocol.eval_episodes"),
    (["--steps", "0"], "--steps"),
    (["--seed-start", "-1"], "seed"),
  ],
)
def test_relations_and_other_ranges_are_refused(monkeypatch, capsys, tmp_path, args, key):
  rule = [] if "--rule" in args else ["--rule", "actor_critic"]
  line = assert_refused(monkeypatch, capsys, tmp_path / "results", *rule, *args)
  assert line.startswith(f"error: {key} = ") or line.startswith(f"error: {key} {args[-1]}: ")


# -- property-based: the verdict equals a plain statement of the rule ---------


def catch_config(overrides=(), rule: str = "actor_critic", steps: int | None = 2000):
  """The resolved (and so validated) config of `rule` on Catch."""
  suite = suites.load_suite("catch")
  manifest = manifests.load_rule_manifest(rule)
  identity = RuleIdentity(manifest.name, manifest.kind, None, None)
  return resolve.resolve(suite, "catch", identity, manifest, steps=steps, overrides=overrides)


def accepted(call) -> bool:
  """True if `call()` returns, False if it raises a UserError."""
  try:
    call()
  except UserError:
    return False
  return True


any_float = st.floats(allow_nan=True, allow_infinity=True)


@PROPERTY
@given(lr=any_float)
def test_learning_rate_passes_iff_finite_and_positive(lr):
  ok = accepted(lambda: catch_config((("optimizer.learning_rate", repr(lr)),)))
  assert ok == (math.isfinite(lr) and lr >= 1.4e-45)  # smaller is 0 in float32


DISCOUNTS = [
  ("actor_critic", "hyperparams.discount_factor"),
  ("actor_critic", "hyperparams.vtrace_lambda"),
  ("ppo", "hyperparams.discount_factor"),
  ("ppo", "hyperparams.gae_lambda"),
  ("disco103", "hyperparams.discount_factor"),
  ("disco103", "hyperparams.value_fn_td_lambda"),
  ("disco103", "rule.value_discount"),
]


@PROPERTY
@given(where=st.sampled_from(DISCOUNTS), value=any_float)
def test_discounts_and_lambdas_pass_iff_in_unit_interval(where, value):
  rule, key = where
  ok = accepted(lambda: catch_config(((key, repr(value)),), rule=rule))
  assert ok == (0 <= value <= 1)


@PROPERTY
@given(value=any_float, name=st.sampled_from(["entropy_cost", "pg_cost", "value_cost"]))
def test_costs_pass_iff_finite_and_non_negative(value, name):
  ok = accepted(lambda: catch_config(((f"hyperparams.{name}", repr(value)),)))
  assert ok == (math.isfinite(value) and value >= 0)


size = st.integers(min_value=-2, max_value=12)
loop_configs = st.builds(
  TrainConfig,
  num_envs=size,
  rollout_len=size,
  iterations=size,
  buffer_capacity=size,
  min_buffer=size,
  sample_entries=size,
  updates_per_iteration=size,
  chunk=size,
  vmap_seeds=st.integers(min_value=-2, max_value=2),
  learner_microbatches=size,
  devices=st.integers(min_value=-1, max_value=4),
)
rule_tables = st.fixed_dictionaries(
  {"num_epochs": st.integers(min_value=0, max_value=3), "num_minibatches": size}
)


def loop_ok(cfg: TrainConfig, epochs: int, minibatches: int) -> bool:
  """The loop's rules, stated plainly."""
  sizes = (
    cfg.num_envs,
    cfg.iterations,
    cfg.buffer_capacity,
    cfg.min_buffer,
    cfg.sample_entries,
    cfg.updates_per_iteration,
    cfg.chunk,
    cfg.learner_microbatches,
    cfg.devices,
  )
  if min(sizes) < 1 or cfg.rollout_len < 2 or cfg.vmap_seeds not in (-1, 0, 1):
    return False
  if epochs < 1 or minibatches < 1:
    return False
  batch = cfg.sample_entries * cfg.num_envs
  if epochs * minibatches > 1:
    one_piece = batch // minibatches  # the learner's PPO-style minibatch
  else:
    one_piece = batch // cfg.learner_microbatches
  return (
    cfg.min_buffer <= cfg.buffer_capacity
    and cfg.sample_entries <= cfg.buffer_capacity
    and cfg.num_envs % cfg.devices == 0
    and batch % cfg.learner_microbatches == 0
    and batch % minibatches == 0
    and one_piece % cfg.devices == 0
  )


@PROPERTY
@given(cfg=loop_configs, table=rule_tables)
def test_loop_sizes_pass_iff_positive_and_relations_hold(cfg, table):
  ok = accepted(lambda: validate.check_loop(cfg, table))
  assert ok == loop_ok(cfg, table["num_epochs"], table["num_minibatches"])


@PROPERTY
@given(
  key=st.sampled_from(["num_envs", "rollout_len", "sample_entries", "chunk", "devices"]),
  value=st.integers(min_value=-5, max_value=5),
)
def test_train_overrides_never_crash_resolve(key, value):
  """Any integer for a loop size gives a config or a one-line UserError
  (never ZeroDivisionError or a negative number of iterations)."""
  lowest = 2 if key == "rollout_len" else 1
  try:
    config = catch_config(((f"train.{key}", str(value)),))
  except UserError as e:
    assert " is out of range: " in str(e) and "\n" not in str(e)
    if value < lowest:
      assert str(e).startswith(f"train.{key} = {value} is out of range")
    return
  assert value >= lowest
  assert dataclasses.asdict(config.train)[key] == value
  assert config.train.iterations >= 1


def test_every_built_in_rule_suite_and_protocol_passes_and_nan_never_does():
  """No false alarm: each rule on each suite's protocols, as shipped, is
  accepted; with a NaN learning rate, each is refused."""
  nan = (("optimizer.learning_rate", "nan"),)
  for suite in suites.list_suites():
    for protocol in suite.protocols:
      for manifest in manifests.list_rule_manifests():
        identity = RuleIdentity(manifest.name, manifest.kind, None, None)
        args = (suite, suite.tasks[0], identity, manifest)
        resolve.resolve(*args, protocol=protocol)
        with pytest.raises(UserError, match="optimizer.learning_rate = nan is out of range"):
          resolve.resolve(*args, protocol=protocol, overrides=nan)
