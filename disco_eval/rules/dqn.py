"""DQNReg and DQNClipped: the two losses evolved by Co-Reyes et al.
("Evolving reinforcement learning algorithms", ICLR 2021, arXiv:2101.03958,
Sec. 4.3), as update rules of the common interface.

Per transition t of a batch (one-step, as the paper's DQN):

  Y_t = r_t + gamma_t max_a Q_targ(s_{t+1}, a),   delta_t = Q(s_t, a_t) - Y_t
  DQNReg:     L = k Q(s_t, a_t) + delta_t^2                          (k = 0.1)
  DQNClipped: L = max(Q(s_t, a_t), delta_t^2 + Y_t)
                  + max(Q(s_t, a_t) - Y_t, gamma_t (max_a Q_targ(s_{t+1}, a))^2)

``gamma_t = gamma`` except 0 after an episode's last step, as in the paper's
code, where the loss program's discount input is the environment discount
times gamma (github google/brain_autorl@27ace274, evolving_rl/custom_dqn.py).
Q is the agent's flat head ``q`` [A]; Q_targ the same network with target
parameters held in the rule state, copied from the agent's every
``target_update_period`` learner steps (a periodic hard copy, as the paper's
code: 100 steps by default, evolving_rl/run_search.py; the copy here takes
the parameters the learner step starts from).

Acting (:meth:`QLearning.behaviour_logits`) is epsilon-greedy in Q, encoded
as logits ``log(eps / A + (1 - eps) [a = argmax Q])`` so that the Rollout's
behaviour logits are the actor's true log-probabilities; epsilon decays
linearly from ``epsilon_start`` to ``epsilon_end`` over
``epsilon_decay_steps`` environment steps, and evaluation plays with
``eval_epsilon``.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from disco_eval import numerics as nx
from disco_eval.config import schema
from disco_eval.rules.base import AgentOut, OutputSpec, Rollout, UnrollFn

Array = jax.Array
# The smallest normal float32: probabilities are floored there before the log,
# so that an action of probability 0 (epsilon 0) gets a finite logit (about -87).
_TINY = float(jnp.finfo(jnp.float32).tiny)


@dataclasses.dataclass(frozen=True)
class QConfig:
  """The ``[hyperparams]`` and ``[rule]`` keys of a DQNClipped manifest
  (``rules/dqn_clipped.toml``; DQNReg adds ``reg_weight``)."""

  # [hyperparams]
  discount_factor: float
  # [rule]
  target_update_period: int  # learner steps between target copies
  epsilon_start: float
  epsilon_end: float
  epsilon_decay_steps: int  # environment steps of the linear decay
  eval_epsilon: float


@dataclasses.dataclass(frozen=True)
class DQNRegConfig(QConfig):
  """DQNClipped's keys and ``[hyperparams] reg_weight`` (k, 0.1 in the paper)."""

  reg_weight: float


class QState(NamedTuple):
  target_params: Any  # parameters of Q_targ
  steps: Array  # [] int32 learner steps taken


class QTargets(NamedTuple):
  y: Array  # [T, B] Y_t
  gamma_max_sq: Array  # [T, B] gamma_t (max_a Q_targ(s_{t+1}, a))^2


def td_target(rewards: Array, gammas: Array, q_next_target: Array) -> tuple[Array, Array]:
  """(Y [T, B], gamma_t * max_a Q_targ^2 [T, B]) from rewards and gammas
  [T, B] and target Q-values of the next states [T, B, A]."""
  best = jnp.max(q_next_target, axis=-1)
  return rewards + gammas * best, gammas * jnp.square(best)


def dqn_reg_loss(q_taken: Array, y: Array, reg_weight: float) -> Array:
  """DQNReg [...]: ``k Q(s, a) + (Q(s, a) - Y)^2``."""
  return reg_weight * q_taken + jnp.square(q_taken - y)


def dqn_clipped_loss(q_taken: Array, y: Array, gamma_max_sq: Array) -> Array:
  """DQNClipped [...]: ``max(Q, delta^2 + Y) + max(Q - Y, gamma max Q_targ^2)``."""
  delta = q_taken - y
  return jnp.maximum(q_taken, jnp.square(delta) + y) + jnp.maximum(delta, gamma_max_sq)


def linear_epsilon(step: Array | float, start: float, end: float, decay_steps: int) -> Array:
  """[] epsilon after `step` environment steps: `start` to `end` linearly
  over `decay_steps`, then `end`."""
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / decay_steps, 0.0, 1.0)
  return start + frac * (end - start)


