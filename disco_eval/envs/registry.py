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
    _require_envpool()
    from disco_eval.envs import procgen
    return procgen.ProcgenTask(task)
  if suite.backend == "crafter":
    _require("crafter", "pip install crafter==1.8.3")
    _require("numba", "pip install numba (crafter's world generation is ~20x slower without it)")
    from disco_eval.envs import crafter
    return crafter.CrafterTask(task, int(suite.raw.get("max_episode_steps", 10_000)))
  if suite.backend == "nle":
    _require("nle", "pip install nle==1.3.0")
    from disco_eval.envs import nethack
    return nethack.NetHackTask(task)
  raise UserError(f"no backend for task '{task}' of suite '{suite.name}' "
                  f"(backend '{suite.backend}') in this version of disco-eval")


def _require(module: str, fix: str) -> None:
  """UserError naming the fix when `module` cannot be imported."""
  import importlib
  try:
    importlib.import_module(module)
  except ImportError as e:
    raise UserError(f"cannot import {module} ({e}); {fix}") from None


def _require_envpool() -> None:
  try:
    import envpool  # noqa: F401
  except (ImportError, OSError) as e:
    if "Qt5" in str(e) or "libQt" in str(e):
      raise UserError(f"envpool's ProcGen needs the Qt5 runtime ({e}); install it with "
                      "`apt-get install libqt5gui5`") from None
    raise UserError(f"cannot import envpool ({e}); pip install envpool==1.2.5") from None


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
