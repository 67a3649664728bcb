"""Throughput benchmark of the training loop (pure-JAX suites here; host-stepped
suites in :mod:`disco_eval.bench_host`).

Measures, on the device JAX uses:

* env-only steps/s: the suite's environment stepped with uniformly random
  actions, vmapped over the protocol's environments, inside one compiled scan;
* training steps/s: the real loop (act, store, sample, learn) once learning
  has started, for 1 seed and for N seeds (taking turns, and vmapped);
* the learner step and its parts: agent forward + backward, the target
  network's forward pass (rules that keep one), and the rule (targets + loss
  and its gradient with respect to the agent outputs).

Timings are medians of repeated calls after compilation (wall seconds).
"""

import dataclasses
import os
import platform
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval import checkpoints, experiment, suites
from disco_eval.agents.networks import Agent
from disco_eval.errors import UserError
from disco_eval.train import replay
from disco_eval.train.loop import Trainer


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def device_description() -> str:
  d = jax.devices()[0]
  kind = getattr(d, "device_kind", d.platform)
  return (f"{kind} ({jax.default_backend()}, {jax.device_count()} device(s)), "
          f"{os.cpu_count()} CPU cores, {platform.machine()}")


def env_steps_per_s(env, num_envs: int, steps: int, repeats: int) -> float:
  """Random-action env throughput, vmapped over `num_envs`, one compiled scan."""
  keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
  state, _ = jax.vmap(env.reset)(keys)

  @jax.jit
  def run(state, key):
    def body(s, k):
      a = jax.random.randint(k, (num_envs,), 0, env.num_actions)
      s, ts = jax.vmap(env.step)(s, a)
      return s, ts.reward.sum()
    return jax.lax.scan(body, state, jax.random.split(key, steps))

  t = _median_time(lambda: run(state, jax.random.PRNGKey(1)), repeats)
  return steps * num_envs / t


def run_bench(suite_name: str, rule_spec: str = "disco103", seeds: int = 4,
              protocol: str | None = None, task: str | None = None,
              overrides: tuple[tuple[str, str], ...] = (), chunk: int = 4,
              repeats: int = 3) -> dict[str, Any]:
  """Runs every measurement; returns a JSON-able dict.

  Host-stepped suites (ProcGen, Crafter, NetHack) are measured by
  :func:`disco_eval.bench_host.run_host_bench` (`chunk` unused there).
  """
  if seeds < 1:
    raise UserError(f"--seeds must be at least 1, got {seeds}")
  if repeats < 1:
    raise UserError(f"--repeats must be at least 1, got {repeats}")
  if chunk < 1:
    raise UserError(f"--chunk must be at least 1, got {chunk}")
  suite = suites.load_suite(suite_name)
  proto = suite.protocol(protocol)
  task = suite.check_tasks([task] if task else None)[0]
  rule = checkpoints.resolve_rule(rule_spec)
  scoped = experiment._scope_overrides(overrides, [rule.label])[rule.label]
  rule_over, train_over, _ = experiment._split_overrides(scoped)
  settings = experiment.rule_settings(rule.manifest, suite, rule_over)
  cfg = experiment.rule_train_config(proto, None, settings, train_over)
  # Learning from the first iteration, so that every timed chunk learns.
  cfg = dataclasses.replace(cfg, chunk=chunk, min_buffer=1)
  if suite.backend != "jax":
    from disco_eval import bench_host
    return bench_host.run_host_bench(suite, proto, task, rule, settings, cfg, seeds, repeats)
  env, rule_obj, agent, opt = experiment.build_parts(suite, task, rule, settings)
  spi = cfg.steps_per_iteration
  out = header(suite, proto, task, rule, cfg, repeats)

  out["env_steps_per_s"] = env_steps_per_s(env, cfg.num_envs, cfg.rollout_len * chunk, repeats)

  def train_rate(trainer: Trainer, n: int) -> float:
    state = trainer.init(0) if n == 1 else trainer.init_seeds(list(range(n)))
    step = (lambda s, it: trainer.run_chunk(s, rule.params, it, chunk)) if n == 1 else (
        lambda s, it: trainer.run_chunk_group(s, rule.params, it, chunk))
    state, _ = step(state, 0)          # compile, fill the buffer a little
    jax.block_until_ready(state)
    times = []
    for r in range(repeats):
      t = time.perf_counter()
      state, _ = step(state, chunk * (r + 1))
      jax.block_until_ready(state)
      times.append(time.perf_counter() - t)
    return chunk * spi * n / float(np.median(times))

  single = Trainer(env, agent, rule_obj, opt, cfg)
  out["train_steps_per_s"] = train_rate(single, 1)
  out["train_over_env_ratio"] = out["train_steps_per_s"] / out["env_steps_per_s"]
  scaling = {}
  for vm in (0, 1):
    tr = Trainer(env, agent, rule_obj, opt, dataclasses.replace(cfg, vmap_seeds=vm))
    rate = train_rate(tr, seeds)
    scaling["vmapped" if vm else "taking_turns"] = {
        "steps_per_s": rate,
        "wall_vs_one_seed": seeds * out["train_steps_per_s"] / rate}
  out["seeds"] = seeds
  out["scaling"] = scaling
  out["learner"] = _learner_split(single, rule, agent, rule_obj, cfg, repeats)
  return out


