"""A finished run's final policy: the agent's parameters, kept for later use.

``policy.npz`` (one entry per parameter leaf, named by its index, and
``__leaves__``: a JSON list of the leaves' paths, shapes and dtypes) is
written when a run completes, before its summary; ``disco-eval evaluate``
and ``render`` read it. ``rule_state.npz`` (same layout) holds the rule's own
state at the same moment (a discovered rule's meta-RNN state and target
network, a baseline's statistics): ``disco-eval analyze`` reads both, so that
it looks at the end of training (a run's checkpoints are removed once it is
complete). Runs recorded before these files existed have none: their final
policy is gone (train them again with ``disco-eval reproduce``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from disco_eval.errors import UserError
from disco_eval.store.atomic import write_atomic

POLICY_FILE = "policy.npz"
RULE_STATE_FILE = "rule_state.npz"
_LEAVES = "__leaves__"


def _paths(tree: Any) -> tuple[list[str], list[Any], Any]:
  import jax

  flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
  return [jax.tree_util.keystr(p) for p, _ in flat], [x for _, x in flat], treedef


def save_policy(run_path: Path, params: Any, rule_state: Any = None) -> None:
  """Writes `params` (a pytree of arrays) as the run's ``policy.npz`` and, when
  given, `rule_state` as its ``rule_state.npz``."""
  if rule_state is not None:
    _save_tree(Path(run_path) / RULE_STATE_FILE, rule_state)
  _save_tree(Path(run_path) / POLICY_FILE, params)


def _save_tree(path: Path, tree: Any) -> None:
  paths, leaves, _ = _paths(tree)
  arrays = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
  meta = [
    {"path": p, "shape": list(a.shape), "dtype": str(a.dtype)}
    for p, a in zip(paths, arrays.values())
  ]
  buf = io.BytesIO()
  np.savez(buf, **arrays, **{_LEAVES: np.array(json.dumps(meta))})
  write_atomic(path, buf.getvalue())


def load_policy(run_path: Path, template: Any) -> Any:
  """The run's final parameters, with `template`'s structure (a pytree of
  arrays or shape structs); a one-line UserError when there are none or
  they do not fit the template."""
  return _load_tree(Path(run_path) / POLICY_FILE, template, "the agent")


def load_rule_state(run_path: Path, template: Any) -> Any:
  """The rule's state at the end of the run, with `template`'s structure; a
  one-line UserError when there is none or it does not fit."""
  return _load_tree(Path(run_path) / RULE_STATE_FILE, template, "the rule")


def has_final_state(run_path: Path) -> bool:
  """Whether the run kept its final parameters and rule state."""
  return all((Path(run_path) / f).is_file() for f in (POLICY_FILE, RULE_STATE_FILE))


def _load_tree(path: Path, template: Any, what: str) -> Any:
  import jax

  if not path.is_file():
    raise UserError(
      f"run {path.parent} has no {path.name} (runs recorded before disco-eval kept final "
      "policies have none); train it again with `disco-eval reproduce`"
    )
  paths, leaves, treedef = _paths(template)
  try:
    with np.load(path) as npz:
      meta = json.loads(str(npz[_LEAVES]))
      arrays = [npz[f"leaf_{i:05d}"] for i in range(len(meta))]
  except (OSError, ValueError, KeyError) as e:
    raise UserError(f"{path} is unreadable ({e}); train the run again") from None
  found = [(m["path"], tuple(m["shape"])) for m in meta]
  wanted = [(p, tuple(np.shape(x))) for p, x in zip(paths, leaves)]
  if found != wanted:
    raise UserError(
      f"{path} does not fit {what} its config.json builds (other parameters); "
      "was the run made by another version of disco-eval?"
    )
  return jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(a) for a in arrays])
