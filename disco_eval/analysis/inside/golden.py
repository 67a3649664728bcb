"""The golden rule-step inputs (``shared/golden/*.npz``, see its FORMAT.md) as the rule's
inputs, for analyses that need no run."""

from pathlib import Path

import jax.numpy as jnp

from disco_eval.rules import disco, verify

LEAVES = ("logits", "y", "z", "aux_pi", "q")


def golden_inputs(path: Path) -> tuple[disco.MetaInputs, disco.MetaState, disco.RuleConfig]:
  """(inputs, meta-state before the step, rule settings) of one golden file; a UserError
  (from the file checks of ``rules verify``) when it is not one."""
  d = verify.load_golden(Path(path))
  out = lambda prefix: {k: jnp.asarray(d[f"{prefix}/{k}"]) for k in LEAVES}  # noqa: E731
  discounts = jnp.asarray(d["discounts"])
  inp = disco.MetaInputs(
    actions=jnp.asarray(d["actions"]),
    rewards=jnp.asarray(d["rewards"])[1:],
    is_terminal=discounts[1:] == 0,
    agent_out=out("agent_out"),
    behaviour_logits=jnp.asarray(d["behaviour_agent_out/logits"]),
    target_out=out("target_out"),
  )
  return inp, verify.golden_state(d), verify.golden_config(d)
