"""Check a Disco103 implementation against golden rule steps.

A golden file (format: ``shared/golden/FORMAT.md``) records the inputs and
outputs of one rule step of the public reference implementation. This module
feeds the inputs to :func:`disco_eval.rules.disco.meta_step`, recomputes the
agent loss and its gradient with respect to the agent outputs, and compares
every output key with the bound FORMAT.md suggests for it. The whole step,
gradients included, computes in full float32 precision on every backend
(:func:`disco_eval.rules.disco.full_precision`).
"""

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval.errors import UserError
from disco_eval.numerics import EmaState
from disco_eval.rules import disco, golden_format

_LEAVES = ("logits", "y", "z", "aux_pi", "q")


@dataclasses.dataclass(frozen=True)
class KeyCheck:
  """Comparison of one output key."""

  key: str
  max_abs_err: float
  max_rel_err: float  # max abs error / max(1, max |ref|)
  bound: float  # allowed max abs error
  bound_text: str
  ok: bool


def load_golden(path: Path, dims: golden_format.RuleDims = golden_format.DISCO103) -> dict:
  """Reads a golden .npz (no pickles) into a dict of arrays and checks its layout.

  Args:
    path: the file.
    dims: the sizes of the rule it will be checked against (Y, LSTM sizes).

  Returns:
    key -> array.

  Raises:
    UserError: one line naming the file, the first key that is missing, of the
      wrong dtype or of the wrong shape, and what is wrong with it.
  """
  path = Path(path)
  if not path.is_file():
    raise UserError(f"golden file not found: {path}")
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except Exception as e:  # noqa: BLE001 - any unreadable file is user input
    raise UserError(f"cannot read golden file {path}: {e}") from None
  if not any(k in data for k in ("actions", "agent_out/logits", "out/pi_hat")):
    raise UserError(
      f"{path} is not a golden rule-step file: it has no key 'actions' "
      "(see shared/golden/FORMAT.md)"
    )
  _raise_problems(str(path), golden_format.golden_problems(data, dims))
  return data


def _raise_problems(name: str, problems: list[str]) -> None:
  """Raises one UserError for `problems` (the first, and how many more), if any."""
  if problems:
    more = len(problems) - 1
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    raise UserError(f"{name}: {problems[0]}{extra}")


def _ema(d: dict[str, np.ndarray], prefix: str) -> EmaState:
  return EmaState(
    *(jnp.asarray(d[f"{prefix}/{k}"]) for k in ("moment1", "moment2", "decay_product"))
  )


def golden_state(d: dict[str, np.ndarray]) -> disco.MetaState:
  return disco.MetaState(
    jnp.asarray(d["meta_state/rnn_state/hidden"]),
    jnp.asarray(d["meta_state/rnn_state/cell"]),
    _ema(d, "meta_state/adv_ema"),
    _ema(d, "meta_state/td_ema"),
  )


def golden_config(d: dict[str, np.ndarray]) -> disco.RuleConfig:
  g = lambda k: float(d[k])
  return disco.RuleConfig(
    value_discount=g("rule/value_discount"),
    max_abs_value=g("rule/max_abs_value"),
    ema_decay=g("rule/ema_decay"),
    ema_eps=g("rule/ema_eps"),
    value_fn_td_lambda=g("hparams/value_fn_td_lambda"),
    pi_cost=g("hparams/pi_cost"),
    y_cost=g("hparams/y_cost"),
    z_cost=g("hparams/z_cost"),
    aux_policy_cost=g("hparams/aux_policy_cost"),
    value_cost=g("hparams/value_cost"),
    target_params_coeff=g("hparams/target_params_coeff"),
    discount_factor=g("hparams/discount_factor"),
    num_bins=int(d["rule/num_bins"]),
    prediction_size=int(d["rule/prediction_size"]),
  )


