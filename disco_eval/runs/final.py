"""A run's final figures: its score under the protocol, and its summary."""

import math
from typing import Any

import jax
import numpy as np

from disco_eval.envs import registry as envs
from disco_eval.errors import UserError
from disco_eval.rules.base import acting_apply
from disco_eval.runs.context import UnitContext
from disco_eval.train.seed_group import params_finite


def _score_from_training(trainer, suite, task: str, protocol, rows: list[dict]) -> dict[str, Any]:
  """The figures a task computes from the training episodes' metrics rows."""
  env = trainer.task
  if not env.scores_training_episodes:
    raise UserError(
      f"protocol '{protocol.name}' scores training episodes, which the "
      f"'{suite.backend}' backend of task '{task}' does not record"
    )
  figures = dict(env.score_from_training(rows, protocol))
  figures["score"] = float(figures["score"])
  figures["score_from"] = "training episodes"
  return figures


def final_figures(
  trainer, suite, task: str, protocol, params, key, rows: list[dict]
) -> dict[str, Any]:
  """A run's final score and the figures reported beside it.

  * Protocols scored on training episodes (``score_from`` starting with
    "training episodes", e.g. Crafter's) ask the task to compute them from
    the metrics rows; there is no separate evaluation.
  * Otherwise ``eval_episodes`` fresh episodes of the final policy (or the
    task's own evaluation, e.g. Sokoban's level split); the score is their
    mean return, or their median for ``metric = "median_score"`` (NetHack's
    ``challenge``), with the mean beside it as ``mean_score``; for
    ``metric = "mean_score"`` (NetHack's ``disco``) the mean, with the
    median beside it as ``median_score``; for ``metric = "solve_rate"``
    (Sokoban's ``unfiltered-test``) the task's solve rate, with the mean
    return beside it as ``mean_return``.
  """
  if protocol.typed.score_from.startswith("training episodes"):
    return _score_from_training(trainer, suite, task, protocol, rows)
  apply_fn = acting_apply(trainer.rule, trainer.agent.apply)
  own = envs.evaluate(suite, task, protocol, apply_fn, params, key)
  if own is not None:
    returns, extra = own
  else:
    returns, extra = trainer.evaluate(params, key, protocol.typed.eval_episodes)
  returns = np.asarray(returns, np.float64)
  figures = {
    "eval_episodes": int(returns.shape[0]),
    "eval_return_std": float(np.std(returns)),
    **extra,
  }
  metric = protocol.typed.metric
  if metric == "median_score":
    figures["score"] = float(np.median(returns))
    figures["mean_score"] = float(np.mean(returns))
  elif metric == "solve_rate" and "solve_rate" in figures:
    figures["score"] = float(figures["solve_rate"])
    figures["mean_return"] = float(np.mean(returns))
  elif metric == "mean_score":
    figures["score"] = float(np.mean(returns))
    figures["median_score"] = float(np.median(returns))
  else:
    figures["score"] = float(np.mean(returns))
  return figures


def run_summary(
  ctx: UnitContext, seed: int, params, rows: list[dict], wall: float, seeds_in_program: int
) -> dict[str, Any]:
  """The summary (``summary.json``) of a finished run of `seed` of the unit
  `ctx`: its final figures (from its final `params` and metrics `rows`),
  normalised score and the mean return of the last metrics rows; `wall`: the
  training's wall seconds, `seeds_in_program`: how many seeds shared its
  program.

  When the evaluation of non-finite `params` (a diverged run) fails, the
  score is NaN (written as null) and the error is kept as ``eval_error``.
  """
  suite, task, protocol, rule = ctx.suite, ctx.task, ctx.protocol, ctx.rule
  window = protocol.typed.final_window
  tail = [
    r["avg_return"]
    for r in rows[-window:]
    if r["avg_return"] is not None and not math.isnan(r["avg_return"])
  ]
  try:
    figures = final_figures(
      ctx.trainer, suite, task, protocol, params, jax.random.PRNGKey(10_000 + seed), rows
    )
  except Exception as e:  # noqa: BLE001 - only a diverged run's evaluation may fail
    if params_finite(params):
      raise
    figures = {"score": float("nan"), "eval_error": f"{type(e).__name__}: {e}"}
  return {
    "suite": suite.name,
    "task": task,
    "rule": rule.label,
    "seed": seed,
    "protocol": protocol.name,
    "env_steps": ctx.env_steps,
    **figures,
    "normalized_score": suite.normalize(task, figures["score"], protocol.name),
    "metric": protocol.typed.metric,
    "final_window_iterations": window,
    "final_window_return": float(np.mean(tail)) if tail else float("nan"),
    "train_wall_s": wall,
    "seeds_in_program": seeds_in_program,
    "rule_sha256": rule.sha256,
  }
