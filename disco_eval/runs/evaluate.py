"""``disco-eval evaluate``: a finished run's final policy, evaluated again.

The policy is the run's ``policy.npz`` (:mod:`disco_eval.store.policy`), the
agent and rule are rebuilt from its config.json
(:mod:`disco_eval.runs.revisit`). ``--episodes N`` fresh episodes are played
with the rule's evaluation policy, by the trainer's own evaluation (pure-JAX
tasks: N environments in parallel; host tasks: the protocol's evaluation
levels, ``eval_envs`` at a time), from a key of their own (not the training's
final evaluation's). The figures are written to
``<run>/evaluations/<N>-episodes.json``; summary.json is never touched.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np

from disco_eval.errors import UserError
from disco_eval.runs.parts import build_parts
from disco_eval.runs.revisit import Rebuilt, rebuild, run_status
from disco_eval.store import RunRecord, versioned, versions, write_json_atomic
from disco_eval.store.atomic import make_dirs, read_json
from disco_eval.store.policy import load_policy
from disco_eval.train.trainers import make_trainer

EVALUATIONS_DIR = "evaluations"
EVAL_KEY_BASE = 30_000  # the training's final evaluation uses 10_000 + seed


class Loaded:
  """A finished run rebuilt with its final policy: `rebuilt`, `env`, `agent`,
  `rule` (the rule object), `trainer`, `params`, and `note` (why the config
  this code makes of it differs from the recorded one, or None)."""

  def __init__(self, rebuilt: Rebuilt, env, agent, rule, trainer, params):
    self.rebuilt, self.env, self.agent, self.rule = rebuilt, env, agent, rule
    self.trainer, self.params, self.note = trainer, params, rebuilt.data


@contextlib.contextmanager
def loaded_run(run: Path) -> Iterator[Loaded]:
  """The run in folder `run` with its final policy (a one-line UserError for
  a run that did not complete or kept no policy); its trainer is closed on
  exit."""
  run = Path(run)
  rebuilt = rebuild(run, run)  # (no sweep is run: nothing is written there)
  status = run_status(run)
  if status != "complete":
    raise UserError(f"run {run} is {status or 'not started'}: only a complete run has a policy")
  cfg = rebuilt.run_config
  env, rule_obj, agent, optimizer = build_parts(
    rebuilt.suite, cfg.task, rebuilt.rule, cfg.settings, cfg.train
  )
  trainer = make_trainer(env, agent, rule_obj, optimizer, cfg.train, cfg.protocol)
  try:
    template = jax.eval_shape(lambda: trainer.init(0)).params
    params = load_policy(run, template)
    yield Loaded(rebuilt, env, agent, rule_obj, trainer, params)
  finally:
    trainer.close()


def _figures(returns: np.ndarray, metric: str) -> dict[str, Any]:
  figures = {
    "episodes": int(returns.shape[0]),
    "mean_return": float(np.mean(returns)),
    "median_return": float(np.median(returns)),
    "return_std": float(np.std(returns)),
    "return_min": float(np.min(returns)),
    "return_max": float(np.max(returns)),
  }
  figures["score"] = figures["median_return" if metric == "median_score" else "mean_return"]
  return figures


def evaluate_run(run: Path, episodes: int | None = None) -> tuple[dict[str, Any], Path, str | None]:
  """Evaluates the run's final policy on `episodes` fresh episodes (default:
  the protocol's ``eval_episodes``); (the record written, its path, a note
  when the run's config differs from what this code makes of it)."""
  if episodes is not None and episodes < 1:
    raise UserError(f"--episodes must be 1 or more, got {episodes}")
  run = Path(run)
  with loaded_run(run) as loaded:
    cfg = loaded.rebuilt.run_config
    n = int(episodes or cfg.protocol.get("eval_episodes", 100))
    key = jax.random.PRNGKey(EVAL_KEY_BASE + loaded.rebuilt.seed)
    returns, extra = loaded.trainer.evaluate(loaded.params, key, n)
    returns = np.asarray(returns, np.float64)
    note = loaded.note
  metric = str(cfg.protocol.get("metric", "return"))
  try:
    summary = read_json(run / "summary.json")
  except (OSError, ValueError):
    summary = {}
  doc = {
    **_figures(returns, metric),
    **{k: v for k, v in extra.items() if np.ndim(v) == 0},
    "metric": metric,
    "env_steps": int(summary.get("env_steps", cfg.env_steps)),
    "training_score": summary.get("score"),
    "key": f"PRNGKey({EVAL_KEY_BASE} + seed)",
    "policy": "the rule's evaluation policy (sampling), the run's policy.npz",
    "config_note": note,
    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    "versions": versions(),
  }
  path = run / EVALUATIONS_DIR / f"{n}-episodes.json"
  with RunRecord(run).lock():
    make_dirs(path.parent, run)  # never through a link
    write_json_atomic(path, versioned(doc))
  return doc, path, note
