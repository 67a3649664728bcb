"""A trained run brought back to life: its agent, rule and newest checkpoint, and fresh
trajectories of its agent laid out as the rule's inputs.

Only runs of pure-JAX tasks (Catch, MinAtar, Craftax) and of rules of Disco103's
architecture are analysed here: the analyses read the agent's y and z predictions and the
meta-network's targets. A finished run keeps its newest periodic checkpoint (the state
after the last ``--checkpoint-every`` chunk before the end), not the state at the end of
training: the analyses say which checkpoint (env steps) they used.

Shapes: T+1 actor steps, E environments (trajectories), A actions, Y = 600.
"""

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval.config import manifests, suites
from disco_eval.config.train import TrainConfig
from disco_eval.envs.base import JaxEnv
from disco_eval.errors import UserError
from disco_eval.rules import disco, variants, weights
from disco_eval.rules.base import Rollout, acting_logits
from disco_eval.runs.parts import build_parts
from disco_eval.store import training_checkpoint
from disco_eval.store.atomic import read_json
from disco_eval.store.layout import CONFIG_FILE
from disco_eval.train.trainers import make_trainer


@dataclasses.dataclass
class LoadedRun:
  """A run's parts and its newest checkpoint.

  Attributes:
    path: the run folder.
    config: its config.json.
    rule: the resolved rule (weights, label, variant).
    rule_obj: the rule object (a Disco rule).
    env: the task.
    agent: the agent network.
    params: agent parameters at the checkpoint.
    rule_state: the rule's state there (meta-state and target parameters).
    env_steps: env steps of the checkpoint.
  """

  path: Path
  config: dict
  rule: weights.ResolvedRule
  rule_obj: Any
  env: JaxEnv
  agent: Any
  params: Any
  rule_state: Any
  env_steps: int


def _config(run_dir: Path) -> dict:
  """The run's config.json (UserError naming the fix when missing or unreadable)."""
  path = Path(run_dir) / CONFIG_FILE
  if not path.is_file():
    raise UserError(
      f"{run_dir}: not a run folder (no {CONFIG_FILE}); pass RESULTS/SUITE/TASK/RULE/seedN"
    )
  try:
    return read_json(path)
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: unreadable ({e}); pass another run folder") from None


def rule_spec(config: dict) -> str:
  """The ``--rule`` spec that resolves to the run's rule (its variant included)."""
  rule = config.get("rule") or {}
  name, source, variant = rule.get("name"), rule.get("source"), rule.get("variant")
  if not isinstance(name, str):
    raise UserError("run config names no rule; pass another run folder")
  base = variants.split(name)[0]
  spec = base
  if source and str(source).endswith(".npz") and base not in manifests.known_rule_names():
    spec = f"{base}={source}"
  return variants.label(spec, variant)


def load_run(run_dir: Path) -> LoadedRun:
  """The parts and newest checkpoint of the run in `run_dir` (UserErrors name the fix)."""
  run_dir = Path(run_dir)
  config = _config(run_dir)
  suite = suites.load_suite(str(config.get("suite")))
  task = str(config.get("task"))
  rule = weights.resolve_rule(rule_spec(config), download=False)
  if rule.manifest.kind != "disco":
    raise UserError(
      f"{run_dir}: rule '{rule.label}' is not of Disco103's architecture (kind "
      f"'{rule.manifest.kind}'); analyse a run of a disco rule"
    )
  fields = {f.name for f in dataclasses.fields(TrainConfig)}
  cfg = TrainConfig(**{k: v for k, v in config["train"].items() if k in fields})
  env, rule_obj, agent, optimizer = build_parts(
    suite, task, rule, config["settings"], cfg.frame_stack
  )
  if not isinstance(env, JaxEnv):
    raise UserError(f"{run_dir}: task '{task}' is host-stepped; analyse a run of a pure-JAX task")
  trainer = make_trainer(env, agent, rule_obj, optimizer, cfg, suite.protocol(None))
  template = jax.eval_shape(lambda: trainer.init(0))
  loaded = training_checkpoint.load(run_dir, template)
  if loaded is None:
    raise UserError(
      f"{run_dir}: the run kept no checkpoint; train it with a smaller --checkpoint-every "
      "(checkpoints are kept every N chunks before the end)"
    )
  state, steps, _ = loaded
  return LoadedRun(
    run_dir, config, rule, rule_obj, env, agent, state.params, state.rule_state, int(steps)
  )


def collect(run: LoadedRun, seed: int, num_envs: int, steps: int) -> Rollout:
  """`steps` actor steps of the checkpoint's agent in `num_envs` fresh environments.

  Returns:
    a Rollout [steps, E] (observations, actions, rewards arrived with each step,
    discounts 0 at episode ends, behaviour logits), the trainer's layout.
  """
  env, agent, rule_obj, params = run.env, run.agent, run.rule_obj, run.params

  @jax.jit
  def go(key):
    k_env, k_act = jax.random.split(key)
    env_state, ts = jax.vmap(env.reset)(jax.random.split(k_env, num_envs))

    def step(carry, key):
      env_state, ts = carry
      out = agent.apply(params, ts.observation)
      logits = acting_logits(rule_obj, out, float(run.env_steps))
      action = jax.random.categorical(key, logits).astype(jnp.int32)
      record = Rollout(
        ts.observation.astype(jnp.float32),
        action,
        ts.reward,
        1.0 - ts.last.astype(jnp.float32),
        logits,
      )
      env_state, ts = jax.vmap(env.step)(env_state, action)
      return (env_state, ts), record

    _, rollout = jax.lax.scan(step, (env_state, ts), jax.random.split(k_act, steps))
    return rollout

  with env.reading(env.device_data()):
    return jax.device_get(go(jax.random.PRNGKey(seed)))


def meta_inputs(run: LoadedRun, rollout: Rollout) -> disco.MetaInputs:
  """The rule's inputs for a rollout [T+1, E]: the online agent's outputs at the checkpoint
  and those of its target network (from the rule state)."""
  obs = jnp.asarray(rollout.observations)
  agent_out = run.agent.apply(run.params, obs)
  target_out = run.agent.apply(run.rule_state.target_params, obs)
  return disco.MetaInputs(
    actions=jnp.asarray(rollout.actions),
    rewards=jnp.asarray(rollout.transition_rewards),
    is_terminal=jnp.asarray(rollout.is_terminal),
    agent_out=dict(agent_out),
    behaviour_logits=jnp.asarray(rollout.behaviour_logits),
    target_out=dict(target_out),
  )


def meta_state(run: LoadedRun) -> disco.MetaState:
  """The rule's meta-state at the checkpoint."""
  return run.rule_state.meta


def as_numpy(tree: Any) -> Any:
  """`tree` with numpy leaves."""
  return jax.tree.map(np.asarray, tree)