def header(suite, proto, task: str, rule, cfg, repeats: int) -> dict[str, Any]:
  """What every bench result starts with: device, versions, the loop's sizes."""
  return {
      "device": device_description(), "jax": jax.__version__,
      "python": platform.python_version(), "suite": suite.name, "backend": suite.backend,
      "task": task, "protocol": proto.name, "rule": rule.label, "num_envs": cfg.num_envs,
      "rollout_len": cfg.rollout_len, "batch_trajectories": cfg.sample_entries * cfg.num_envs,
      "updates_per_iteration": cfg.updates_per_iteration, "repeats": repeats}


def _learner_split(trainer: Trainer, rule, agent: Agent, rule_obj, cfg, repeats: int):
  """Median times of the learner step and its parts on a real batch."""
  state = trainer.init(0)
  state, _ = trainer.run_chunk(state, rule.params, 0, 2)     # a filled buffer
  batch = replay.sample(state.buffer, jax.random.PRNGKey(0), cfg.sample_entries)
  return learner_split(trainer, state, batch, rule, agent, rule_obj, repeats)


def learner_split(trainer: Trainer, state, batch, rule, agent: Agent, rule_obj,
                  repeats: int) -> dict[str, float]:
  """Median times of ``trainer.learner_step`` on `batch` and of its parts:
  agent forward + backward, the target network's forward (rules that keep
  one), the rule (targets + loss gradient). `state` has params, opt_state and
  rule_state (a ``TrainState`` or a ``HostState``)."""
  step = jax.jit(lambda s, b: trainer.learner_step(
      s.params, s.opt_state, s.rule_state, rule.params, b, jax.random.PRNGKey(1))[:4])

  def fwd_bwd(p, b):
    out, pullback = jax.vjp(lambda q: agent.apply(q, b.observations), p)
    return pullback(jax.tree.map(jnp.ones_like, out))

  fwd = jax.jit(lambda p, b: agent.apply(p, b.observations))
  agent_out = fwd(state.params, batch)

  def rule_part(s, b, ao):
    no_target = lambda p, obs: ao          # the target forward is timed apart
    targets, _, _ = rule_obj.targets(rule.params, s.rule_state, b, ao, s.params, no_target)
    return jax.grad(lambda o: jnp.sum(rule_obj.loss(o, targets, b)[0]))(ao)

  fwd_bwd, rule_part = jax.jit(fwd_bwd), jax.jit(rule_part)
  total = _median_time(lambda: step(state, batch), repeats)
  parts = {
      "agent_forward_backward_s": _median_time(lambda: fwd_bwd(state.params, batch), repeats),
      "rule_s": _median_time(lambda: rule_part(state, batch, agent_out), repeats),
  }
  if hasattr(state.rule_state, "target_params"):
    parts["target_forward_s"] = _median_time(lambda: fwd(state.params, batch), repeats)
  return {"step_s": total, **parts,
          "rule_share": parts["rule_s"] / total}


def report_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
  """(measurement, value) rows of a ``run_bench`` result, for a table."""
  rows = [("device", res["device"])]
  pkgs = [f"{k} {res[k]}" for k in ("envpool", "crafter", "nle") if k in res]
  rows.append(("versions", ", ".join([f"jax {res['jax']}", *pkgs, f"python {res['python']}"])))
  loop = (f"{res['num_envs']} envs x {res['rollout_len']} steps per iteration, "
          f"{res['updates_per_iteration']} learner step(s) of "
          f"{res['batch_trajectories']} trajectories")
  rows.append(("loop", loop))
  rows.append(("env-only steps/s (random actions)", f"{res['env_steps_per_s']:,.0f}"))
  if "one_seed" in res:          # host-stepped suites
    m = res["one_seed"]
    sp = m["split_per_iteration"]
    rate = (f"{m['train_steps_per_s']:,.0f} "
            f"({m['train_steps_per_s'] / res['env_steps_per_s']:.1%} of env-only); "
            f"actor alone {m['actor_steps_per_s']:,.0f} "
            f"({m['actor_steps_per_s'] / res['env_steps_per_s']:.1%})")
    rows.append(("training steps/s, 1 seed", rate))
    split = (f"{m['iteration_s']:.3f} s: env {sp['env_s']:.3f}, policy {sp['policy_s']:.3f}, "
             f"host {sp['host_s']:.3f}, learner {sp['learner_s']:.3f} s")
    rows.append(("  per iteration", split))
  else:
    rows.append(("training steps/s (1 seed)", f"{res['train_steps_per_s']:,.0f}"))
  rows.append(("training / env-only", f"{res['train_over_env_ratio']:.1%}"))
  lr = res["learner"]
  rows.append(("learner step", f"{lr['step_s'] * 1000:.1f} ms"))
  rows.append(("  agent forward + backward", f"{lr['agent_forward_backward_s'] * 1000:.1f} ms"))
  if "target_forward_s" in lr:
    rows.append(("  target network forward", f"{lr['target_forward_s'] * 1000:.1f} ms"))
  rows.append(("  rule (targets + loss gradient)",
               f"{lr['rule_s'] * 1000:.1f} ms ({lr['rule_share']:.0%} of the step)"))
  for mode, v in res["scaling"].items():
    rows.append((f"{res['seeds']} seeds, {mode.replace('_', ' ')}",
                 f"{v['steps_per_s']:,.0f} steps/s; wall {v['wall_vs_one_seed']:.2f}x one seed's"))
  return rows
