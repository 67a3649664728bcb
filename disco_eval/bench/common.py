"""What the benchmarks of both kinds of suite share: timing, the device, the
result's header and the learner step's split into parts."""

import dataclasses
import os
import platform
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval.agents.networks import Agent
from disco_eval.train.learner import Learner


def median_time(fn: Callable[[], Any], repeats: int) -> float:
  """Median wall seconds of `repeats` calls of `fn` (waited for), after one
  untimed call (compilation)."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def device_description() -> str:
  """The device JAX uses, its backend and count, the host's cores and machine."""
  d = jax.devices()[0]
  kind = d.device_kind
  return (
    f"{kind} ({jax.default_backend()}, {jax.device_count()} device(s)), "
    f"{os.cpu_count()} CPU cores, {platform.machine()}"
  )


def header(suite, proto, task: str, rule, cfg, repeats: int) -> dict[str, Any]:
  """What every bench result starts with: device, versions, the loop's settings
  (`cfg`, a TrainConfig) and their summary in words."""
  return {
    "device": device_description(),
    "jax": jax.__version__,
    "python": platform.python_version(),
    "suite": suite.name,
    "backend": suite.backend,
    "task": task,
    "protocol": proto.name,
    "rule": rule.label,
    "train": dataclasses.asdict(cfg),
    "loop": cfg.describe(),
    "steps_per_iteration": cfg.steps_per_iteration,
    "repeats": repeats,
  }


def learner_split(
  learner: Learner, state, batch, rule, agent: Agent, rule_obj, repeats: int
) -> dict[str, float]:
  """Median times of ``learner.step`` on `batch` and of its parts:
  agent forward + backward, the target network's forward (rules that keep
  one), the rule (targets + loss gradient). `state` has params, opt_state and
  rule_state (a ``TrainState`` or a ``HostState``)."""
  step = jax.jit(
    lambda s, b: learner.step(
      s.params, s.opt_state, s.rule_state, rule.params, b, jax.random.PRNGKey(1)
    )[:4]
  )

  def fwd_bwd(p, b):
    out, pullback = jax.vjp(lambda q: agent.apply(q, b.observations), p)
    return pullback(jax.tree.map(jnp.ones_like, out))

  fwd = jax.jit(lambda p, b: agent.apply(p, b.observations))
  agent_out = fwd(state.params, batch)

  unrolls = []  # the rule's calls of unroll_fn (a target network), while traced

  def rule_part(s, b, ao):
    def no_target(p, obs):  # the target forward is timed apart
      unrolls.append(obs.shape)
      return ao

    targets, _, _ = rule_obj.targets(rule.params, s.rule_state, b, ao, s.params, no_target)
    return jax.grad(lambda o: jnp.sum(rule_obj.loss(o, targets, b)[0]))(ao)

  fwd_bwd, rule_part = jax.jit(fwd_bwd), jax.jit(rule_part)
  total = median_time(lambda: step(state, batch), repeats)
  parts = {
    "agent_forward_backward_s": median_time(lambda: fwd_bwd(state.params, batch), repeats),
    "rule_s": median_time(lambda: rule_part(state, batch, agent_out), repeats),
  }
  if unrolls:  # the rule unrolls a target network (seen when rule_part was traced)
    parts["target_forward_s"] = median_time(lambda: fwd(state.params, batch), repeats)
  return {"step_s": total, **parts, "rule_share": parts["rule_s"] / total}
