"""`disco-eval bench SUITE --cost`: what XLA says the training programs cost.

The learner step and the policy step of the suite's protocol are compiled for
the device JAX uses (never run: abstract inputs of the protocol's shapes) and
XLA's own analyses are read: ``cost_analysis()`` (floating-point operations,
bytes accessed) and ``memory_analysis()`` (argument, output and temporary
buffers). Bytes per env step adds the iteration's learner steps and its
policy calls over the env steps they serve:

  (learner steps per iteration * learner bytes + policy calls per iteration * policy bytes)
  / env steps per iteration

Figures hold for the backend that compiled them (XLA fuses differently on a
CPU and a GPU); "bytes accessed" counts every operand read and result written
by each fused operation, an upper estimate of the memory traffic.

For rules whose loss reads the action model at the taken actions only, the
learner step is also compiled with the gradient through every action's
outputs (``learner_all_actions``), the program before that optimisation.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from disco_eval.bench.common import device_description
from disco_eval.rules.base import Rollout, acting_logits
from disco_eval.train.learner import Learner

MEMORY_FIELDS = (
  "argument_size_in_bytes",
  "output_size_in_bytes",
  "temp_size_in_bytes",
  "alias_size_in_bytes",
  "generated_code_size_in_bytes",
)


def compiled_cost(fn: Callable, *args: Any) -> dict[str, Any]:
  """XLA's cost and memory analyses of ``jax.jit(fn)`` compiled for `args`
  (arrays or ``jax.ShapeDtypeStruct`` s): flops, bytes accessed, their ratio,
  and the compiled program's buffer sizes (None where the backend reports
  none)."""
  compiled = jax.jit(fn).lower(*args).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  cost = cost or {}
  flops, nbytes = cost.get("flops"), cost.get("bytes accessed")
  out = {
    "flops": float(flops) if flops is not None else None,
    "bytes_accessed": float(nbytes) if nbytes is not None else None,
    "transcendentals": float(cost.get("transcendentals", 0.0)),
    "flops_per_byte": float(flops) / float(nbytes) if flops and nbytes else None,
  }
  try:
    mem = compiled.memory_analysis()
  except (NotImplementedError, RuntimeError):  # a backend without it
    mem = None
  out["memory"] = {k: int(getattr(mem, k)) for k in MEMORY_FIELDS if hasattr(mem, k)}
  return out


def _abstract(tree: Any) -> Any:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree)


def abstract_inputs(
  env, rule_obj, agent, opt, rule_params, cfg, obs_dtype: Any = None
) -> dict[str, Any]:
  """Shapes and dtypes of the learner's and the policy's inputs under `cfg`:
  params, opt_state, rule_state, rule_params, a learner batch [L, B, ...]
  (observations as the replay buffer keeps them, or in `obs_dtype`), the
  policy's observations [E, ...] and a key. `env` needs only
  ``observation_shape`` and ``num_actions``."""
  key = jax.random.PRNGKey(0)
  params = jax.eval_shape(agent.init, key)
  opt_state = jax.eval_shape(opt.init, params)
  rule_state = jax.eval_shape(rule_obj.init_state, key, params)
  length, b = cfg.learner_batch_shape
  if obs_dtype is None:
    obs_dtype = env.observation_dtype if _is_host(env) else jnp.float32
  obs_shape = tuple(env.observation_shape)
  f32 = jnp.float32
  batch = Rollout(
    observations=jax.ShapeDtypeStruct((length, b) + obs_shape, obs_dtype),
    actions=jax.ShapeDtypeStruct((length, b), jnp.int32),
    rewards=jax.ShapeDtypeStruct((length, b), f32),
    discounts=jax.ShapeDtypeStruct((length, b), f32),
    behaviour_logits=jax.ShapeDtypeStruct((length, b, env.num_actions), f32),
  )
  return {
    "params": params,
    "opt_state": opt_state,
    "rule_state": rule_state,
    "rule_params": _abstract(rule_params),
    "batch": batch,
    "obs": jax.ShapeDtypeStruct((cfg.num_envs,) + obs_shape, obs_dtype),
    "key": _abstract(key),
  }


def _is_host(env) -> bool:
  from disco_eval.envs.base import HostTask

  return isinstance(env, HostTask)


def _learner_cost(learner: Learner, x: dict) -> dict[str, Any]:
  def step(params, opt_state, rule_state, rule_params, batch, key):
    return learner.step(params, opt_state, rule_state, rule_params, batch, key)[:4]

  return compiled_cost(
    step, x["params"], x["opt_state"], x["rule_state"], x["rule_params"], x["batch"], x["key"]
  )


def run_cost(suite, proto, task: str, rule, parts: tuple, cfg) -> dict[str, Any]:
  """The cost analyses of one (suite, task, rule, protocol); JSON-able."""
  env, rule_obj, agent, opt = parts
  x = abstract_inputs(env, rule_obj, agent, opt, rule.params, cfg)
  learner = Learner(agent, rule_obj, opt, cfg)

  def policy(params, obs, key):
    logits = acting_logits(rule_obj, agent.apply(params, obs), 0.0)
    return jax.random.categorical(key, logits)

  res: dict[str, Any] = {
    "device": device_description(),
    "jax": jax.__version__,
    "suite": suite.name,
    "task": task,
    "protocol": proto.name,
    "rule": rule.label,
    "loop": cfg.describe(),
    "train": dataclasses.asdict(cfg),
    "taken_action_grad": learner.taken_action_grad,
    "learner": _learner_cost(learner, x),
    "policy": compiled_cost(policy, x["params"], x["obs"], x["key"]),
  }
  if learner.taken_action_grad:
    before = Learner(agent, rule_obj, opt, cfg, taken_action_grad=False)
    res["learner_all_actions"] = _learner_cost(before, x)
  res["per_env_step"] = per_env_step(res, cfg)
  return res


def per_env_step(res: dict[str, Any], cfg) -> dict[str, Any]:
  """FLOPs and bytes per env step of the learner, the policy and both, and
  of the all-action learner where measured."""
  steps = cfg.steps_per_iteration
  policy_calls = steps // cfg.num_envs  # one call acts for every environment
  out = {}
  for name, calls in (
    ("learner", cfg.updates_per_iteration),
    ("learner_all_actions", cfg.updates_per_iteration),
    ("policy", policy_calls),
  ):
    if name in res:
      for field in ("flops", "bytes_accessed"):
        value = res[name][field]
        out[f"{name}_{field}"] = None if value is None else value * calls / steps
  for field in ("flops", "bytes_accessed"):
    parts = (out.get(f"learner_{field}"), out.get(f"policy_{field}"))
    out[f"total_{field}"] = None if None in parts else sum(parts)
  return out


def _gb(x) -> str:
  return "not reported" if x is None else f"{x / 1e9:,.3f} GB"


def cost_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
  """(measurement, value) rows of a ``run_cost`` result, for a table."""
  rows = [("device", res["device"]), ("jax", res["jax"])]
  rows.append(("loop", res["loop"]))
  for name in ("learner", "learner_all_actions", "policy"):
    if name not in res:
      continue
    c = res[name]
    flops = "not reported" if c["flops"] is None else f"{c['flops'] / 1e9:,.2f} GFLOP"
    ratio = "" if c["flops_per_byte"] is None else f", {c['flops_per_byte']:.1f} FLOP/byte"
    rows.append((f"{name}: per call", f"{flops}, {_gb(c['bytes_accessed'])} accessed{ratio}"))
    mem = c["memory"]
    if mem:
      rows.append(
        (
          f"{name}: buffers",
          f"arguments {_gb(mem.get('argument_size_in_bytes'))}, "
          f"outputs {_gb(mem.get('output_size_in_bytes'))}, "
          f"temporaries {_gb(mem.get('temp_size_in_bytes'))}",
        )
      )
  per = res["per_env_step"]
  for name in ("learner", "learner_all_actions", "policy", "total"):
    nbytes = per.get(f"{name}_bytes_accessed")
    if f"{name}_bytes_accessed" in per:
      value = "not reported" if nbytes is None else f"{nbytes / 1e6:,.3f} MB"
      rows.append((f"{name}: bytes per env step", value))
  return rows