@functools.partial(jax.jit, static_argnames=("cfg",))
@disco.full_precision
def rule_step_outputs(
  params,
  state: disco.MetaState,
  actions,
  rewards,
  discounts,
  agent_out,
  behaviour_logits,
  target_out,
  cfg: disco.RuleConfig,
) -> dict[str, jax.Array]:
  """Everything a golden file records, computed by our implementation.

  Args:
    params: Disco103 parameters.
    state: meta-state before the step.
    actions, rewards, discounts: [T+1, B] actor arrays.
    agent_out, target_out: dicts of [T+1, B, ...] outputs.
    behaviour_logits: [T+1, B, A].
    cfg: rule settings.

  Returns:
    A flat dict with the golden file's output key names.
  """
  is_terminal = discounts[1:] == 0
  mask = (discounts[:-1] > 0).astype(jnp.float32)
  inp = disco.MetaInputs(actions, rewards[1:], is_terminal, agent_out, behaviour_logits, target_out)
  out, new_state, dbg = disco.meta_step(params, state, inp, cfg, with_debug=True)

  def total_loss(ao):
    loss, vloss, _ = disco.agent_loss(ao, out, actions, is_terminal, cfg)
    total = jnp.sum((loss + vloss) * mask) / (jnp.sum(mask) + 1e-8)
    return total, (loss, vloss)

  (total, (loss, vloss)), grads = jax.value_and_grad(total_loss, has_aux=True)(agent_out)
  v = out.values
  res = {
    "out/pi_hat": out.pi_hat,
    "out/y_hat": out.y_hat,
    "out/z_hat": out.z_hat,
    "out/meta_input_emb": out.meta_input_emb,
    "out/q_value": v.q_value,
    "out/q_target": v.q_target,
    "out/adv": v.adv,
    "out/normalized_adv": v.normalized_adv,
    "out/qv_adv": v.qv_adv,
    "out/normalized_qv_adv": v.normalized_qv_adv,
    "out/q_td": v.q_td,
    "out/normalized_q_td": v.normalized_q_td,
    "out/loss_per_step": loss,
    "out/loss_no_meta_per_step": vloss,
    "out/total_loss": total,
    "out/meta_state/rnn_state/hidden": new_state.hidden,
    "out/meta_state/rnn_state/cell": new_state.cell,
    "debug/is_terminal": is_terminal,
    "debug/loss_mask": mask > 0,
  }
  for name, ema in (("adv_ema", new_state.adv_ema), ("td_ema", new_state.td_ema)):
    for field in ("moment1", "moment2", "decay_product"):
      res[f"out/meta_state/{name}/{field}"] = getattr(ema, field)
  for k, val in dbg.items():
    res[f"debug/{k}"] = val
  for k in _LEAVES:
    res[f"grad/agent_out/{k}"] = grads[k]
  return res


def bound_for(key: str, ref: np.ndarray) -> tuple[float, str]:
  """FORMAT.md's suggested bound on the max abs error for `key`."""
  scale = float(np.max(np.abs(ref))) if ref.size else 0.0
  if ref.dtype == bool or np.issubdtype(ref.dtype, np.integer):
    return 0.0, "exact"
  if key.endswith("decay_product"):
    return float(np.spacing(np.float32(abs(float(ref))))), "1 ulp"
  if key in ("grad/agent_out/q", "out/loss_no_meta_per_step"):
    return 5e-3 * scale, "5e-3*max|ref|"
  if key == "out/total_loss":
    return 1e-4 * abs(float(ref)), "1e-4 relative"
  if key.startswith("grad/"):
    return 1e-6 + 1e-4 * scale, "1e-6+1e-4*max|ref|"
  if key.startswith("debug/"):
    return 1e-3 * max(1.0, scale), "1e-3*max(1,max|ref|)"
  return 1e-4 * max(1.0, scale), "1e-4*max(1,max|ref|)"


