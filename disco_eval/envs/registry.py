"""Environment backends by suite backend and task name."""

from typing import Any

from disco_eval.envs.catch import Catch
from disco_eval.errors import UserError


def make(suite: Any, task: str) -> Any:
  """An environment for `task` of `suite` (a SuiteManifest)."""
  if suite.backend == "jax" and task == "catch":
    return Catch()
  raise UserError(f"no backend for task '{task}' of suite '{suite.name}' "
                  f"(backend '{suite.backend}') in this version of disco-eval")
