"""Input ablations of a rule of Disco103's architecture (the paper's Fig. 4e).

Oh et al. (Nature 2025), Fig. 4e and Methods ("Analysis details"), measure how much the
discovered rule owes to bootstrapping from the agent's own predictions by running it with
its prediction inputs removed:

* ``no-yz-bootstrap``: the y and z inputs are set to zero when the meta-network computes
  the targets of y and z (``y_hat``, ``z_hat``); the policy target ``pi_hat`` is computed
  from the unchanged inputs. y and z are then learned without bootstrapping from
  themselves.
* ``no-yz``: the y and z inputs are set to zero for every target, the policy's included.

What "the y and z inputs" are here (:func:`zero_yz`): the prediction arrays the rule reads,
``y`` [T+1,B,Y] and ``z`` [T+1,B,A,Y] of both the online agent and the target network, all
steps. They are replaced by zeros (uniform logits) in the meta-network's inputs only; the
agent's own y and z still receive their loss towards the (ablated) targets. Everything else
the rule reads (policy logits, values, rewards, terminals, actions) is untouched. In
``no-yz-bootstrap`` the meta-RNN state advances with the unchanged inputs' pass (the pass
that produces ``pi_hat``); in ``no-yz`` with the ablated one. Our reading: the
paper's Methods text was not available when this was written; which arrays count as "the y
and z inputs" and which pass advances the meta-RNN are our choices, to check against it.

A variant is named ``RULE:VARIANT`` (``--rule disco103:no-yz``, ``--rule
PATH.npz:no-yz-bootstrap``, ``--rule NAME=PATH.npz:no-yz``): the rule's label gets the same
suffix, so that every record, folder and report names it, and a run's ``config.json``
stores it under ``rule.variant`` (runs without a variant store nothing new). ``:`` never
occurs in a rule name, so the suffix is unambiguous.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from disco_eval.errors import UserError
from disco_eval.rules import disco
from disco_eval.rules.base import AgentOut, Rollout, UnrollFn

SEPARATOR = ":"
NO_YZ_BOOTSTRAP = "no-yz-bootstrap"
NO_YZ = "no-yz"
VARIANTS = {
  NO_YZ_BOOTSTRAP: "y and z inputs zeroed when computing the y and z targets (no bootstrapping)",
  NO_YZ: "y and z inputs zeroed for every target, the policy's included",
}
SOURCE = "Oh et al., Nature 2025, Fig. 4e and Methods (Analysis details)"
# The manifest kinds whose rules the variants apply to.
KINDS = ("disco",)
# The leaves zero_yz replaces, per output dict of MetaInputs.
ZEROED_LEAVES = ("y", "z")


def split(spec: str) -> tuple[str, str | None]:
  """(BASE, VARIANT) of ``BASE:VARIANT``; (spec, None) for a spec without a suffix.

  A UserError names the known variants when the suffix is not one of them.
  """
  base, sep, tail = spec.rpartition(SEPARATOR)
  if not sep or not base or "/" in tail or "." in tail or "=" in tail:
    return spec, None
  if tail not in VARIANTS:
    raise UserError(
      f"--rule {spec}: unknown variant '{tail}'; known variants: {', '.join(VARIANTS)} "
      "(e.g. --rule disco103:no-yz)"
    )
  return base, tail


def label(base_label: str, variant: str | None) -> str:
  """The label of `variant` of the rule labelled `base_label` (``disco103:no-yz``)."""
  return base_label if variant is None else f"{base_label}{SEPARATOR}{variant}"


def check_kind(spec: str, kind: str) -> None:
  """A UserError if rules of manifest `kind` have no variants."""
  if kind not in KINDS:
    raise UserError(
      f"--rule {spec}: variants apply to rules of Disco103's architecture (kind disco), "
      f"not to kind '{kind}'; drop the ':' suffix"
    )


def zero_yz(inp: disco.MetaInputs) -> disco.MetaInputs:
  """`inp` with the y and z predictions of the online and target outputs set to zero.

  Args:
    inp: a rule step's inputs; ``agent_out``/``target_out`` hold y [T+1,B,Y] and
      z [T+1,B,A,Y].

  Returns:
    the same inputs, those four arrays replaced by zeros of their shape and dtype.
  """

  def zeroed(out: AgentOut) -> AgentOut:
    return {k: jnp.zeros_like(v) if k in ZEROED_LEAVES else v for k, v in out.items()}

  return inp._replace(agent_out=zeroed(inp.agent_out), target_out=zeroed(inp.target_out))


def variant_meta_step(
  params: disco.Params,
  state: disco.MetaState,
  inp: disco.MetaInputs,
  cfg: disco.RuleConfig,
  variant: str,
  axis_name: str | None = None,
  differentiable: bool = False,
) -> tuple[disco.MetaOut, disco.MetaState]:
  """:func:`disco.meta_step` under `variant` (see the module docstring); `differentiable` as
  there.

  Returns:
    the targets (pi_hat [T,B,A], y_hat [T,B,Y], z_hat [T,B,Y], ...) and the new meta-state.
  """
  step = lambda x: disco.meta_step(params, state, x, cfg, axis_name, differentiable=differentiable)
  ablated, ablated_state, _ = step(zero_yz(inp))
  if variant == NO_YZ:
    return ablated, ablated_state
  if variant != NO_YZ_BOOTSTRAP:
    raise ValueError(f"unknown variant {variant!r}")
  full, full_state, _ = step(inp)
  return full._replace(y_hat=ablated.y_hat, z_hat=ablated.z_hat), full_state


@dataclasses.dataclass(frozen=True)
class DiscoVariantRule(disco.DiscoRule):
  """A Disco rule whose targets come from :func:`variant_meta_step`."""

  variant: str = NO_YZ

  def targets(
    self,
    rule_params: disco.Params,
    state: disco.DiscoState,
    batch: Rollout,
    agent_out: AgentOut,
    agent_params: Any,
    unroll_fn: UnrollFn,
  ) -> tuple[disco.MetaOut, disco.DiscoState, dict[str, jax.Array]]:
    target_out = unroll_fn(state.target_params, batch.observations)
    inp = disco.MetaInputs(
      actions=batch.actions,
      rewards=batch.transition_rewards,
      is_terminal=batch.is_terminal,
      agent_out=agent_out,
      behaviour_logits=batch.behaviour_logits,
      target_out=target_out,
    )
    out, meta = variant_meta_step(
      rule_params, state.meta, inp, self.cfg, self.variant, self.axis_name
    )
    coeff = self.cfg.target_params_coeff
    target_params = jax.tree.map(
      lambda t, p: coeff * t + (1.0 - coeff) * p, state.target_params, agent_params
    )
    logs = {"adv": jnp.mean(out.values.adv), "q_value": jnp.mean(out.values.q_value)}
    return out, disco.DiscoState(meta, target_params), logs


def build(rule: disco.DiscoRule, variant: str) -> DiscoVariantRule:
  """`rule` (a Disco rule object) running `variant`."""
  fields = {f.name: getattr(rule, f.name) for f in dataclasses.fields(rule)}
  return DiscoVariantRule(**fields, variant=variant)
