"""A finished run's final policy: the agent's parameters, kept for later use.

``policy.npz`` (one entry per parameter leaf, named by its index, and
``__leaves__``: a JSON list of the leaves' paths, shapes and dtypes) is
written when a run completes, before its summary; ``disco-eval evaluate``
and ``render`` read it. Runs recorded before it existed have none: their
final policy is gone (train them again with ``disco-eval reproduce``).
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
_LEAVES = "__leaves__"


def _paths(tree: Any) -> tuple[list[str], list[Any], Any]:
  import jax

  flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
  return [jax.tree_util.keystr(p) for p, _ in flat], [x for _, x in flat], treedef


def save_policy(run_path: Path, params: Any) -> None:
  """Writes `params` (a pytree of arrays) as the run's ``policy.npz``."""
  paths, leaves, _ = _paths(params)
  arrays = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
  meta = [
    {"path": p, "shape": list(a.shape), "dtype": str(a.dtype)}
    for p, a in zip(paths, arrays.values())
  ]
  buf = io.BytesIO()
  np.savez(buf, **arrays, **{_LEAVES: np.array(json.dumps(meta))})
  write_atomic(Path(run_path) / POLICY_FILE, buf.getvalue())


def load_policy(run_path: Path, template: Any) -> Any:
  """The run's final parameters, with `template`'s structure (a pytree of
  arrays or shape structs); a one-line UserError when there are none or
  they do not fit the template."""
  import jax

  path = Path(run_path) / POLICY_FILE
  if not path.is_file():
    raise UserError(
      f"run {run_path} has no {POLICY_FILE} (runs recorded before disco-eval kept final "
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
      f"{path} does not fit the agent its config.json builds (other parameters); "
      "was the run made by another version of disco-eval?"
    )
  return jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(a) for a in arrays])
