"""The objects one (rule, task) trains with, built from its resolved settings."""

from disco_eval.agents.networks import Agent
from disco_eval.config.train import TrainConfig
from disco_eval.envs import registry as envs
from disco_eval.rules.registry import build_manifest_rule
from disco_eval.train.frames import stacked_shape
from disco_eval.train.optim import make_optimizer


def build_parts(suite, task: str, rule, settings: dict, train: TrainConfig | None = None):
  """The environment, rule object, agent and optimiser of one (rule, task).

  `rule` is a resolved rule (``disco_eval.rules.weights.resolve_rule``),
  `settings` its tables as resolved (``RunConfig.settings``) and `train` the
  loop's settings (``RunConfig.train``): the agent sees ``train.frame_stack``
  frames at a time, and a learning-rate schedule stated in env steps is
  converted into learner steps; without it (callers that only need the
  optimiser state's structure) one frame at a time, one learner step per env
  step.
  """
  env = envs.make(suite, task)
  rule_obj = build_manifest_rule(rule.manifest, settings, rule.label)
  agent = Agent(
    settings["agent"],
    rule_obj.output_spec(env.num_actions),
    env.num_actions,
    stacked_shape(env.observation_shape, train.frame_stack if train else 1, env.frame_axis),
  )
  per_step = train.env_steps_per_learner_step if train is not None else 1.0
  budget = train.budget_env_steps if train is not None else 0
  return env, rule_obj, agent, make_optimizer(settings["optimizer"], per_step, budget)
