"""REINFORCE with a learned baseline: an example plug-in rule for disco-eval.

Used by ``reinforce_baseline.toml`` beside it (``module = "reinforce_baseline.py:make_rule"``)::

  disco-eval run catch --rule examples/reinforce_baseline.toml

It implements the rule contract of ``disco_eval/rules/base.py`` (see docs/extending.md,
"Your own rule"). Per batch of T+1 steps of B trajectories, outside the gradient:

  G_t = r_t + gamma_t G_{t+1},  G_T = V(s_T)         (returns, cut at episode ends)
  A_t = G_t - V(s_t)                                 (advantage over the baseline)

with ``gamma_t = 0`` after the last step of an episode; then the per-step loss

  - log pi(a_t | s_t) A_t + value_cost * 0.5 (V(s_t) - G_t)^2 - entropy_cost * H(pi(. | s_t))

(Williams 1992, the REINFORCE estimator with a baseline; Sutton and Barto 2018, section 13.4).
REINFORCE is on-policy: the manifest's [train] table gives it one fresh batch per update.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from disco_eval.config import schema
from disco_eval.rules.base import OutputSpec, Rollout


@dataclasses.dataclass(frozen=True)
class Settings:
  """The keys of the manifest's [hyperparams] and [rule] tables (no defaults: the manifest
  holds the values, and an unknown or missing key is a one-line error)."""

  discount_factor: float  # [hyperparams]
  value_cost: float
  entropy_cost: float
  normalize_adv: bool  # [rule]: advantages to zero mean, unit variance over the batch


def discounted_returns(rewards, discounts, bootstrap):
  """G [T, B] from rewards and discounts [T, B] and the value of the last state [B]."""

  def back(g_next, step):
    reward, discount = step
    g = reward + discount * g_next
    return g, g

  _, returns = jax.lax.scan(back, bootstrap, (rewards, discounts), reverse=True)
  return returns


def log_prob(logits, actions):
  """log pi(a | s): logits [T, B, A], actions [T, B] -> [T, B]."""
  log_pi = jax.nn.log_softmax(logits)
  return jnp.take_along_axis(log_pi, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


@dataclasses.dataclass(frozen=True)
class ReinforceBaseline:
  """The update rule (the attributes and methods disco_eval.rules.base.UpdateRule names)."""

  settings: Settings
  name: str = "reinforce_baseline"
  behaviour_logits = None  # acts from the agent's logits (the contract in rules/base.py)
  loss_taken = None  # its loss reads no action model (rules.base.UpdateRule)
  minibatch_transitions = False  # minibatches of whole trajectories (rules.base.UpdateRule)
  num_epochs: int = 1  # one gradient step per batch
  num_minibatches: int = 1

  def output_spec(self, num_actions: int) -> OutputSpec:
    # The agent's heads: policy logits [A] and a scalar baseline V [1]; no action model.
    return OutputSpec(flat={"logits": (num_actions,), "v": (1,)}, model={})

  def init_state(self, rng, agent_params) -> tuple:
    return ()  # this rule keeps no state between batches

  def targets(self, rule_params, state, batch: Rollout, agent_out, agent_params, unroll_fn):
    cfg = self.settings
    v = jax.lax.stop_gradient(agent_out["v"][..., 0])  # [T+1, B]
    discounts = cfg.discount_factor * (1.0 - batch.is_terminal.astype(jnp.float32))
    returns = discounted_returns(batch.transition_rewards, discounts, v[-1])
    advantage = returns - v[:-1]
    if cfg.normalize_adv:
      mask = batch.loss_mask
      n = jnp.maximum(mask.sum(), 1.0)
      mean = (advantage * mask).sum() / n
      std = jnp.sqrt((jnp.square(advantage - mean) * mask).sum() / n)
      advantage = (advantage - mean) / (std + 1e-8)
    logs = {"return": jnp.mean(returns), "baseline": jnp.mean(v)}
    return (returns, advantage), state, logs

  def loss(self, agent_out, targets, batch: Rollout):
    cfg = self.settings
    returns, advantage = targets
    logits = agent_out["logits"][:-1]  # [T, B, A]
    pg = -log_prob(logits, batch.actions[:-1]) * advantage
    value_loss = 0.5 * jnp.square(agent_out["v"][:-1, :, 0] - returns)
    log_pi = jax.nn.log_softmax(logits)
    entropy = -jnp.sum(jnp.exp(log_pi) * log_pi, axis=-1)
    loss = pg + cfg.value_cost * value_loss - cfg.entropy_cost * entropy  # [T, B]
    logs = {"pg_loss": pg.mean(), "value_loss": value_loss.mean(), "entropy": entropy.mean()}
    return loss, logs


def make_rule(
  settings: dict[str, dict[str, Any]], name: str, axis_name: str | None = None
) -> ReinforceBaseline:
  """The factory the manifest names: the settings tables in, the rule out."""
  cfg = schema.from_tables(Settings, settings, f"rule '{name}'")
  return ReinforceBaseline(settings=cfg, name=name)
