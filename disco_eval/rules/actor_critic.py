"""Actor-critic with V-trace: a hand-designed rule through the same interface.

Settings follow DiscoRL's reference ``get_settings_actor_critic``: categorical
state value (601 bins on the signed-hyperbolic scale), V-trace targets with
trace lambda, policy gradient with (optionally normalised) V-trace advantages,
and an entropy bonus.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from disco_eval import numerics as nx
from disco_eval.config import schema
from disco_eval.rules.base import AgentOut, OutputSpec, Rollout, UnrollFn

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ACConfig:
  """The ``[hyperparams]`` and ``[rule]`` keys of an actor-critic manifest
  (``rules/actor_critic.toml``, ``rules/impala.toml``: the defaults live there)."""

  # [hyperparams]
  discount_factor: float
  vtrace_lambda: float
  pg_cost: float
  value_cost: float
  entropy_cost: float
  # [rule]
  num_bins: int
  max_abs_value: float
  categorical_value: bool
  nonlinear_value_transform: bool
  normalize_adv: bool
  normalize_td: bool
  ema_decay: float
  ema_eps: float


class ACState(NamedTuple):
  adv_ema: nx.EmaState
  td_ema: nx.EmaState


class ACTargets(NamedTuple):
  advantage: Array  # [T, B] policy-gradient advantage (maybe normalised)
  value_td: Array  # [T, B] V-trace target minus value (maybe normalised)


def _values(cfg: ACConfig, v_out: Array) -> Array:
  """Scalar values [T+1, B] from the value head [T+1, B, N or 1]."""
  if cfg.categorical_value:
    v = nx.categorical_expectation(v_out, cfg.max_abs_value)
  else:
    v = v_out[..., 0]
  return nx.signed_parabolic(v) if cfg.nonlinear_value_transform else v


@dataclasses.dataclass(frozen=True)
class ActorCritic:
  """V-trace actor-critic (IMPALA-style) as an update rule."""

  cfg: ACConfig
  name: str = "actor_critic"
  behaviour_logits = None  # acts from the agent's logits (rules.base.UpdateRule)
  loss_taken = None  # its loss reads no action model (rules.base.UpdateRule)
  minibatch_transitions = False  # minibatches of whole trajectories (rules.base.UpdateRule)
  num_epochs: int = 1
  num_minibatches: int = 1
  axis_name: str | None = None

  def output_spec(self, num_actions: int) -> OutputSpec:
    width = self.cfg.num_bins if self.cfg.categorical_value else 1
    return OutputSpec(flat={"logits": (num_actions,), "v": (width,)}, model={})

  def init_state(self, rng: Array, agent_params: Any) -> ACState:
    del rng, agent_params
    return ACState(nx.ema_init(), nx.ema_init())

  def targets(
    self,
    rule_params: Any,
    state: ACState,
    batch: Rollout,
    agent_out: AgentOut,
    agent_params: Any,
    unroll_fn: UnrollFn,
  ) -> tuple[ACTargets, ACState, dict[str, Array]]:
    del rule_params, agent_params, unroll_fn
    cfg = self.cfg
    a = batch.actions[:-1]
    v = jax.lax.stop_gradient(_values(cfg, agent_out["v"]))
    rho = jnp.exp(
      nx.log_prob(agent_out["logits"][:-1], a) - nx.log_prob(batch.behaviour_logits[:-1], a)
    )
    rho = jax.lax.stop_gradient(rho)
    discounts = cfg.discount_factor * (1.0 - batch.is_terminal.astype(jnp.float32))
    vt = nx.vtrace(
      v[:-1], v[1:], batch.transition_rewards, discounts, rho, lambda_=cfg.vtrace_lambda
    )
    td = vt.vs - v[:-1]
    adv_ema = nx.ema_update(state.adv_ema, vt.pg_advantage, cfg.ema_decay, self.axis_name)
    td_ema = nx.ema_update(state.td_ema, td, cfg.ema_decay, self.axis_name)
    adv = (
      nx.ema_normalize(vt.pg_advantage, adv_ema, cfg.ema_eps)
      if cfg.normalize_adv
      else vt.pg_advantage
    )
    td_used = (
      nx.ema_normalize(td, td_ema, cfg.ema_eps, subtract_mean=False) if cfg.normalize_td else td
    )
    logs = {"adv": jnp.mean(vt.pg_advantage), "value": jnp.mean(v)}
    return ACTargets(adv, td_used), ACState(adv_ema, td_ema), logs

  def loss(
    self, agent_out: AgentOut, targets: ACTargets, batch: Rollout
  ) -> tuple[Array, dict[str, Array]]:
    cfg = self.cfg
    a = batch.actions[:-1]
    logits = agent_out["logits"][:-1]
    pg = -nx.log_prob(logits, a) * jax.lax.stop_gradient(targets.advantage)
    ent = nx.entropy(logits)
    v_out = agent_out["v"][:-1]
    v = jax.lax.stop_gradient(_values(cfg, v_out))
    target = jax.lax.stop_gradient(v + targets.value_td)
    if cfg.categorical_value:
      if cfg.nonlinear_value_transform:
        vloss = nx.categorical_value_loss(v_out, target, cfg.max_abs_value)
      else:
        probs = nx.two_hot(target, cfg.max_abs_value, v_out.shape[-1])
        vloss = -jnp.sum(probs * jax.nn.log_softmax(v_out), axis=-1)
    else:
      tgt = nx.signed_hyperbolic(target) if cfg.nonlinear_value_transform else target
      vloss = 0.5 * jnp.square(v_out[..., 0] - tgt)
    loss = cfg.pg_cost * pg + cfg.value_cost * vloss - cfg.entropy_cost * ent
    logs = {"pg_loss": jnp.mean(pg), "value_loss": jnp.mean(vloss), "entropy": jnp.mean(ent)}
    return loss, logs


def from_settings(
  settings: dict[str, dict[str, Any]], name: str = "actor_critic", axis_name: str | None = None
) -> ActorCritic:
  """Builds the rule from a manifest's settings tables ([hyperparams], [rule])."""
  cfg = schema.from_tables(ACConfig, settings, f"rule '{name}'")
  return ActorCritic(cfg=cfg, name=name, axis_name=axis_name)
