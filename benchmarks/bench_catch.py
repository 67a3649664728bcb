"""Benchmark: the Disco103 learner step on Catch with the reference example config.

Usage: python benchmarks/bench_catch.py [--repeats N]

Times (median wall seconds after compilation, one seed) the jitted learner step
on a batch of 128 trajectories of 29 steps with the reference MLP agent, and its
parts: the agent forward + backward pass, the target network's forward pass, and
the rule (meta-network + values + loss). Prints the device, versions and CPU count.
"""

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval import checkpoints, manifests
from disco_eval.agents.networks import Agent
from disco_eval.envs.catch import Catch
from disco_eval.rules import disco
from disco_eval.rules.base import Rollout
from disco_eval.train.loop import TrainConfig, Trainer
from disco_eval.train.optim import make_optimizer


def median_time(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--weights", default="disco103")
  args = p.parse_args()
  rule_ref = checkpoints.resolve_rule(args.weights)
  settings = manifests.load_rule_manifest("disco103").settings("catch")
  rule = disco.from_settings(settings)
  env = Catch()
  agent = Agent(settings["agent"], rule.output_spec(3), 3, env.observation_shape)
  trainer = Trainer(env, agent, rule, make_optimizer(settings["optimizer"]), TrainConfig())
  state = trainer.init(0)
  rng = np.random.default_rng(0)
  t1, b = 29, 128
  batch = Rollout(jnp.asarray(rng.random((t1, b, 8, 8)) < 0.05, jnp.float32),
                  jnp.asarray(rng.integers(0, 3, (t1, b)), jnp.int32),
                  jnp.asarray(rng.choice([0.0, 1.0, -1.0], (t1, b)), jnp.float32),
                  jnp.asarray(rng.random((t1, b)) > 0.15, jnp.float32),
                  jnp.zeros((t1, b, 3)))
  params = rule_ref.params

  learner = jax.jit(lambda p, o, rs, bt: trainer.learner_step(
      p, o, rs, params, bt, jax.random.PRNGKey(0))[:4])

  def fwd_bwd(p, bt):
    out, pullback = jax.vjp(lambda q: agent.apply(q, bt.observations), p)
    return pullback(jax.tree.map(jnp.ones_like, out))

  fwd = jax.jit(lambda p, bt: agent.apply(p, bt.observations))
  agent_out = fwd(state.params, batch)

  def rule_only(rs, bt, ao, to):
    inp = disco.MetaInputs(bt.actions, bt.transition_rewards, bt.is_terminal, ao,
                           bt.behaviour_logits, to)
    res, new, _ = disco.meta_step(params, rs.meta, inp, rule.cfg)
    return jax.grad(lambda o: jnp.sum(rule.loss(o, res, bt)[0]))(ao), new

  timings = {
      "learner step (total)": median_time(learner, state.params, state.opt_state,
                                          state.rule_state, batch, repeats=args.repeats),
      "agent forward + backward": median_time(jax.jit(fwd_bwd), state.params, batch,
                                              repeats=args.repeats),
      "target network forward": median_time(fwd, state.params, batch, repeats=args.repeats),
      "rule: values + meta-network + loss and its gradient": median_time(
          jax.jit(rule_only), state.rule_state, batch, agent_out, agent_out,
          repeats=args.repeats),
  }
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
  print(f"jax {jax.__version__}, python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}")
  total = timings["learner step (total)"]
  for k, v in timings.items():
    print(f"{k:55s} {v * 1000:8.1f} ms  ({100 * v / total:5.1f}% of the step)")


if __name__ == "__main__":
  main()
