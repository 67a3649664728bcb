"""PPO (Schulman et al. 2017) as an update rule of the common interface.

Targets, once per batch (outside the gradient), from the agent's outputs at
the start of the update:

* GAE(lambda) advantages (Schulman et al. 2016) over the T transitions of
  each trajectory, bootstrapped from the value at step T and cut at episode
  ends: ``delta_t = r_t + gamma_t V(s_{t+1}) - V(s_t)``,
  ``A_t = delta_t + gamma_t lambda A_{t+1}`` with ``gamma_t = 0`` after a
  terminal transition;
* returns ``R_t = A_t + V(s_t)``; the old values ``V(s_t)`` (for value
  clipping) and the behaviour policy's log-probabilities (the policy that
  collected the batch: PPO's "old" policy).

Per-step loss (the trainer runs ``num_epochs`` x ``num_minibatches``
gradient steps on it, each minibatch a random set of transitions, not of
whole trajectories: ``minibatch_transitions``, as OpenAI baselines' ppo2
for non-recurrent policies, openai/baselines ppo2/ppo2.py, and purejaxrl,
luchris429/purejaxrl ppo.py; our agents keep no memory across steps), with
the advantages normalised to zero mean and unit variance over the valid
transitions of each minibatch (``normalize_adv``; ppo2's ppo2/model.py
``train`` and purejaxrl's ``_loss_fn`` normalise per minibatch):

  - min(rho A, clip(rho, 1 - eps, 1 + eps) A)
  + value_cost * 0.5 * max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)
  - entropy_cost * H(pi)

with ``rho = pi(a|s) / mu(a|s)``; value clipping as OpenAI baselines' ppo2
(``clip_value``). Scalar value head ``v`` [1].

With ``reward_norm`` (OpenAI's ProcGen PPO: baselines' VecNormalize), the
rewards are divided by a running std of the discounted return before GAE;
the running statistics are the rule's state (:mod:`disco_eval.rules.reward_norm`).
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from disco_eval import numerics as nx
from disco_eval.config import schema
from disco_eval.errors import UserError
from disco_eval.rules import reward_norm as rn
from disco_eval.rules.base import AgentOut, OutputSpec, Rollout, UnrollFn

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """The ``[hyperparams]`` and ``[rule]`` keys of a PPO manifest
  (``rules/ppo.toml``: the defaults live there)."""

  # [hyperparams]
  discount_factor: float
  gae_lambda: float
  clip_eps: float
  value_cost: float
  entropy_cost: float
  # [rule]
  normalize_adv: bool
  clip_value: bool
  num_epochs: int
  num_minibatches: int
  reward_norm: bool  # divide rewards by a running std of the discounted return
  reward_norm_gamma: float  # that return's discount (VecNormalize's gamma)
  reward_norm_clip: float  # normalised rewards are clipped to [-clip, clip]
  reward_norm_eps: float  # added to the variance


class PPOTargets(NamedTuple):
  advantage: Array  # [T, B] GAE advantages (unnormalised; the loss normalises per minibatch)
  returns: Array  # [T, B] value targets A + V_old (unnormalised A)
  old_value: Array  # [T, B] V(s_t) at the start of the update
  behaviour_logp: Array  # [T, B] log mu(a_t | s_t)


def gae(values: Array, rewards: Array, discounts: Array, lambda_: float) -> Array:
  """GAE advantages [T, B] from values [T+1, B], rewards and discounts [T, B]."""
  deltas = rewards + discounts * values[1:] - values[:-1]

  def step(carry, x):
    delta, disc = x
    adv = delta + disc * lambda_ * carry
    return adv, adv

  _, adv = jax.lax.scan(step, jnp.zeros_like(deltas[0]), (deltas, discounts), reverse=True)
  return adv


def masked_normalize(x: Array, mask: Array, eps: float = 1e-8) -> Array:
  """(x - mean) / std over the entries where mask is 1."""
  n = jnp.maximum(jnp.sum(mask), 1.0)
  mean = jnp.sum(x * mask) / n
  var = jnp.sum(jnp.square(x - mean) * mask) / n
  return (x - mean) / (jnp.sqrt(var) + eps)


def value_loss(cfg: PPOConfig, agent_out: AgentOut, targets: PPOTargets) -> Array:
  """Squared value error [T, B] (without the 0.5), clipped around the old
  values as ppo2 when ``cfg.clip_value``: ``max((V - R)^2, (V_clip - R)^2)``."""
  v = agent_out["v"][:-1, ..., 0]
  vloss = jnp.square(v - targets.returns)
  if cfg.clip_value:
    v_clip = targets.old_value + jnp.clip(v - targets.old_value, -cfg.clip_eps, cfg.clip_eps)
    vloss = jnp.maximum(vloss, jnp.square(v_clip - targets.returns))
  return vloss


@dataclasses.dataclass(frozen=True)
class PPO:
  """Clipped-surrogate PPO with GAE; several epochs of minibatches per batch."""

  cfg: PPOConfig
  name: str = "ppo"
  behaviour_logits = None  # acts from the agent's logits (rules.base.UpdateRule)
  loss_taken = None  # its loss reads no action model (rules.base.UpdateRule)
  minibatch_transitions = True  # minibatches of transitions (rules.base.UpdateRule)
  axis_name: str | None = None

  @property
  def num_epochs(self) -> int:
    """Epochs over each batch (``[rule] num_epochs``)."""
    return self.cfg.num_epochs

  @property
  def num_minibatches(self) -> int:
    """Minibatches per epoch (``[rule] num_minibatches``)."""
    return self.cfg.num_minibatches

  def output_spec(self, num_actions: int) -> OutputSpec:
    return OutputSpec(flat={"logits": (num_actions,), "v": (1,)}, model={})

  def init_state(self, rng: Array, agent_params: Any) -> tuple | rn.RewardNormState:
    """() or, with ``reward_norm``, the running return statistics."""
    del rng, agent_params
    return rn.init() if self.cfg.reward_norm else ()

  def rewards(self, state: Any, batch: Rollout) -> tuple[Array, Any, dict[str, Array]]:
    """The transition rewards [T, B] the targets use (normalised with
    ``reward_norm``), the new state and logs."""
    if not self.cfg.reward_norm:
      return batch.transition_rewards, state, {}
    cfg = self.cfg
    rewards, state = rn.normalize(
      state,
      batch.transition_rewards,
      batch.loss_mask,
      batch.is_terminal,
      cfg.reward_norm_gamma,
      cfg.reward_norm_clip,
      cfg.reward_norm_eps,
    )
    return rewards, state, {"reward_norm_std": jnp.sqrt(state.var + cfg.reward_norm_eps)}

  def targets(
    self,
    rule_params: Any,
    state: Any,
    batch: Rollout,
    agent_out: AgentOut,
    agent_params: Any,
    unroll_fn: UnrollFn,
  ) -> tuple[PPOTargets, Any, dict[str, Array]]:
    del rule_params, agent_params, unroll_fn
    cfg = self.cfg
    v = jax.lax.stop_gradient(agent_out["v"][..., 0])  # [T+1, B]
    discounts = cfg.discount_factor * (1.0 - batch.is_terminal.astype(jnp.float32))
    rewards, state, norm_logs = self.rewards(state, batch)
    adv = gae(v, rewards, discounts, cfg.gae_lambda)
    returns = adv + v[:-1]
    logp = nx.log_prob(batch.behaviour_logits[:-1], batch.actions[:-1])
    logs = {"adv": jnp.mean(adv), "value": jnp.mean(v), **norm_logs}
    return PPOTargets(adv, returns, v[:-1], logp), state, logs

  def loss(
    self, agent_out: AgentOut, targets: PPOTargets, batch: Rollout
  ) -> tuple[Array, dict[str, Array]]:
    cfg = self.cfg
    logits = agent_out["logits"][:-1]
    logp = nx.log_prob(logits, batch.actions[:-1])
    ratio = jnp.exp(logp - targets.behaviour_logp)
    adv = targets.advantage
    if cfg.normalize_adv:
      adv = masked_normalize(adv, batch.loss_mask)
    clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
    pg = -jnp.minimum(ratio * adv, clipped * adv)
    vloss = value_loss(cfg, agent_out, targets)
    ent = nx.entropy(logits)
    loss = pg + cfg.value_cost * 0.5 * vloss - cfg.entropy_cost * ent
    logs = {
      "pg_loss": jnp.mean(pg),
      "value_loss": jnp.mean(vloss),
      "entropy": jnp.mean(ent),
      "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > cfg.clip_eps).astype(jnp.float32)),
    }
    return loss, logs


def from_settings(
  settings: dict[str, dict[str, Any]], name: str = "ppo", axis_name: str | None = None
) -> PPO:
  """Builds PPO from a manifest's settings tables ([hyperparams], [rule])."""
  cfg = schema.from_tables(PPOConfig, settings, f"rule '{name}'")
  if cfg.num_epochs < 1 or cfg.num_minibatches < 1:
    raise UserError(
      f"rule '{name}': num_epochs and num_minibatches must be >= 1, "
      f"got {cfg.num_epochs} and {cfg.num_minibatches}"
    )
  return PPO(cfg=cfg, name=name, axis_name=axis_name)
