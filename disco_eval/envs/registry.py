"""Environment backends by suite backend and task name."""

from typing import Any

from disco_eval.envs.catch import Catch
from disco_eval.errors import UserError


def make(suite: Any, task: str) -> Any:
  """An environment for `task` of `suite` (a SuiteManifest)."""
  if suite.backend == "jax" and task == "catch":
    return Catch()
  if suite.backend == "jax" and task.startswith("boxoban-"):
    from disco_eval.envs import sokoban
    return sokoban.make_task(suite, task)
  if suite.backend == "envpool" and suite.name == "procgen":
    from disco_eval.envs import procgen
    return procgen.ProcgenTask(task)
  raise UserError(f"no backend for task '{task}' of suite '{suite.name}' "
                  f"(backend '{suite.backend}') in this version of disco-eval")


def evaluate(suite: Any, task: str, protocol: Any, apply_fn: Any, params: Any,
             rng: Any) -> tuple[Any, dict[str, Any]] | None:
  """A protocol's own final evaluation, or None for the trainer's generic one.

  Returns the per-episode returns and extra summary fields. Sokoban protocols
  naming ``eval_levels`` play each level of that split exactly once.
  """
  split = protocol.get("eval_levels")
  if suite.backend == "jax" and task.startswith("boxoban-") and split:
    from disco_eval.envs import sokoban
    res = sokoban.evaluate_split(apply_fn, params, split, rng)
    return res["returns"], {"solve_rate": float(res["solve_rate"]),
                            "eval_levels": split}
  return None
