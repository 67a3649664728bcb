"""The objects one (rule, task) trains with, built from its resolved settings."""

from disco_eval.agents.networks import Agent
from disco_eval.envs import registry as envs
from disco_eval.rules.registry import build_manifest_rule
from disco_eval.train.frames import stacked_shape
from disco_eval.train.optim import make_optimizer


def build_parts(suite, task: str, rule, settings: dict, frame_stack: int = 1):
  """The environment, rule object, agent and optimiser of one (rule, task).

  `rule` is a resolved rule (``disco_eval.rules.weights.resolve_rule``) and
  `settings` its tables as resolved (``RunConfig.settings``); the agent sees
  `frame_stack` frames at a time (``TrainConfig.frame_stack``).
  """
  env = envs.make(suite, task)
  rule_obj = build_manifest_rule(rule.manifest, settings, rule.label)
  agent = Agent(
    settings["agent"],
    rule_obj.output_spec(env.num_actions),
    env.num_actions,
    stacked_shape(env.observation_shape, frame_stack, env.frame_axis),
  )
  return env, rule_obj, agent, make_optimizer(settings["optimizer"])
