"""The GPU box, checked on the CPU: doctor, precision, torso dtype, backend refusal, records."""

import json
import re

import jax
import jax.numpy as jnp
import pytest
from typer.testing import CliRunner

from disco_eval import doctor, runtime, store
from disco_eval.agents.networks import Agent
from disco_eval.cli import app
from disco_eval.config import fingerprint, label, manifests, resolve, suites
from disco_eval.config.run_config import RuleIdentity
from disco_eval.errors import UserError
from disco_eval.rules import architectures, disco, verify
from disco_eval.rules.base import OutputSpec, Rollout
from disco_eval.runs import SweepSpec, run_sweep

S = jax.ShapeDtypeStruct
F32 = jnp.float32
T, B, A, Y, N = 3, 2, 4, 600, 601
CFG = disco.RuleConfig(
  pi_cost=1.0,
  y_cost=1.0,
  z_cost=1.0,
  aux_policy_cost=1.0,
  value_cost=0.2,
  target_params_coeff=0.9,
  value_fn_td_lambda=0.95,
  discount_factor=0.997,
  value_discount=0.997,
  max_abs_value=300.0,
  num_bins=N,
  prediction_size=Y,
  ema_decay=0.99,
  ema_eps=1e-6,
)
_ENV = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "XLA_FLAGS")


@pytest.fixture(autouse=True)
def isolated_runtime(monkeypatch):
  """The CLI's start-up sets environment variables and jax's cache config:
  both are put back after each test."""
  for name in (*_ENV, runtime.CACHE_ENV, runtime.DETERMINISTIC_ENV):
    monkeypatch.delenv(name, raising=False)
  saved = {
    k: getattr(jax.config, k)
    for k in ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  }
  yield
  for k, v in saved.items():
    jax.config.update(k, v)
  from jax._src import compilation_cache

  compilation_cache.reset_cache()


# --- doctor -------------------------------------------------------------------------------------


def test_doctor_reports_every_item_and_exits_0_on_this_cpu(monkeypatch):
  monkeypatch.setattr(runtime, "gpu_present", lambda: None)
  res = CliRunner().invoke(app, ["doctor", "--json"])
  assert res.exit_code == 0, res.output
  rows = {r["name"]: r for r in json.loads(res.stdout)}
  for name in ("backend", "devices", "host RAM", "python", "jax", "jaxlib", "flax", "optax"):
    assert rows[name]["ok"], rows[name]
  for name in ("envpool", "crafter", "nle", "CPUs", "EnvPool threads", "libQt5Gui"):
    assert name in rows
  assert rows["backend"]["value"] == "cpu"
  assert rows["compile cache"]["value"].startswith(str(runtime.compile_cache_dir()))
  assert any(name.startswith("memory ") for name in rows)


def test_doctor_names_the_fix_for_a_gpu_jax_does_not_use(monkeypatch):
  monkeypatch.setattr(runtime, "gpu_present", lambda: "nvidia-smi is on PATH")
  res = CliRunner().invoke(app, ["doctor", "--json"])
  assert res.exit_code == 1
  backend = next(r for r in json.loads(res.stdout) if r["name"] == "backend")
  assert not backend["ok"] and backend["required"]
  assert runtime.CUDA_FIX in backend["fix"]


def test_missing_packages_and_libraries_carry_their_fix():
  rows = doctor.package_checks(lambda name: None if name in ("nle", "jax") else "1.0")
  by = {r.name: r for r in rows}
  assert not by["nle"].ok and not by["nle"].required and "pip install" in by["nle"].fix
  assert [r.name for r in doctor.failed_required(rows)] == ["jax"]
  libs = doctor.library_checks(linker_cache="\tlibQt5Core.so.5 (libc6,x86-64) => /lib/x")
  by = {r.name: r for r in libs}
  assert by["libQt5Core"].ok and not by["libQt5Gui"].ok
  assert "apt-get install libqt5gui5" in by["libQt5Gui"].fix


# --- refusing the CPU when a GPU is present --------------------------------------------------


def test_gpu_presence_is_read_from_nvidia_smi_or_the_driver(tmp_path):
  assert runtime.gpu_present(lambda n: "/usr/bin/nvidia-smi", tmp_path / "no") is not None
  assert runtime.gpu_present(lambda n: None, tmp_path / "no") is None
  (tmp_path / "nvidia").mkdir()
  assert "nvidia" in runtime.gpu_present(lambda n: None, tmp_path / "nvidia")


def test_check_backend_refuses_cpu_jax_on_a_gpu_box():
  gpu = lambda: "nvidia-smi is on PATH"
  with pytest.raises(UserError) as e:
    runtime.check_backend(False, backend="cpu", find_gpu=gpu)
  assert 'pip install -e ".[cuda12]"' in str(e.value) and "--allow-cpu" in str(e.value)
  assert "\n" not in str(e.value)
  runtime.check_backend(True, backend="cpu", find_gpu=gpu)  # --allow-cpu
  runtime.check_backend(False, backend="gpu", find_gpu=gpu)
  runtime.check_backend(False, backend="cpu", find_gpu=lambda: None)


