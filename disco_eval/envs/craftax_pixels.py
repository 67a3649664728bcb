"""The pixel task of Craftax-Classic (``craftax-classic-pixels``).

The registry's final evaluation receives no task name, so the pixel task has
its own family module: the environment and evaluation of
:mod:`disco_eval.envs.craftax` with pixel observations.
"""

from typing import Any, Callable

from disco_eval.envs import craftax
from disco_eval.envs.gymnax_env import GymnaxTask


def make_task(suite: Any, task: str) -> GymnaxTask:
  """The registry's factory (:func:`disco_eval.envs.craftax.make_task`)."""
  return craftax.make_task(suite, task)


def evaluate_protocol(protocol: Any, apply_fn: Callable, params: Any, rng: Any):
  """:func:`disco_eval.envs.craftax.evaluate_protocol` on pixel observations."""
  return craftax.evaluate_protocol(protocol, apply_fn, params, rng, observation="pixels")