def check_golden(
  params,
  data: dict[str, np.ndarray],
  state: disco.MetaState | None = None,
  name: str = "golden data",
) -> list[KeyCheck]:
  """Runs one golden step and compares every recorded output key.

  Args:
    params: Disco103 parameters.
    data: a loaded golden file.
    state: meta-state to start from (default: the file's stored state).
    name: what to call `data` in messages (its file name).

  Returns:
    One :class:`KeyCheck` per output key: every one FORMAT.md requires, and
    each optional (debug) key the file holds.

  Raises:
    UserError: `data` lacks a key FORMAT.md requires, or its shapes disagree
      with each other or with the rule's.
  """
  _raise_problems(name, golden_format.golden_problems(data, golden_format.rule_dims(params)))
  ours = _outputs_for(params, data, state)
  checks = []
  for key in sorted(ours):
    if key not in data:
      continue
    ref = np.asarray(data[key])
    mine = np.asarray(ours[key])
    if mine.shape != ref.shape:
      raise UserError(f"shape mismatch for {key}: expected {ref.shape}, computed {mine.shape}")
    err = np.abs(mine.astype(np.float64) - ref.astype(np.float64))
    max_err = float(np.max(err)) if err.size else 0.0
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    bound, text = bound_for(key, ref)
    checks.append(KeyCheck(key, max_err, max_err / scale, bound, text, bool(max_err <= bound)))
  return checks


def _state_from_outputs(ours: dict[str, np.ndarray]) -> disco.MetaState:
  ema = lambda name: EmaState(
    *(
      jnp.asarray(ours[f"out/meta_state/{name}/{f}"])
      for f in ("moment1", "moment2", "decay_product")
    )
  )
  return disco.MetaState(
    jnp.asarray(ours["out/meta_state/rnn_state/hidden"]),
    jnp.asarray(ours["out/meta_state/rnn_state/cell"]),
    ema("adv_ema"),
    ema("td_ema"),
  )


def _seq_position(data: dict[str, np.ndarray]) -> tuple[int, int] | None:
  """(seed, step) of a file of a chained sequence, else None."""
  if "meta/seq_step" not in data:
    return None
  return int(data["meta/seed"]), int(data["meta/seq_step"])


def check_files(params, files: list[Path]):
  """Checks golden files in order; yields (path, checks) per file.

  A file that continues a sequence (``meta/seq_step`` k following step k-1 of
  the same seed, given just before it) starts from the meta-state computed
  here for the previous step, not the stored one, so that the check covers
  the state carried from step to step. Its stored input state is then
  compared with ours as the extra keys ``carried/meta_state/*``.
  """
  dims = golden_format.rule_dims(params)
  # Every file's layout is checked before any step is computed.
  loaded = [(Path(path), load_golden(path, dims)) for path in files]
  prev_pos, prev_out = None, None
  for path, data in loaded:
    pos = _seq_position(data)
    carried = (
      pos is not None
      and prev_pos is not None
      and prev_out is not None
      and pos == (prev_pos[0], prev_pos[1] + 1)
    )
    state = _state_from_outputs(prev_out) if carried else None
    checks = check_golden(params, data, state, str(path))
    if carried:
      for key in (
        "rnn_state/hidden",
        "rnn_state/cell",
        "adv_ema/moment1",
        "adv_ema/moment2",
        "adv_ema/decay_product",
        "td_ema/moment1",
        "td_ema/moment2",
        "td_ema/decay_product",
      ):
        ref = np.asarray(data[f"meta_state/{key}"])
        mine = np.asarray(prev_out[f"out/meta_state/{key}"])
        e = float(np.max(np.abs(mine.astype(np.float64) - ref)))
        scale = max(1.0, float(np.max(np.abs(ref))))
        bound, text = bound_for(f"out/meta_state/{key}", ref)
        checks.append(KeyCheck(f"carried/meta_state/{key}", e, e / scale, bound, text, e <= bound))
    prev_pos = pos
    prev_out = _outputs_for(params, data, state) if pos is not None else None
    yield path, checks


def _outputs_for(params, data, state) -> dict[str, np.ndarray]:
  agent_out = {k: jnp.asarray(data[f"agent_out/{k}"]) for k in _LEAVES}
  target_out = {k: jnp.asarray(data[f"target_out/{k}"]) for k in _LEAVES}
  ours = rule_step_outputs(
    params,
    golden_state(data) if state is None else state,
    jnp.asarray(data["actions"]),
    jnp.asarray(data["rewards"]),
    jnp.asarray(data["discounts"]),
    agent_out,
    jnp.asarray(data["behaviour_agent_out/logits"]),
    target_out,
    golden_config(data),
  )
  return {k: np.asarray(v) for k, v in ours.items()}
