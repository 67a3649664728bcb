"""What a golden rule-step file must hold: keys, dtypes and shapes.

The layout is ``shared/golden/FORMAT.md``'s. :func:`golden_problems` checks a
loaded file against it before anything is computed: every input, output and
gradient key FORMAT.md lists is present; each has the dtype kind and the
shape FORMAT.md gives it; the sizes agree between keys (T and B from
``actions``, A from ``agent_out/logits``, N from ``rule/num_bins``) and with
the rule being checked (Y, the prediction size, and the LSTM sizes). Debug
keys are optional (intermediates for locating a mismatch) but checked when
present. Each problem is one line naming the key and what is wrong.
"""

import dataclasses

import numpy as np

# Shape patterns: a str is a size symbol (see _SYMBOLS), an int a fixed size.
# Dtype kinds: "i" integer, "b" bool, "f" floating.
_LEAVES = {
  "logits": ("T1", "B", "A"),
  "y": ("T1", "B", "Y"),
  "z": ("T1", "B", "A", "Y"),
  "aux_pi": ("T1", "B", "A", "A"),
  "q": ("T1", "B", "A", "N"),
}
_EMA = tuple(
  f"{e}/{m}" for e in ("adv_ema", "td_ema") for m in ("moment1", "moment2", "decay_product")
)
_META_STATE = {"rnn_state/hidden": ("H",), "rnn_state/cell": ("H",), **{k: () for k in _EMA}}
_HPARAMS = (
  "pi_cost",
  "y_cost",
  "z_cost",
  "value_cost",
  "aux_policy_cost",
  "target_params_coeff",
  "value_fn_td_lambda",
  "discount_factor",
)


def _inputs() -> dict[str, tuple[tuple, str]]:
  spec = {"actions": (("T1", "B"), "i"), "rewards": (("T1", "B"), "f")}
  spec["discounts"] = (("T1", "B"), "f")
  for prefix in ("agent_out", "behaviour_agent_out", "target_out"):
    spec.update({f"{prefix}/{k}": (s, "f") for k, s in _LEAVES.items()})
  spec.update({f"meta_state/{k}": (s, "f") for k, s in _META_STATE.items()})
  spec.update({f"hparams/{k}": ((), "f") for k in _HPARAMS})
  for k in ("value_discount", "max_abs_value", "ema_decay", "ema_eps"):
    spec[f"rule/{k}"] = ((), "f")
  spec.update({f"rule/{k}": ((), "i") for k in ("num_bins", "prediction_size")})
  spec.update({f"meta/{k}": ((), "i") for k in ("T", "B", "A", "seed", "warm_steps")})
  return spec


def _outputs() -> dict[str, tuple[tuple, str]]:
  tb = ("T", "B")
  spec = {
    "out/pi_hat": ("T", "B", "A"),
    "out/y_hat": ("T", "B", "Y"),
    "out/z_hat": ("T", "B", "Y"),
    "out/meta_input_emb": ("T", "B", 1),
    "out/q_value": ("T1", "B", "A"),
    "out/qv_adv": ("T1", "B", "A"),
    "out/normalized_qv_adv": ("T1", "B", "A"),
    "out/total_loss": (),
  }
  for k in ("q_target", "adv", "normalized_adv", "q_td", "normalized_q_td"):
    spec[f"out/{k}"] = tb
  for k in ("loss_per_step", "loss_no_meta_per_step"):
    spec[f"out/{k}"] = tb
  spec.update({f"out/meta_state/{k}": s for k, s in _META_STATE.items()})
  spec.update({f"grad/agent_out/{k}": s for k, s in _LEAVES.items()})
  return {k: (s, "f") for k, s in spec.items()}


def _optional() -> dict[str, tuple[tuple, str]]:
  tb = ("T", "B")
  spec = {
    "debug/trajectory_input": ("T", "B", 27),
    "debug/policy_emb": ("T", "B", "A", 2),
    "debug/lstm_out": ("T", "B", "L"),
    "debug/interaction_gate": ("L",),
    "debug/lstm_out_after_interaction": ("T", "B", "L"),
    "debug/meta_lstm_trajectory_input": ("T", "B", 27),
    "debug/meta_lstm_policy_emb": ("T", "B", "A", 2),
    "debug/meta_lstm_embed_in": ("T", "B", 29),
    "debug/meta_lstm_embed": ("T", "B", 16),
    "debug/meta_lstm_input": (16,),
    "debug/v_scalar": ("T1", "B"),
    "debug/target_v_scalar": ("T1", "B"),
    "debug/target_q_value": ("T1", "B", "A"),
    "debug/rho": tb,
  }
  spec = {k: (s, "f") for k, s in spec.items()}
  spec.update({f"debug/{k}": (tb, "b") for k in ("is_terminal", "loss_mask")})
  spec["meta/seq_step"] = ((), "i")
  return spec


REQUIRED = {**_inputs(), **_outputs()}
"""key -> (shape pattern, dtype kind) for every key FORMAT.md requires."""
OPTIONAL = _optional()
"""The same for the keys a file may hold (debug intermediates, sequence step)."""

_KIND_TEXT = {"i": "an integer dtype", "b": "bool", "f": "a floating dtype"}
_SYMBOL_TEXT = {"T1": "T+1", "T": "T", "B": "B", "A": "A", "Y": "Y", "N": "N", "H": "H", "L": "L"}


@dataclasses.dataclass(frozen=True)
class RuleDims:
  """The sizes a golden file must share with the rule being checked.

  Attributes:
    prediction_size: Y, the size of the y and z predictions.
    meta_hidden: H, the meta-LSTM's state size.
    lstm_hidden: L, the backward per-trajectory LSTM's size.
    source: who set these sizes, for messages ("the rule", "Disco103").
  """

  prediction_size: int
  meta_hidden: int
  lstm_hidden: int
  source: str


