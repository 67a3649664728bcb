"""The update-rule interface every rule implements.

A rule is a small object of pure functions; the trainer never special-cases a
rule. Per learner step the trainer:

1. unrolls the agent on a batch of trajectories (``agent_out``);
2. calls ``rule.targets(...)`` outside the gradient: targets and the rule's
   new state (meta-RNN state, EMA statistics, target parameters...);
3. for ``rule.num_epochs`` epochs of ``rule.num_minibatches`` minibatches,
   takes the gradient of the masked mean of ``rule.loss(agent_out, targets,
   batch)`` with respect to the agent parameters and applies the optimiser.

A rule that needs several passes over a batch (PPO) sets ``num_epochs`` and
``num_minibatches``; its targets are computed once per batch.

When acting (training and evaluation) every trainer samples actions from
:func:`acting_logits`: the agent's ``logits`` output, unless the rule's
``behaviour_logits`` hook (a member of the contract, None for most rules) is a
method ``behaviour_logits(agent_out, step, evaluation)`` (e.g. an
epsilon-greedy policy over Q-values, :mod:`disco_eval.rules.dqn`). The logits
sampled from are the ``behaviour_logits`` recorded in the :class:`Rollout`.

Batches are :class:`Rollout` s of T+1 actor steps (index T only bootstraps).
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Protocol

import jax

Array = jax.Array
Params = Any
AgentOut = dict[str, Array]
# unroll_fn(agent_params, observations [T+1, B, ...]) -> agent_out [T+1, B, ...]
UnrollFn = Callable[[Params, Array], AgentOut]


class Rollout(NamedTuple):
  """T+1 actor steps of B trajectories (time-major).

  Attributes:
    observations: [T+1, B, ...] observation at each actor step.
    actions: [T+1, B] int32 action taken at each step.
    rewards: [T+1, B] reward that arrived with each step (index 0 unused).
    discounts: [T+1, B] 0 where the step was the last of an episode, else 1.
    behaviour_logits: [T+1, B, A] policy logits of the actor (mu).
  """

  observations: Array
  actions: Array
  rewards: Array
  discounts: Array
  behaviour_logits: Array

  @property
  def transition_rewards(self) -> Array:
    """[T, B] reward of transition t (``rewards[t+1]``)."""
    return self.rewards[1:]

  @property
  def is_terminal(self) -> Array:
    """[T, B] bool: the episode ended after transition t."""
    return self.discounts[1:] == 0

  @property
  def loss_mask(self) -> Array:
    """[T, B] float: 1 where step t is a valid start of a transition."""
    return (self.discounts[:-1] > 0).astype(jax.numpy.float32)


class OutputSpec(NamedTuple):
  """Agent outputs a rule needs, by name -> trailing shape.

  ``flat`` outputs are per state (e.g. logits [A], y [600]); ``model``
  outputs are per state and action, from an action-conditional model
  (e.g. z [600] becomes [A, 600]).
  """

  flat: dict[str, tuple[int, ...]]
  model: dict[str, tuple[int, ...]]


class UpdateRule(Protocol):
  """Interface of an update rule (see module docstring)."""

  name: str
  num_epochs: int
  num_minibatches: int
  # How the actor picks its logits: None (most rules: a class attribute
  # ``behaviour_logits = None``) acts from ``agent_out["logits"]``; else a
  # method behaviour_logits(agent_out, step, evaluation) -> logits [..., A]
  # (see acting_logits). A plug-in rule without it gets None (rules.plugins).
  behaviour_logits: Callable[[AgentOut, Array | float, bool], Array] | None
  # With ``minibatch_transitions = True`` the ``num_epochs`` x ``num_minibatches``
  # passes take random transitions, not whole trajectories
  # (train.learner.transition_order); the loss must then read rows [:-1] only.
  # False: whole trajectories (a plug-in rule without it gets False: rules.plugins).
  minibatch_transitions: bool

  def output_spec(self, num_actions: int) -> OutputSpec: ...

  def init_state(self, rng: Array, agent_params: Params) -> Any:
    """The rule's own state (meta-RNN state, EMAs, target params...)."""
    ...

  def targets(
    self,
    rule_params: Params,
    state: Any,
    batch: Rollout,
    agent_out: AgentOut,
    agent_params: Params,
    unroll_fn: UnrollFn,
  ) -> tuple[Any, Any, dict[str, Array]]:
    """Targets (no gradient), the new rule state and scalar logs."""
    ...

  def loss(
    self, agent_out: AgentOut, targets: Any, batch: Rollout
  ) -> tuple[Array, dict[str, Array]]:
    """Per-step loss [T, B] whose masked mean trains the agent, and logs."""
    ...

  # Optional (None where a rule has none: a class attribute ``loss_taken = None``):
  # loss_taken(agent_out, targets, batch) -> as ``loss``, for a rule whose loss
  # reads the action model (the spec's ``model`` outputs) only at the taken
  # actions: the same loss, given each model output at the taken action
  # ([T+1, B, *spec] instead of [T+1, B, A, *spec]). With it the learner
  # differentiates the action model at the taken actions alone
  # (``disco_eval.train.learner``), not through dense zero cotangents. A plug-in
  # rule without it gets None (rules.plugins).
  loss_taken: Callable[[AgentOut, Any, Rollout], tuple[Array, dict[str, Array]]] | None


def acting_logits(
  rule: UpdateRule, agent_out: AgentOut, step: Array | float, evaluation: bool = False
) -> Array:
  """The logits [..., A] an actor samples its actions from.

  Args:
    rule: the update rule; its ``behaviour_logits(agent_out, step,
      evaluation)`` decides, or, when it is None, the agent's ``logits``
      output is used.
    agent_out: the agent's outputs for a batch of states [..., ...].
    step: [] environment steps taken by the run before this rollout (all its
      environments together), e.g. for an exploration schedule.
    evaluation: True when playing the final policy for its score.
  """
  if rule.behaviour_logits is None:
    return agent_out["logits"]
  return rule.behaviour_logits(agent_out, step, evaluation)


def acting_apply(rule: UpdateRule, apply_fn: UnrollFn) -> UnrollFn:
  """`apply_fn` (params, obs) -> outputs, with ``"logits"`` replaced by the
  rule's evaluation logits (:func:`acting_logits`), for evaluations that call
  an agent themselves (e.g. Sokoban's level splits). Returns `apply_fn`
  itself for a rule whose hook is None; the result is hashable (a static
  argument of compiled evaluations)."""
  if rule.behaviour_logits is None:
    return apply_fn
  return _EvaluationApply(rule, apply_fn)


@dataclasses.dataclass(frozen=True)
class _EvaluationApply:
  rule: Any
  apply_fn: UnrollFn

  def __call__(self, params: Params, obs: Array) -> AgentOut:
    out = self.apply_fn(params, obs)
    return {**out, "logits": acting_logits(self.rule, out, 0.0, evaluation=True)}
