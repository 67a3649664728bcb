"""Throughput benchmark of the training loop on pure-JAX suites (Catch, Sokoban,
MinAtar, Craftax-Classic).

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
import time
from typing import Any

import jax
import numpy as np

from disco_eval.agents.networks import Agent
from disco_eval.bench.common import header, learner_split, median_time
from disco_eval.envs.base import JaxEnv
from disco_eval.train.loop import Trainer
from disco_eval.train.seed_group import SeedGroup


def env_steps_per_s(env: JaxEnv, num_envs: int, steps: int, repeats: int) -> float:
  """Random-action env throughput, vmapped over `num_envs`, one compiled scan."""
  keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
  state, _ = jax.vmap(env.reset)(keys)

  @jax.jit
  def run(data, state, key):
    def body(s, k):
      a = jax.random.randint(k, (num_envs,), 0, env.num_actions)
      s, ts = jax.vmap(env.step)(s, a)
      return s, ts.reward.sum()

    with env.reading(data):  # the env's tables are an argument, as in training
      return jax.lax.scan(body, state, jax.random.split(key, steps))

  data = env.device_data()
  t = median_time(lambda: run(data, state, jax.random.PRNGKey(1)), repeats)
  return steps * num_envs / t


def _train_rate(trainer: Trainer, rule_params, n: int, chunk: int, repeats: int) -> float:
  """Training steps/s of `n` seeds (1: ``run_chunk``; more: one seed group,
  vmapped or taking turns as the trainer's settings say): median of
  `repeats` chunks after one untimed one."""
  spi = trainer.cfg.steps_per_iteration
  if n == 1:
    state = trainer.init(0)

    def step(it: int) -> None:
      nonlocal state
      state, _ = trainer.run_chunk(state, rule_params, it, chunk)
      jax.block_until_ready(state)

  else:
    group = SeedGroup(trainer, range(n))

    def step(it: int) -> None:
      group.run_chunk(rule_params, it, chunk)
      group.block()

  step(0)  # compile, fill the buffer a little
  times = []
  for r in range(repeats):
    t = time.perf_counter()
    step(chunk * (r + 1))
    times.append(time.perf_counter() - t)
  return chunk * spi * n / float(np.median(times))


def run_jax_bench(
  suite, proto, task: str, rule, parts: tuple, cfg, seeds: int, chunk: int, repeats: int
) -> dict[str, Any]:
  """Every measurement for a pure-JAX suite; `parts` are (env, rule object,
  agent, optimiser). Returns a JSON-able dict."""
  env, rule_obj, agent, opt = parts
  out = header(suite, proto, task, rule, cfg, repeats)

  steps_per_env = cfg.steps_per_iteration // cfg.num_envs * chunk
  out["env_steps_per_s"] = env_steps_per_s(env, cfg.num_envs, steps_per_env, repeats)

  single = Trainer(env, agent, rule_obj, opt, cfg)
  out["train_steps_per_s"] = _train_rate(single, rule.params, 1, chunk, repeats)
  out["train_over_env_ratio"] = out["train_steps_per_s"] / out["env_steps_per_s"]
  scaling = {}
  for vm in (0, 1):
    tr = Trainer(env, agent, rule_obj, opt, dataclasses.replace(cfg, vmap_seeds=vm))
    rate = _train_rate(tr, rule.params, seeds, chunk, repeats)
    scaling["vmapped" if vm else "taking_turns"] = {
      "steps_per_s": rate,
      "wall_vs_one_seed": seeds * out["train_steps_per_s"] / rate,
    }
  out["seeds"] = seeds
  out["scaling"] = scaling
  out["learner"] = _learner_split(single, rule, agent, rule_obj, cfg, repeats)
  return out


def _learner_split(trainer: Trainer, rule, agent: Agent, rule_obj, cfg, repeats: int):
  """Median times of the learner step and its parts on a real batch."""
  state = trainer.init(0)
  state, _ = trainer.run_chunk(state, rule.params, 0, 2)  # a filled buffer
  batch = trainer.learner.sample(state.buffer, jax.random.PRNGKey(0))
  return learner_split(trainer.learner, state, batch, rule, agent, rule_obj, repeats)
