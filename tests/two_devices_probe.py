"""Runs the same tiny trainings on one and on two devices; prints JSON.

Started by tests/test_devices.py in a fresh process whose JAX sees two CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count=2), since the flag
must be set before JAX starts. Argument: the Disco103 weights (.npz) or
"none" (then actor-critic stands in for Disco103).
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval.agents.networks import Agent
from disco_eval.config import manifests
from disco_eval.config.resolve import rule_settings
from disco_eval.config.suites import load_suite
from disco_eval.envs.base import HostPool, HostTask
from disco_eval.envs.catch import Catch
from disco_eval.rules import actor_critic, disco, ppo
from disco_eval.rules.base import Rollout
from disco_eval.rules.weights import load_params
from disco_eval.train import devices
from disco_eval.train.host_loop import HostTrainer
from disco_eval.train.loop import TrainConfig, Trainer
from disco_eval.train.optim import make_optimizer

MLP = {
  "torso": "mlp",
  "torso_hidden": [32],
  "model_lstm_size": 16,
  "model_head_hidden": [16],
  "head_init_std": 0.01,
}
TINY = TrainConfig(
  num_envs=4, rollout_len=8, min_buffer=2, sample_entries=2, chunk=10, buffer_capacity=8
)


def leaves_max_rel_diff(a, b) -> float:
  """max |a - b| / (max |a| + 1e-6) over leaves."""
  return max(
    float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
    / (float(np.max(np.abs(np.asarray(x)))) + 1e-6)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def rule_parts(name: str, weights: str):
  settings = rule_settings(manifests.load_rule_manifest(name), load_suite("catch"))
  module = {"disco103": disco, "actor_critic": actor_critic, "ppo": ppo}[name]
  rule = module.from_settings(settings)
  params = load_params(Path(weights)) if name == "disco103" else None
  return rule, params, make_optimizer(settings["optimizer"])


def trainer(rule, opt, cfg, n: int) -> Trainer:
  env = Catch()
  agent = Agent(MLP, rule.output_spec(3), 3, env.observation_shape)
  return Trainer(env, agent, rule, opt, dataclasses.replace(cfg, devices=n))


def catch_training() -> dict:
  """Two chunks of 10 iterations (640 env steps) of Catch with actor-critic,
  on 1 and 2 devices."""
  rule, rule_params, opt = rule_parts("actor_critic", "none")
  runs = {}
  for n in (1, 2):
    tr = trainer(rule, opt, TINY, n)
    s, metrics = tr.init(0), []
    for c in range(2):
      s, m = tr.run_chunk(s, rule_params, 10 * c, 10)
      metrics.append(jax.device_get(m))
    runs[n] = (s, metrics)
  (s1, m1), (s2, m2) = runs[1], runs[2]
  cat = lambda ms, k: np.concatenate([getattr(m, k) for m in ms]).tolist()
  return {
    "returns_1": cat(m1, "return_sum"),
    "returns_2": cat(m2, "return_sum"),
    "learned": cat(m1, "learned"),
    "losses_1": cat(m1, "loss"),
    "losses_2": cat(m2, "loss"),
    "params_rel_diff": leaves_max_rel_diff(s1.params, s2.params),
    "rule_state_rel_diff": leaves_max_rel_diff(s1.rule_state, s2.rule_state),
    "params_moved": leaves_max_rel_diff(s1.params, tr.init(0).params),
    "buffer_spec": str(s2.buffer.data.observations.sharding.spec),
    "buffer_devices": len(s2.buffer.data.observations.sharding.device_set),
    "env_shard_rows": [int(x.data.shape[0]) for x in s2.episode_return.addressable_shards],
  }


def random_batch(t1: int, b: int) -> Rollout:
  rng = np.random.default_rng(0)
  return Rollout(
    jnp.asarray(rng.random((t1, b, 8, 8)) < 0.1, jnp.float32),
    jnp.asarray(rng.integers(0, 3, (t1, b)), jnp.int32),
    jnp.asarray(rng.choice([0.0, 1.0, -1.0], (t1, b)), jnp.float32),
    jnp.asarray(rng.random((t1, b)) > 0.2, jnp.float32),
    jnp.asarray(rng.normal(size=(t1, b, 3)), jnp.float32),
  )


def rule_statistics(rule, rule_params, opt) -> dict:
  """The rule state after one learner step on a batch of 8 trajectories:
  split over 2 devices, whole on one device, and each half alone."""
  cfg = dataclasses.replace(TINY, num_envs=4, sample_entries=2)
  one, two = trainer(rule, opt, cfg, 1), trainer(rule, opt, cfg, 2)
  s = one.init(0)
  batch = random_batch(6, 8)
  key = jax.random.PRNGKey(1)

  lay = lambda x, axis: devices.put(x, two.mesh, axis)
  args = (
    lay(s.params, None),
    lay(s.opt_state, None),
    lay(s.rule_state, None),
    rule_params,
    lay(batch, 1),
    key,
  )
  compiled = jax.jit(two.learner_step).lower(*args).compile()
  _, _, split, loss_split, _ = compiled(*args)
  step = jax.jit(one.learner_step)
  _, _, whole, loss_whole, _ = step(s.params, s.opt_state, s.rule_state, rule_params, batch, key)
  halves = [
    step(
      s.params,
      s.opt_state,
      s.rule_state,
      rule_params,
      jax.tree.map(lambda x, i=i: x[:, i * 4 : (i + 1) * 4], batch),
      key,
    )[2]
    for i in range(2)
  ]
  meta = lambda rs: rs.meta if hasattr(rs, "meta") else rs
  emas = lambda rs: {
    f"{k}.{m}": float(getattr(getattr(meta(rs), k), m))
    for k in ("adv_ema", "td_ema")
    for m in ("moment1", "moment2")
  }
  out = {
    "split": emas(split),
    "whole": emas(whole),
    "halves": [emas(h) for h in halves],
    "loss_split": float(loss_split),
    "loss_whole": float(loss_whole),
    "all_reduce": "all-reduce" in compiled.as_text(),
  }
  if hasattr(split, "meta"):  # Disco103: the meta-LSTM state moved by the pooled batch
    hidden = lambda rs: np.asarray(rs.meta.hidden).tolist()
    out["hidden"] = {
      "split": hidden(split),
      "whole": hidden(whole),
      "halves": [hidden(h) for h in halves],
    }
  return out


def ppo_minibatches() -> dict:
  """PPO's epochs of minibatches (drawn across devices) on 1 and 2 devices."""
  rule, _, opt = rule_parts("ppo", "none")
  rule = dataclasses.replace(
    rule, cfg=dataclasses.replace(rule.cfg, num_epochs=2, num_minibatches=2)
  )
  cfg = dataclasses.replace(TINY, min_buffer=1, sample_entries=1)
  finals = []
  for n in (1, 2):
    tr = trainer(rule, opt, cfg, n)
    s, _ = tr.run_chunk(tr.init(3), None, 0, 4)
    finals.append(s.params)
  return {
    "params_rel_diff": leaves_max_rel_diff(*finals),
    "params_moved": leaves_max_rel_diff(finals[0], tr.init(3).params),
  }


