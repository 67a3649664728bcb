"""Training curves read from run records: a run's (env steps, episodes, mean
return) per logged iteration, a common grid of env steps, and the
episode-weighted mean return in each window of that grid.
"""

import math

import numpy as np

from disco_eval import store
from disco_eval.analysis import collect
from disco_eval.errors import UserError

CURVE_POINTS = 40  # grid points of a training curve plot


def read_curve(run: collect.Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(env_steps, episodes, avg_return) of a run's metrics.csv."""
  rows = store.RunRecord(run.path).read_metrics()
  steps, episodes, returns = [], [], []
  for row in rows:
    step = row.get("env_steps")
    if not isinstance(step, (int, float)) or isinstance(step, bool):
      continue
    value = row.get("avg_return")
    count = row.get("episodes", 1)
    steps.append(float(step))
    returns.append(float(value) if isinstance(value, (int, float)) else math.nan)
    episodes.append(float(count) if isinstance(count, (int, float)) else 0.0)
  if not steps:
    raise UserError(f"run {run.path} has no readable training curve in {store.METRICS_FILE}")
  return np.array(steps), np.array(episodes), np.array(returns)


def curve_grid(common_steps: np.ndarray, points: int = CURVE_POINTS) -> np.ndarray:
  """About `points` env-step values spread evenly over `common_steps`."""
  steps = np.unique(common_steps)
  idx = np.unique(np.round(np.linspace(0, steps.size - 1, min(points, steps.size))).astype(int))
  return steps[idx]


def windowed_returns(
  steps: np.ndarray, episodes: np.ndarray, returns: np.ndarray, grid: np.ndarray
) -> np.ndarray:
  """Episode-weighted mean return in each window ``(grid[k-1], grid[k]]``.

  NaN where no episode ended in a window.
  """
  ok = np.isfinite(returns) & (episodes > 0)
  window = np.searchsorted(grid, steps, side="left")  # index of grid >= step
  inside = ok & (window < grid.size)
  sums = np.bincount(window[inside], weights=(returns * episodes)[inside], minlength=grid.size)
  counts = np.bincount(window[inside], weights=episodes[inside], minlength=grid.size)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)


def normalised_curves(
  group, manifest, all_runs, warn, points: int = CURVE_POINTS
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Per rule of `group` (a compare.GroupResult): (grid of env steps,
  ``[seeds, tasks, points]`` normalised windowed training returns), over the
  aggregate tasks and seeds; `all_runs`: the collection's runs; `warn`: called
  with each dropped curve or point; `manifest`: the suite's (normalisation)."""
  tasks = group.aggregate_tasks
  missing = [t for t in tasks if manifest is None or t not in manifest.normalization]
  if missing:
    raise UserError(
      f"cannot normalise training returns of task '{missing[0]}':"
      f" the manifest of suite '{group.key.suite}' has no "
      "normalisation for it"
    )
  runs = {(r.rule, r.task, r.seed): r for r in all_runs if r.key == group.key}
  out = {}
  for rule in (r for r in group.rules if r in group.matrices):
    per_run = {
      (t, s): read_curve(runs[(rule, t, s)]) for s in group.matrix_seeds[rule] for t in tasks
    }
    common = set.intersection(*(set(c[0]) for c in per_run.values()))
    if not common:
      warn(f"rule {rule}: its runs share no logged env_steps; no curve")
      continue
    grid = curve_grid(np.array(sorted(common)), points)
    values = np.empty((len(group.matrix_seeds[rule]), len(tasks), grid.size))
    for i, s in enumerate(group.matrix_seeds[rule]):
      for j, t in enumerate(tasks):
        norm = manifest.normalization[t]
        raw = windowed_returns(*per_run[(t, s)], grid)
        values[i, j] = (raw - norm["min"]) / (norm["max"] - norm["min"])
    keep = np.isfinite(values).all(axis=(0, 1))
    if not keep.all():
      warn(
        f"rule {rule}: {int((~keep).sum())} of {grid.size} curve points "
        "dropped (no training episode ended in that window for some run)"
      )
    if keep.any():
      out[rule] = (grid[keep], values[..., keep])
  if not out:
    raise UserError(
      "no training curve to plot: no rule has a window in which every run ended an episode"
    )
  return out