def epsilon_greedy_logits(q: Array, epsilon: Array | float) -> Array:
  """Logits [..., A] of the epsilon-greedy policy in `q` [..., A]: their
  softmax gives eps / A to every action plus 1 - eps to the first argmax."""
  a = q.shape[-1]
  greedy = jax.nn.one_hot(jnp.argmax(q, axis=-1), a, dtype=jnp.float32)
  probs = epsilon / a + (1.0 - epsilon) * greedy
  return jnp.log(jnp.maximum(probs, _TINY))


@dataclasses.dataclass(frozen=True)
class QLearning:
  """One-step Q-learning with a target network and an evolved loss
  (``variant`` "dqn_reg" or "dqn_clipped")."""

  cfg: QConfig
  variant: str
  name: str = "dqn"
  num_epochs: int = 1
  num_minibatches: int = 1
  axis_name: str | None = None

  def output_spec(self, num_actions: int) -> OutputSpec:
    return OutputSpec(flat={"q": (num_actions,)}, model={})

  def init_state(self, rng: Array, agent_params: Any) -> QState:
    del rng
    return QState(agent_params, jnp.zeros((), jnp.int32))

  loss_taken = None  # its loss reads q through every action (rules.base.UpdateRule)
  minibatch_transitions = False  # minibatches of whole trajectories (rules.base.UpdateRule)

  def behaviour_logits(self, agent_out: AgentOut, step: Array | float, evaluation: bool = False):
    """Epsilon-greedy logits [..., A] from ``agent_out["q"]`` (module docstring)."""
    cfg = self.cfg
    if evaluation:
      eps = jnp.asarray(cfg.eval_epsilon, jnp.float32)
    else:
      eps = linear_epsilon(step, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_decay_steps)
    return epsilon_greedy_logits(agent_out["q"], eps)

  def targets(
    self,
    rule_params: Any,
    state: QState,
    batch: Rollout,
    agent_out: AgentOut,
    agent_params: Any,
    unroll_fn: UnrollFn,
  ) -> tuple[QTargets, QState, dict[str, Array]]:
    del rule_params
    q_target = jax.lax.stop_gradient(unroll_fn(state.target_params, batch.observations)["q"])
    gammas = self.cfg.discount_factor * (1.0 - batch.is_terminal.astype(jnp.float32))
    y, gamma_max_sq = td_target(batch.transition_rewards, gammas, q_target[1:])
    steps = state.steps + 1
    copy = steps % self.cfg.target_update_period == 0
    params = jax.lax.stop_gradient(agent_params)
    target = jax.tree.map(lambda t, p: jnp.where(copy, p, t), state.target_params, params)
    q_taken = nx.select(agent_out["q"][:-1], batch.actions[:-1])
    logs = {"q_taken": jnp.mean(q_taken), "td_target": jnp.mean(y)}
    return QTargets(y, gamma_max_sq), QState(target, steps), logs

  def loss(
    self, agent_out: AgentOut, targets: QTargets, batch: Rollout
  ) -> tuple[Array, dict[str, Array]]:
    q_taken = nx.select(agent_out["q"][:-1], batch.actions[:-1])
    if self.variant == "dqn_reg":
      loss = dqn_reg_loss(q_taken, targets.y, self.cfg.reg_weight)
    else:
      loss = dqn_clipped_loss(q_taken, targets.y, targets.gamma_max_sq)
    td = jnp.square(q_taken - targets.y)
    return loss, {"td_error_sq": jnp.mean(td), "q": jnp.mean(q_taken)}


def _build(variant: str, cls: type, settings: dict, name: str, axis_name: str | None) -> QLearning:
  cfg = schema.from_tables(cls, settings, f"rule '{name}'")
  return QLearning(cfg=cfg, variant=variant, name=name, axis_name=axis_name)


def dqn_reg_from_settings(
  settings: dict[str, dict[str, Any]], name: str = "dqn_reg", axis_name: str | None = None
) -> QLearning:
  """DQNReg from a manifest's settings tables ([hyperparams], [rule])."""
  return _build("dqn_reg", DQNRegConfig, settings, name, axis_name)


def dqn_clipped_from_settings(
  settings: dict[str, dict[str, Any]], name: str = "dqn_clipped", axis_name: str | None = None
) -> QLearning:
  """DQNClipped from a manifest's settings tables ([hyperparams], [rule])."""
  return _build("dqn_clipped", QConfig, settings, name, axis_name)
