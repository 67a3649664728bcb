"""Throughput benchmark of the host-stepped training loop (ProcGen through
EnvPool; Crafter and NetHack in worker processes).

Measures, with the task's pool and the ``HostTrainer`` that `disco-eval run`
uses (learning from the first iteration, so that every timed iteration learns):

* env-only steps/s: the pool stepped synchronously with uniformly random
  actions (drawn with numpy), no policy and no learner;
* training steps/s of one seed, where an iteration's time goes (env
  stepping, policy inference, host bookkeeping, learner step; waits count
  where they happen) and the actor's own rate (the iteration without its
  learner step);
* 1 vs N seeds: `run` trains a task's seeds taking turns (one after another,
  chunk by chunk) or batched (one pool, one vmapped policy and learner:
  ``train.vmap_seeds``, :mod:`disco_eval.train.host_batched`), both timed
  here on N fresh seeds, chunk by chunk as `run` runs them (no phase timer:
  with ``--set train.policy_lag=1`` the learner overlaps the actor there);
  one seed's chunk rate is timed alike;
* the learner step and its parts on a batch from the run's replay buffer
  (:func:`disco_eval.bench.common.learner_split`).

The timed iterations wait for the learner step (the phase timer blocks on
it); with one seed the next iteration would wait for it anyway (its policy
needs the new parameters). The replay buffer is cut to `BUFFER_CAP` entries
(the buffer's size does not change an iteration's work; it saves memory).
"""

import dataclasses
import importlib.metadata
import time
from typing import Any

import jax
import numpy as np

from disco_eval.bench.common import header, learner_split
from disco_eval.envs.base import HostPool
from disco_eval.train.host_batched import BatchedHostTrainer
from disco_eval.train.host_loop import HostTrainer, PhaseTimer
from disco_eval.train.seed_group import SeedGroup

BUFFER_CAP = 8
ENV_ONLY_STEPS = 100  # pool steps per timed env-only run
# The package that steps each backend's environments (its version is reported).
BACKEND_PACKAGES = {"envpool": "envpool", "crafter": "crafter", "nle": "nle"}


def env_steps_per_s(pool: HostPool, num_actions: int, steps: int, repeats: int) -> float:
  """Random-action throughput of `pool` (E envs, ``step``): median of `repeats`
  runs of `steps` steps, after one untimed run."""
  rng = np.random.default_rng(0)
  pool.reset()

  def run() -> float:
    t = time.perf_counter()
    for _ in range(steps):
      pool.step(rng.integers(0, num_actions, pool.num_envs))
    return time.perf_counter() - t

  run()
  return steps * pool.num_envs / float(np.median([run() for _ in range(repeats)]))


def _versions(backend: str) -> dict[str, str]:
  out = {}
  name = BACKEND_PACKAGES.get(backend)
  if name is not None:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = "unknown"
  return out


def _one_seed(trainer: HostTrainer, state, rule_params, it: int, repeats: int):
  """One warm-up iteration (compiles; new pool), then `repeats` timed ones.
  Returns the state, the next iteration and the figures of one seed."""
  trainer.close()  # a new actor: its pool made here
  state, _ = trainer.iteration(state, rule_params, it)
  jax.block_until_ready(state)
  timer, times = PhaseTimer(), []
  trainer.timer = timer
  try:
    for r in range(repeats):
      t = time.perf_counter()
      state, _ = trainer.iteration(state, rule_params, it + 1 + r)
      times.append(time.perf_counter() - t)
  finally:
    trainer.timer = None
  spi = trainer.cfg.steps_per_iteration
  split = {f"{k}_s": v / repeats for k, v in timer.totals.items()}
  actor_s = sum(timer.totals[k] for k in ("env", "policy", "host")) / repeats
  figures = {
    "iteration_s": float(np.median(times)),
    "train_steps_per_s": spi / float(np.median(times)),
    "split_per_iteration": split,
    "actor_steps_per_s": spi / actor_s,
  }
  return state, it + 1 + repeats, figures


def _seeds_rate(trainer: HostTrainer, rule_params, seeds: int, repeats: int) -> float:
  """Steps/s of `seeds` fresh seeds in one seed group (taking turns, or
  vmapped for a BatchedHostTrainer) over `repeats` iterations each, after
  one warm-up iteration each."""
  trainer.close()
  group = SeedGroup(trainer, range(100, 100 + seeds))
  group.run_chunk(rule_params, 0, 1)
  group.block()
  t = time.perf_counter()
  group.run_chunk(rule_params, 1, repeats)
  group.block()
  wall = time.perf_counter() - t
  trainer.close()
  return seeds * repeats * trainer.cfg.steps_per_iteration / wall


def run_host_bench(
  suite, proto, task: str, rule, parts: tuple, cfg, seeds: int, repeats: int
) -> dict[str, Any]:
  """Every measurement for a host-stepped suite; `parts` are (task, rule
  object, agent, optimiser). Returns a JSON-able dict."""
  cfg = dataclasses.replace(
    cfg, buffer_capacity=min(cfg.buffer_capacity, BUFFER_CAP), chunk=max(cfg.chunk, repeats)
  )
  task_obj, rule_obj, agent, opt = parts
  out = header(suite, proto, task, rule, cfg, repeats)
  out.update(_versions(suite.backend))
  out["buffer_capacity"] = cfg.buffer_capacity

  pool = task_obj.pool(cfg.num_envs, 0, proto)
  try:
    out["env_steps_per_s"] = env_steps_per_s(pool, task_obj.num_actions, ENV_ONLY_STEPS, repeats)
  finally:
    pool.close()

  trainer = HostTrainer(task_obj, agent, rule_obj, opt, cfg, proto)
  try:
    state, _, main = _one_seed(trainer, trainer.init(0), rule.params, 0, repeats)
    out["one_seed"] = main
    out["train_steps_per_s"] = main["train_steps_per_s"]
    out["train_over_env_ratio"] = main["train_steps_per_s"] / out["env_steps_per_s"]
    out["actor_over_env_ratio"] = main["actor_steps_per_s"] / out["env_steps_per_s"]
    batch = trainer.learner.sample(state.buffer, jax.random.PRNGKey(0))
    out["learner"] = learner_split(trainer.learner, state, batch, rule, agent, rule_obj, repeats)
    del state, batch
    out["seeds"] = seeds
    rate = (
      _seeds_rate(trainer, rule.params, seeds, repeats) if seeds > 1 else (out["train_steps_per_s"])
    )
    one = _seeds_rate(trainer, rule.params, 1, repeats)
    out["policy_lag"] = cfg.policy_lag
    out["chunk_steps_per_s"] = one
    out["scaling"] = {"taking_turns": {"steps_per_s": rate, "wall_vs_one_seed": seeds * one / rate}}
    if seeds > 1:
      trainer.close()
      trainer = BatchedHostTrainer(task_obj, agent, rule_obj, opt, cfg, proto)
      batched = _seeds_rate(trainer, rule.params, seeds, repeats)
      out["scaling"]["batched"] = {
        "steps_per_s": batched,
        "wall_vs_one_seed": seeds * one / batched,
      }
  finally:
    trainer.close()
  return out