def test_run_refuses_before_training_unless_allowed(monkeypatch, tmp_path):
  monkeypatch.setattr(runtime, "gpu_present", lambda: "/proc/driver/nvidia exists")
  args = ["run", "catch", "--rule", "actor_critic", "--seeds", "1", "--steps", "60"]
  res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r")])
  assert res.exit_code == 1 and isinstance(res.exception, UserError)
  assert "--allow-cpu" in str(res.exception)
  assert not (tmp_path / "r").exists()


# --- precision ---------------------------------------------------------------------------------


def _dot_lines(text: str) -> list[str]:
  return [ln for ln in text.splitlines() if re.search(r"stablehlo\.(dot_general|convolution)", ln)]


def _rule_params():
  params = {}
  for key, shape in architectures.DISCO103_SHAPES.items():
    module, name = key.rsplit("/", 1)
    params.setdefault(module, {})[name] = S(shape, F32)
  return params


def _agent_out():
  return {
    "logits": S((T + 1, B, A), F32),
    "y": S((T + 1, B, Y), F32),
    "z": S((T + 1, B, A, Y), F32),
    "q": S((T + 1, B, A, N), F32),
    "aux_pi": S((T + 1, B, A, A), F32),
  }


def _assert_all_highest(text: str, at_least: int) -> None:
  lines = _dot_lines(text)
  assert len(lines) >= at_least
  # StableHLO spells the request per operand: precision = [HIGHEST, HIGHEST].
  bad = [ln.strip()[:160] for ln in lines if "precision = [HIGHEST, HIGHEST]" not in ln]
  assert not bad, bad


def test_rules_verify_step_requests_full_precision_in_the_lowered_program():
  state = jax.eval_shape(disco.initial_meta_state)
  a = S((T + 1, B), F32)
  lowered = verify.rule_step_outputs.lower(
    _rule_params(), state, S((T + 1, B), jnp.int32), a, a, _agent_out(), S((T + 1, B, A), F32),
    _agent_out(), CFG,
  )  # fmt: skip
  _assert_all_highest(lowered.as_text(), at_least=20)  # forward and gradient products


def test_the_rules_targets_and_loss_request_full_precision():
  """DiscoRule.targets (meta-network, value decoding, Retrace) and its loss, lowered
  with a target network that is its own outputs (so that every product is the rule's)."""
  rule = disco.DiscoRule(cfg=CFG)
  unroll = lambda params, obs: params  # the "target network" returns its parameters

  def targets_and_loss(rule_params, agent_out, batch):
    state = disco.DiscoState(disco.initial_meta_state(), agent_out)
    out, _, _ = rule.targets(rule_params, state, batch, agent_out, agent_out, unroll)
    return jax.grad(lambda ao: rule.loss(ao, out, batch)[0].sum())(agent_out)

  batch = Rollout(
    observations=S((T + 1, B, 1), F32),
    actions=S((T + 1, B), jnp.int32),
    rewards=S((T + 1, B), F32),
    discounts=S((T + 1, B), F32),
    behaviour_logits=S((T + 1, B, A), F32),
  )
  text = jax.jit(targets_and_loss).lower(_rule_params(), _agent_out(), batch).as_text()
  _assert_all_highest(text, at_least=15)


# --- torso dtype -------------------------------------------------------------------------------


def _lowered_torso(torso: str, dtype: str) -> str:
  settings = {
    "torso": torso,
    "torso_hidden": [16],
    "impala_channels": [4],
    "impala_hidden": 8,
    "torso_dtype": dtype,
  }
  obs_shape = (3, 16, 16) if torso == "impala_cnn" else (5,)
  agent = Agent(settings, OutputSpec(flat={"logits": (3,)}, model={}), 3, obs_shape)
  params = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
  return jax.jit(agent.apply).lower(params, S((2, *obs_shape), F32)).as_text()


@pytest.mark.parametrize("torso", ["mlp", "impala_cnn"])
def test_bfloat16_torso_changes_the_lowered_program(torso):
  f32 = _dot_lines(_lowered_torso(torso, "float32"))
  bf16 = _dot_lines(_lowered_torso(torso, "bfloat16"))
  assert f32 and not any("bf16" in ln for ln in f32)
  assert len(bf16) == len(f32)
  # The torso's products run in bf16; the head on its float32 embedding does not.
  assert 1 <= sum("bf16" in ln for ln in bf16) < len(bf16)


def _identity(name: str) -> RuleIdentity:
  kind = manifests.load_rule_manifest(name).kind
  return RuleIdentity(name=name, kind=kind, sha256=None, source=None)


def _resolve(rule: str, **kwargs):
  return resolve.resolve(
    suites.load_suite("catch"), "catch", _identity(rule), manifests.load_rule_manifest(rule),
    **kwargs,
  )  # fmt: skip


