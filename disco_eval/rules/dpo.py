"""DPO, Discovered Policy Optimisation (Lu et al., NeurIPS 2022, arXiv:2210.05639).

A closed-form drift found by analysing a meta-learned one (LPO). It is PPO
with another policy objective: the targets, value loss, epochs and
minibatches are PPO's (:mod:`disco_eval.rules.ppo`, reused by composition).
With ``r = pi(a|s) / mu(a|s)`` and advantages ``A`` normalised per minibatch
(over its valid steps), the per-step policy loss is ``-(r A - drift)`` with

  drift = relu((r - 1) A - alpha tanh((r - 1) A / alpha))   where A >= 0
  drift = relu(log(r) A - beta tanh(log(r) A / beta))      where A < 0

``alpha = 2``, ``beta = 0.6`` in the paper and in its public JAX
implementation (github luchris429/purejaxrl@146b4856,
purejaxrl/dpo_continuous_action.py, Apache-2.0), which this module restates
for discrete actions (its lines are re-stated in numpy by
tests/test_discovered_rules.py and compared). Per-step loss:

  -(r A - drift) + value_cost * 0.5 * max((V - R)^2, (V_clip - R)^2) - entropy_cost * H(pi)
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from disco_eval import numerics as nx
from disco_eval.config import schema
from disco_eval.errors import UserError
from disco_eval.rules import ppo
from disco_eval.rules.base import AgentOut, OutputSpec, Rollout, UnrollFn

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class DPOConfig:
  """The ``[hyperparams]`` and ``[rule]`` keys of a DPO manifest
  (``rules/dpo.toml``: the defaults live there)."""

  # [hyperparams]
  discount_factor: float
  gae_lambda: float
  clip_eps: float  # value clipping only (DPO's policy objective has no clip)
  value_cost: float
  entropy_cost: float
  drift_alpha: float
  drift_beta: float
  # [rule]
  normalize_adv: bool  # per minibatch, as the public implementation
  clip_value: bool
  num_epochs: int
  num_minibatches: int
  reward_norm: bool  # as PPO's (rules/ppo.py): a running std of the discounted return
  reward_norm_gamma: float
  reward_norm_clip: float
  reward_norm_eps: float


def drift(ratio: Array, log_ratio: Array, adv: Array, alpha: float, beta: float) -> Array:
  """DPO's drift [...] from ratios r, log-ratios log(r) and advantages A [...]."""
  pos = jax.nn.relu((ratio - 1.0) * adv - alpha * jnp.tanh((ratio - 1.0) * adv / alpha))
  neg = jax.nn.relu(log_ratio * adv - beta * jnp.tanh(log_ratio * adv / beta))
  return jnp.where(adv >= 0.0, pos, neg)


@dataclasses.dataclass(frozen=True)
class DPO:
  """DPO's policy objective on PPO's targets, epochs and value loss."""

  cfg: DPOConfig
  name: str = "dpo"
  behaviour_logits = None  # acts from the agent's logits (rules.base.UpdateRule)
  loss_taken = None  # its loss reads no action model (rules.base.UpdateRule)
  minibatch_transitions = True  # as PPO's (rules.ppo): minibatches of transitions
  axis_name: str | None = None

  @property
  def inner(self) -> ppo.PPO:
    """The PPO whose targets (raw GAE advantages) and value loss DPO uses."""
    c = self.cfg
    return ppo.PPO(
      ppo.PPOConfig(
        discount_factor=c.discount_factor,
        gae_lambda=c.gae_lambda,
        clip_eps=c.clip_eps,
        value_cost=c.value_cost,
        entropy_cost=c.entropy_cost,
        normalize_adv=False,  # DPO normalises per minibatch, in the loss
        clip_value=c.clip_value,
        num_epochs=c.num_epochs,
        num_minibatches=c.num_minibatches,
        reward_norm=c.reward_norm,
        reward_norm_gamma=c.reward_norm_gamma,
        reward_norm_clip=c.reward_norm_clip,
        reward_norm_eps=c.reward_norm_eps,
      ),
      name=self.name,
      axis_name=self.axis_name,
    )

  @property
  def num_epochs(self) -> int:
    """Epochs over each batch (``[rule] num_epochs``)."""
    return self.cfg.num_epochs

  @property
  def num_minibatches(self) -> int:
    """Minibatches per epoch (``[rule] num_minibatches``)."""
    return self.cfg.num_minibatches

  def output_spec(self, num_actions: int) -> OutputSpec:
    return self.inner.output_spec(num_actions)

  def init_state(self, rng: Array, agent_params: Any) -> tuple:
    return self.inner.init_state(rng, agent_params)

  def targets(
    self,
    rule_params: Any,
    state: tuple,
    batch: Rollout,
    agent_out: AgentOut,
    agent_params: Any,
    unroll_fn: UnrollFn,
  ) -> tuple[ppo.PPOTargets, tuple, dict[str, Array]]:
    """PPO's targets with unnormalised GAE advantages [T, B]."""
    return self.inner.targets(rule_params, state, batch, agent_out, agent_params, unroll_fn)

  def loss(
    self, agent_out: AgentOut, targets: ppo.PPOTargets, batch: Rollout
  ) -> tuple[Array, dict[str, Array]]:
    cfg = self.cfg
    logits = agent_out["logits"][:-1]
    log_ratio = nx.log_prob(logits, batch.actions[:-1]) - targets.behaviour_logp
    ratio = jnp.exp(log_ratio)
    adv = targets.advantage
    if cfg.normalize_adv:
      adv = ppo.masked_normalize(adv, batch.loss_mask)
    d = drift(ratio, log_ratio, adv, cfg.drift_alpha, cfg.drift_beta)
    pg = -(ratio * adv - d)
    vloss = ppo.value_loss(self.inner.cfg, agent_out, targets)
    ent = nx.entropy(logits)
    loss = pg + cfg.value_cost * 0.5 * vloss - cfg.entropy_cost * ent
    logs = {
      "pg_loss": jnp.mean(pg),
      "drift": jnp.mean(d),
      "value_loss": jnp.mean(vloss),
      "entropy": jnp.mean(ent),
    }
    return loss, logs


def from_settings(
  settings: dict[str, dict[str, Any]], name: str = "dpo", axis_name: str | None = None
) -> DPO:
  """Builds DPO from a manifest's settings tables ([hyperparams], [rule])."""
  cfg = schema.from_tables(DPOConfig, settings, f"rule '{name}'")
  if cfg.num_epochs < 1 or cfg.num_minibatches < 1:
    raise UserError(
      f"rule '{name}': num_epochs and num_minibatches must be >= 1, "
      f"got {cfg.num_epochs} and {cfg.num_minibatches}"
    )
  return DPO(cfg=cfg, name=name, axis_name=axis_name)