class _Pool(HostPool):
  """A host pool: 4x4 boards that count the steps; reward 1 every 3rd step."""

  def __init__(self, num_envs: int):
    self.num_envs, self.t = num_envs, 0

  def reset(self):
    self.t = 0
    return np.zeros((self.num_envs, 4, 4), np.uint8)

  def step(self, actions):
    self.t += 1
    obs = np.arange(16).reshape(4, 4)[None] * self.t + np.arange(self.num_envs)[:, None, None]
    last = np.full(self.num_envs, self.t % 3 == 0)
    return obs.astype(np.uint8) % 7, last.astype(np.float32), last, np.zeros(self.num_envs, bool)

  def close(self):
    pass


class _Task(HostTask):
  num_actions, observation_shape, observation_dtype = 3, (4, 4), np.uint8

  def pool(self, num_envs, seed, protocol=None, evaluation=False):
    return _Pool(num_envs)


def host_training() -> dict:
  """Four HostTrainer iterations (learning from the second) on 1 and 2 devices."""
  rule, _, opt = rule_parts("actor_critic", "none")
  agent = Agent(MLP, rule.output_spec(3), 3, (4, 4))
  cfg = dataclasses.replace(TINY, min_buffer=2)
  runs = []
  for n in (1, 2):
    tr = HostTrainer(_Task(), agent, rule, opt, dataclasses.replace(cfg, devices=n), None)
    s, losses = tr.init(0), []
    for it in range(4):
      s, (_, _, _, loss, _) = tr.iteration(s, None, it)
      losses.append(float(loss))
    returns, _ = tr.evaluate(s.params, jax.random.PRNGKey(2), 4)  # replicated params
    runs.append((s, losses))
    tr.close()
  return {
    "losses_1": runs[0][1],
    "losses_2": runs[1][1],
    "eval_returns": returns.tolist(),
    "params_rel_diff": leaves_max_rel_diff(runs[0][0].params, runs[1][0].params),
    "buffer_spec": str(runs[1][0].buffer.data.observations.sharding.spec),
  }


def main() -> None:
  assert jax.device_count() >= 2, "start with XLA_FLAGS=--xla_force_host_platform_device_count=2"
  weights = sys.argv[1]
  name = "disco103" if weights != "none" else "actor_critic"
  rule, rule_params, opt = rule_parts(name, weights)
  out = {"rule": name}
  parts = {
    "catch": catch_training,
    "statistics": lambda: rule_statistics(rule, rule_params, opt),
    "ppo": ppo_minibatches,
    "host": host_training,
  }
  for part, fn in parts.items():
    t = time.perf_counter()
    out[part] = fn()
    print(f"{part}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