def test_bfloat16_shows_in_the_label_and_other_dtypes_are_refused():
  plain = _resolve("ppo", steps=600)
  bf16 = _resolve("ppo", steps=600, overrides=(("agent.torso_dtype", "bfloat16"),))
  assert plain.settings["agent"]["torso_dtype"] == "float32"
  assert bf16.settings["agent"]["torso_dtype"] == "bfloat16"
  assert plain.label == "reference@600" and bf16.label == "reference@600+torso=bfloat16"
  assert fingerprint.fingerprint(plain.to_json()) != fingerprint.fingerprint(bf16.to_json())
  with pytest.raises(UserError, match="agent.torso_dtype.*float32, bfloat16"):
    _resolve("ppo", steps=600, overrides=(("agent.torso_dtype", "float16"),))


def test_a_record_from_before_torso_dtype_still_matches(tmp_path):
  doc = {**_resolve("impala", steps=600).to_json(), "seed": 0, "versions": store.versions()}
  old = json.loads(json.dumps(doc))
  del old["settings"]["agent"]["torso_dtype"]
  assert label.protocol_label(old) == doc["label"]
  assert fingerprint.fingerprint(old) == fingerprint.fingerprint(doc)
  store.RunRecord.open(tmp_path, "catch", "catch", "impala", 0, old)
  record = store.RunRecord.open(tmp_path, "catch", "catch", "impala", 0, doc)  # no error
  with record.lock():
    pass


# --- compile cache and determinism -------------------------------------------------------------


def test_compile_cache_lives_under_disco_eval_home_and_can_be_turned_off(disco_home, monkeypatch):
  folder = runtime.setup_compile_cache()
  assert folder == disco_home / runtime.CACHE_FOLDER
  assert jax.config.jax_compilation_cache_dir == str(folder)
  assert jax.config.jax_persistent_cache_min_compile_time_secs == runtime.MIN_COMPILE_SECONDS
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
  assert runtime.setup_compile_cache(enabled=False) is None
  assert runtime.recorded_env()[runtime.CACHE_ENV] == "off"
  assert runtime.cache_status()["enabled"] is False


def test_the_cli_turns_the_cache_on_at_start(disco_home, monkeypatch):
  monkeypatch.setattr(runtime, "gpu_present", lambda: None)
  assert CliRunner().invoke(app, ["doctor"]).exit_code == 0
  assert jax.config.jax_compilation_cache_dir == str(disco_home / runtime.CACHE_FOLDER)


def test_deterministic_ops_go_into_xla_flags_before_the_backend_starts(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_foo=1")
  monkeypatch.setattr(runtime, "_backends_initialised", lambda: False)
  assert runtime.apply_determinism(False) is False
  assert runtime.apply_determinism(True) is True
  assert runtime.recorded_env()["XLA_FLAGS"] == "--xla_foo=1 " + runtime.DETERMINISTIC_FLAG
  assert runtime.deterministic() and runtime.recorded_env()[runtime.DETERMINISTIC_ENV] == "1"
  assert not runtime.deterministic({"XLA_FLAGS": "--xla_gpu_deterministic_ops=false"})
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setattr(runtime, "_backends_initialised", lambda: True)
  with pytest.raises(UserError, match="XLA_FLAGS"):
    runtime.apply_determinism(True)


# --- what a run records ------------------------------------------------------------------------


def _tiny_catch(out, rule="actor_critic"):
  spec = SweepSpec(
    suite="catch",
    rules=(rule,),
    seeds=(0,),
    steps=600,
    out=out,
    overrides=(("train.min_buffer", "4"), ("train.sample_entries", "4"), ("train.chunk", "8")),
  )
  return run_sweep(spec, lambda event: None)


@pytest.mark.slow
def test_a_run_records_its_backend_and_environment_without_matching_on_them(tmp_path, monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", runtime.DETERMINISTIC_FLAG)
  monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  (result,) = _tiny_catch(tmp_path)
  assert result.status == "complete", result.error
  config = json.loads((result.path / "config.json").read_text())
  rt = config["runtime"]
  assert rt["backend"] == "cpu" and rt["device_count"] == len(jax.devices())
  assert rt["device_kind"] == jax.devices()[0].device_kind
  assert rt["jax"] == jax.__version__ and rt["jaxlib"] == jax.__version__
  assert rt["deterministic"] is True
  assert rt["env"]["XLA_FLAGS"] == runtime.DETERMINISTIC_FLAG
  assert rt["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
  assert runtime.backend_label(config) == "cpu, deterministic"
  assert "runtime" in store.VOLATILE_CONFIG_KEYS
  # Another environment is the same run: skipped, not refused.
  monkeypatch.delenv("XLA_FLAGS")
  (again,) = _tiny_catch(tmp_path)
  assert again.status == "skipped"


def test_backend_label_of_stored_configs():
  gpu = {"backend": "gpu", "device_kind": "NVIDIA H200", "device_count": 1}
  assert runtime.backend_label({"runtime": gpu}) == "gpu: NVIDIA H200 x1"
  assert runtime.backend_label({"runtime": {"backend": "cpu", "device_kind": "cpu"}}) == "cpu"
  assert runtime.backend_label({}) == "unknown"