DISCO103 = RuleDims(600, 128, 256, "Disco103 (FORMAT.md)")
_META_LSTM = "lstm/~/meta_lstm/~unroll/lstm/linear"


def rule_dims(params) -> RuleDims:
  """The sizes of a Disco103-architecture rule, read off its parameters."""
  return RuleDims(
    prediction_size=int(params["lstm/mlp/~/linear_0"]["w"].shape[0]),
    meta_hidden=int(params[_META_LSTM]["w"].shape[1]) // 4,
    lstm_hidden=int(params["lstm/lstm/linear"]["w"].shape[1]) // 4,
    source="the rule",
  )


def _kind_ok(arr: np.ndarray, kind: str) -> bool:
  if kind == "i":
    return np.issubdtype(arr.dtype, np.integer)
  if kind == "b":
    return arr.dtype == np.bool_
  return np.issubdtype(arr.dtype, np.floating)


def _presence_and_kinds(data: dict[str, np.ndarray]) -> list[str]:
  """Missing required keys, then keys of the wrong dtype kind."""
  problems = [f"key {k} is missing (FORMAT.md requires it)" for k in REQUIRED if k not in data]
  for key, (_, kind) in {**REQUIRED, **OPTIONAL}.items():
    if key in data and not _kind_ok(data[key], kind):
      problems.append(f"{key} has dtype {data[key].dtype}, expected {_KIND_TEXT[kind]}")
  return problems


def _sizes(data: dict[str, np.ndarray], dims: RuleDims) -> tuple[dict, dict, list[str]]:
  """The size of each symbol, where it came from, and problems found on the way.

  T+1 and B come from ``actions`` [T+1, B], A from ``agent_out/logits``
  [T+1, B, A], N from the value of ``rule/num_bins``, Y, H and L from `dims`.
  """
  actions, logits = data["actions"].shape, data["agent_out/logits"].shape
  if len(actions) != 2 or actions[0] < 2 or actions[1] < 1:
    return {}, {}, [f"actions has shape {actions}, expected (T+1, B) with T >= 1 and B >= 1"]
  if len(logits) != 3 or logits[2] < 1:
    return {}, {}, [f"agent_out/logits has shape {logits}, expected (T+1, B, A) with A >= 1"]
  bins = data["rule/num_bins"]
  if bins.shape != () or int(bins) < 1:
    return {}, {}, [f"rule/num_bins is {bins.tolist()}, expected a positive scalar (N)"]
  sizes = {"T1": actions[0], "T": actions[0] - 1, "B": actions[1], "A": logits[2], "N": int(bins)}
  sizes.update(Y=dims.prediction_size, H=dims.meta_hidden, L=dims.lstm_hidden)
  where = {"T1": "actions", "T": "actions", "B": "actions", "A": "agent_out/logits"}
  where.update(N="rule/num_bins", Y=dims.source, H=dims.source, L=dims.source)
  return sizes, where, []


def _shape_problem(key: str, shape: tuple, pattern: tuple, sizes: dict, where: dict) -> str | None:
  """One line if `shape` does not match `pattern` under `sizes`, else None."""
  expected = tuple(sizes[p] if isinstance(p, str) else p for p in pattern)
  if tuple(shape) == expected:
    return None
  if not pattern:
    return f"{key} has shape {tuple(shape)}, expected a scalar (shape ())"
  names = ", ".join(_SYMBOL_TEXT[p] if isinstance(p, str) else str(p) for p in pattern)
  sources = list(dict.fromkeys(where[p] for p in pattern if isinstance(p, str)))
  src = f" as in {' and '.join(sources)}" if sources else ""
  return f"{key} has shape {tuple(shape)}, expected ({names}) = {expected}{src}"


def _value_problems(data: dict[str, np.ndarray], sizes: dict, dims: RuleDims) -> list[str]:
  """Recorded sizes and actions that disagree with the arrays or the rule."""
  problems = []
  for key, sym in (("meta/T", "T"), ("meta/B", "B"), ("meta/A", "A")):
    if int(data[key]) != sizes[sym]:
      problems.append(f"{key} is {int(data[key])}, but the arrays have {sym} = {sizes[sym]}")
  if int(data["rule/prediction_size"]) != dims.prediction_size:
    problems.append(
      f"rule/prediction_size is {int(data['rule/prediction_size'])}, expected "
      f"Y = {dims.prediction_size} as in {dims.source}"
    )
  actions = data["actions"]
  if actions.size and (actions.min() < 0 or actions.max() >= sizes["A"]):
    problems.append(
      f"actions holds values in [{actions.min()}, {actions.max()}], expected [0, A) = "
      f"[0, {sizes['A']}) as in agent_out/logits"
    )
  return problems


def golden_problems(data: dict[str, np.ndarray], dims: RuleDims = DISCO103) -> list[str]:
  """Everything wrong with a loaded golden file's layout, one line each.

  Args:
    data: key -> array, as read from the file.
    dims: the sizes of the rule the file is checked against.

  Returns:
    Problems in the order found (missing keys first); [] for a sound file.
  """
  problems = _presence_and_kinds(data)
  if problems:
    return problems
  sizes, where, problems = _sizes(data, dims)
  if problems:
    return problems
  for key, (pattern, _) in {**REQUIRED, **OPTIONAL}.items():
    if key in data:
      p = _shape_problem(key, data[key].shape, pattern, sizes, where)
      problems += [p] if p else []
  return problems or _value_problems(data, sizes, dims)
