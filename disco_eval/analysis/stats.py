"""Aggregate metrics and their stratified-bootstrap intervals, rliable-style.

Every function here is a pure function of numpy arrays. Score matrices follow
rliable's convention: ``scores`` has shape ``[num_runs, num_tasks]`` (runs are
seeds, entries are normalised scores), and a score dictionary maps an update
rule's name to such a matrix.

The point estimates are defined exactly as in ``rliable.metrics`` (1.2.0):

* ``iqm``: the 25% trimmed mean of all ``num_runs * num_tasks`` scores
  (``scipy.stats.trim_mean(scores, 0.25, axis=None)``).
* ``median``: the median over tasks of the per-task mean over runs.
* ``mean``: the mean over tasks of the per-task mean over runs.
* ``optimality_gap``: ``gamma - mean(minimum(scores, gamma))`` over all scores.
* ``probability_of_improvement``: per task, the Mann-Whitney U statistic of
  ``x > y`` divided by ``n * m`` (ties count one half), averaged over tasks.

The metrics are batched: they take ``[..., num_runs, num_tasks]`` and return
``[...]``, so a bootstrap evaluates all replicates with one call.

Intervals use the stratified bootstrap of :mod:`disco_eval.analysis.bootstrap`
(rliable's ``StratifiedBootstrap`` with ``task_bootstrap=False``; percentile
intervals). Every interval takes an integer ``seed`` and draws from
``np.random.default_rng(seed)``; the global numpy generator is never touched.
Each rule is resampled from a fresh generator seeded with ``seed``, so a rule's
interval depends only on its own scores, ``reps``, ``confidence`` and
``seed``, not on the other rules or their order. The chunk size of the
bootstrap never changes a result.

Per-task means over seeds get a Student-t interval instead
(:func:`t_interval`).

Missing values: any NaN (or infinite) score raises ``ValueError``. Callers
must drop failed runs explicitly, and say so, before computing statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from disco_eval.analysis import bootstrap as bs

Metric = Callable[[np.ndarray], np.ndarray]
"""A batched aggregate metric: ``[..., num_runs, num_tasks] -> [...]``."""

DEFAULT_REPS = 50_000
DEFAULT_PROFILE_REPS = 2_000
DEFAULT_CONFIDENCE = bs.DEFAULT_CONFIDENCE


class Interval(NamedTuple):
  """A point estimate with a percentile bootstrap confidence interval."""

  point: float
  lo: float
  hi: float


class Band(NamedTuple):
  """Point estimates and confidence bounds along a curve.

  Each field has shape ``[num_points]`` (evaluation points or thresholds).
  """

  point: np.ndarray
  lo: np.ndarray
  hi: np.ndarray


# -------------------------------------------------------------------- metrics


def iqm(scores: np.ndarray) -> np.ndarray:
  """Interquartile mean: the 25% trimmed mean over all runs and tasks.

  Matches ``scipy.stats.trim_mean(scores, 0.25, axis=None)``: with
  ``n = num_runs * num_tasks`` scores, the ``int(0.25 * n)`` smallest and
  largest are dropped and the rest averaged.

  Args:
    scores: ``[..., num_runs, num_tasks]``.

  Returns:
    ``[...]``.
  """
  scores = np.asarray(scores, dtype=np.float64)
  flat = scores.reshape(*scores.shape[:-2], -1)
  n = flat.shape[-1]
  cut = int(0.25 * n)
  if cut == 0:
    return flat.mean(axis=-1)
  ordered = np.sort(flat, axis=-1)
  return ordered[..., cut : n - cut].mean(axis=-1)


def median(scores: np.ndarray) -> np.ndarray:
  """Median over tasks of the per-task mean score over runs.

  Args:
    scores: ``[..., num_runs, num_tasks]``.

  Returns:
    ``[...]``.
  """
  return np.median(np.mean(scores, axis=-2), axis=-1)


def mean(scores: np.ndarray) -> np.ndarray:
  """Mean over tasks of the per-task mean score over runs.

  Args:
    scores: ``[..., num_runs, num_tasks]``.

  Returns:
    ``[...]``.
  """
  return np.mean(np.mean(scores, axis=-2), axis=-1)


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
  """Optimality gap: ``gamma - mean(minimum(scores, gamma))`` over all scores.

  Args:
    scores: ``[..., num_runs, num_tasks]``.
    gamma: threshold; scores above it count as ``gamma``.

  Returns:
    ``[...]``.
  """
  return gamma - np.mean(np.minimum(scores, gamma), axis=(-2, -1))


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> np.ndarray:
  """Average probability that a run of X beats a run of Y on the same task.

  For each task, ``P(X > Y) = (#{x > y} + 0.5 * #{x == y}) / (n * m)`` over all
  ``n * m`` pairs of runs (the Mann-Whitney U statistic of X over Y divided by
  ``n * m``); the result is the mean over tasks.

  Args:
    scores_x: ``[..., n, num_tasks]``.
    scores_y: ``[..., m, num_tasks]``; leading dims broadcast with
      ``scores_x``'s.

  Returns:
    ``[...]``.
  """
  x = np.asarray(scores_x, dtype=np.float64)[..., :, None, :]
  y = np.asarray(scores_y, dtype=np.float64)[..., None, :, :]
  wins = np.count_nonzero(x > y, axis=(-3, -2))
  ties = np.count_nonzero(x == y, axis=(-3, -2))
  pairs = x.shape[-3] * y.shape[-2]
  per_task = (wins + 0.5 * ties) / pairs
  return per_task.mean(axis=-1)


def run_score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
  """Fraction of all (run, task) scores strictly above each threshold.

  rliable's score distribution (``run_score_deviation``), the default
  performance profile.

  Args:
    scores: ``[..., num_runs, num_tasks]``.
    taus: ``[num_taus]`` thresholds.

  Returns:
    ``[..., num_taus]``.
  """
  taus = np.asarray(taus, dtype=np.float64)
  above = np.asarray(scores)[..., None] > taus
  return above.mean(axis=(-3, -2))


METRICS: dict[str, Metric] = {
  "iqm": iqm,
  "median": median,
  "mean": mean,
  "og": optimality_gap,
}
"""Metrics selectable by name (e.g. from the command line)."""


def metric_names() -> tuple[str, ...]:
  """Names accepted by :func:`get_metric`, in display order."""
  return tuple(METRICS)


def get_metric(name: str) -> Metric:
  """Returns the batched metric called ``name`` (see :data:`METRICS`)."""
  try:
    return METRICS[name]
  except KeyError:
    raise ValueError(f"unknown metric {name!r}; choose from {', '.join(metric_names())}") from None


def resolve_metrics(metrics: Mapping[str, Metric] | Sequence[str] | str) -> dict[str, Metric]:
  """Turns metric names, or a name -> metric mapping, into a dict.

  Args:
    metrics: a name from :func:`metric_names`, a sequence of such names, or a
      mapping of names to batched metrics (``[..., runs, tasks] -> [...]``).

  Returns:
    An ordered ``{name: metric}`` dict.
  """
  if isinstance(metrics, str):
    metrics = [metrics]
  if isinstance(metrics, Mapping):
    resolved = dict(metrics)
    for name, fn in resolved.items():
      if not callable(fn):
        raise ValueError(f"metric {name!r} is not callable")
  else:
    resolved = {name: get_metric(name) for name in metrics}
  if not resolved:
    raise ValueError("no metrics selected")
  return resolved


# ------------------------------------------------------------------ intervals


def _stack_metrics(metrics: Mapping[str, Metric]) -> Callable[[np.ndarray], np.ndarray]:
  """``[..., runs, tasks] -> [..., num_metrics]`` evaluating all metrics."""
  fns = tuple(metrics.values())

  def stacked(scores: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(fn(scores), dtype=np.float64) for fn in fns], axis=-1)

  return stacked


def interval_estimates(
  score_dict: Mapping[str, np.ndarray],
  metrics: Mapping[str, Metric] | Sequence[str] = ("iqm", "median", "mean", "og"),
  reps: int = DEFAULT_REPS,
  confidence: float = DEFAULT_CONFIDENCE,
  seed: int = 0,
  chunk_size: int | None = None,
) -> dict[str, dict[str, Interval]]:
  """Point estimates and stratified-bootstrap percentile CIs per rule.

  All metrics of a rule are evaluated on the same resamples. Equivalent in
  distribution to ``rliable.library.get_interval_estimates`` with
  ``method='percentile'`` and ``task_bootstrap=False``.

  Args:
    score_dict: rule name -> scores ``[num_runs, num_tasks]``.
    metrics: metric names (see :func:`metric_names`) or name -> batched metric.
    reps: bootstrap replicates.
    confidence: interval coverage.
    seed: seed for ``np.random.default_rng``; each rule starts from it afresh.
    chunk_size: replicates per chunk (memory only; results do not change).

  Returns:
    ``result[rule][metric] = Interval(point, lo, hi)``.
  """
  fns = resolve_metrics(metrics)
  reps = bs.check_reps(reps)
  bs.check_confidence(confidence)
  stacked = _stack_metrics(fns)
  results: dict[str, dict[str, Interval]] = {}
  for rule, raw in score_dict.items():
    scores = bs.check_scores(raw, name=str(rule))
    point, replicates = bs.bootstrap(
      scores, stacked, reps, np.random.default_rng(seed), chunk_size=chunk_size
    )
    if point.shape != (len(fns),):
      raise ValueError("each metric must map [runs, tasks] to a scalar")
    lo, hi = bs.percentile_interval(replicates, confidence)
    results[rule] = {
      name: Interval(float(point[i]), float(lo[i]), float(hi[i])) for i, name in enumerate(fns)
    }
  return results


def probability_of_improvement_interval(
  scores_x: np.ndarray,
  scores_y: np.ndarray,
  reps: int = DEFAULT_REPS,
  confidence: float = DEFAULT_CONFIDENCE,
  seed: int = 0,
  chunk_size: int | None = None,
) -> Interval:
  """P(X > Y) with a stratified-bootstrap percentile CI.

  X and Y are resampled independently, each within task (rliable's
  ``StratifiedIndependentBootstrap``), so they may have different numbers of
  runs. X's and Y's indices come from two independent child generators of
  ``np.random.default_rng(seed)``.

  Args:
    scores_x: ``[n, num_tasks]`` scores of rule X.
    scores_y: ``[m, num_tasks]`` scores of rule Y (same tasks, same order).
    reps: bootstrap replicates.
    confidence: interval coverage.
    seed: seed for ``np.random.default_rng``.
    chunk_size: replicates per chunk (memory only; results do not change).

  Returns:
    ``Interval(point, lo, hi)``.
  """
  x = bs.check_scores(scores_x, name="scores_x")
  y = bs.check_scores(scores_y, name="scores_y")
  if x.shape[1] != y.shape[1]:
    raise ValueError(
      f"scores_x and scores_y must cover the same tasks: {x.shape[1]} vs {y.shape[1]} tasks"
    )
  reps = bs.check_reps(reps)
  bs.check_confidence(confidence)
  rng_x, rng_y = np.random.default_rng(seed).spawn(2)
  n, m, tasks = x.shape[0], y.shape[0], x.shape[1]
  per_rep = (n * m + n + m) * tasks
  out = []
  for c in bs.chunk_sizes(reps, per_rep, chunk_size):
    xs = bs.stratified_resample(x, bs.draw_run_indices(rng_x, c, x.shape))
    ys = bs.stratified_resample(y, bs.draw_run_indices(rng_y, c, y.shape))
    out.append(probability_of_improvement(xs, ys))
  lo, hi = bs.percentile_interval(np.concatenate(out), confidence)
  return Interval(float(probability_of_improvement(x, y)), float(lo), float(hi))


def performance_profile(
  score_dict: Mapping[str, np.ndarray],
  taus: np.ndarray | Sequence[float],
  reps: int = DEFAULT_PROFILE_REPS,
  confidence: float = DEFAULT_CONFIDENCE,
  seed: int = 0,
  chunk_size: int | None = None,
) -> dict[str, Band]:
  """Run-score distributions with stratified-bootstrap percentile bands.

  Equivalent in distribution to ``rliable.library.create_performance_profile``
  with its defaults (score distribution over all runs, percentile method).

  Args:
    score_dict: rule name -> scores ``[num_runs, num_tasks]``.
    taus: ``[num_taus]`` thresholds.
    reps: bootstrap replicates (rliable's default for profiles is 2,000).
    confidence: band coverage.
    seed: seed for ``np.random.default_rng``; each rule starts from it afresh.
    chunk_size: replicates per chunk (memory only; results do not change).

  Returns:
    ``result[rule] = Band(point, lo, hi)``, each ``[num_taus]``: the fraction
    of scores strictly above each tau.
  """
  taus = np.asarray(taus, dtype=np.float64)
  if taus.ndim != 1 or taus.size == 0 or not np.isfinite(taus).all():
    raise ValueError("taus must be a non-empty 1-D array of finite values")
  reps = bs.check_reps(reps)
  bs.check_confidence(confidence)

  def profile(scores: np.ndarray) -> np.ndarray:
    return run_score_distribution(scores, taus)

  results: dict[str, Band] = {}
  for rule, raw in score_dict.items():
    scores = bs.check_scores(raw, name=str(rule))
    point, replicates = bs.bootstrap(
      scores,
      profile,
      reps,
      np.random.default_rng(seed),
      elements_per_rep=scores.size * taus.size,
      chunk_size=chunk_size,
    )
    lo, hi = bs.percentile_interval(replicates, confidence)
    results[rule] = Band(point, lo, hi)
  return results


def sample_efficiency_curves(
  scores_over_time: Mapping[str, np.ndarray],
  metric: str | Metric = "iqm",
  reps: int = DEFAULT_REPS,
  confidence: float = DEFAULT_CONFIDENCE,
  seed: int = 0,
  chunk_size: int | None = None,
) -> dict[str, Band]:
  """An aggregate metric at each evaluation point, with percentile CIs.

  As in rliable's sample-efficiency curves (``get_interval_estimates`` on a
  ``[runs, tasks, points]`` array), every (run, task, point) entry draws its
  run index independently, so each point gets its own stratified bootstrap.

  Args:
    scores_over_time: rule name -> scores ``[num_runs, num_tasks, num_points]``.
    metric: a name from :func:`metric_names` or a batched metric.
    reps: bootstrap replicates.
    confidence: interval coverage.
    seed: seed for ``np.random.default_rng``; each rule starts from it afresh.
    chunk_size: replicates per chunk (memory only; results do not change).

  Returns:
    ``result[rule] = Band(point, lo, hi)``, each ``[num_points]``.
  """
  fn = get_metric(metric) if isinstance(metric, str) else metric
  reps = bs.check_reps(reps)
  bs.check_confidence(confidence)

  def curve(scores: np.ndarray) -> np.ndarray:
    # [..., runs, tasks, points] -> [..., points, runs, tasks] -> [..., points]
    return np.asarray(fn(np.moveaxis(scores, -1, -3)), dtype=np.float64)

  results: dict[str, Band] = {}
  for rule, raw in scores_over_time.items():
    scores = bs.check_scores(raw, name=str(rule), ndim=3)
    point, replicates = bs.bootstrap(
      scores, curve, reps, np.random.default_rng(seed), chunk_size=chunk_size
    )
    if point.shape != (scores.shape[-1],):
      raise ValueError("the metric must map [points, runs, tasks] to [points]")
    lo, hi = bs.percentile_interval(replicates, confidence)
    results[rule] = Band(point, lo, hi)
  return results


# ------------------------------------------------ per-task intervals over seeds


class Estimate(NamedTuple):
  """A mean over seeds with a confidence interval (NaN bounds if n < 2)."""

  mean: float
  lo: float
  hi: float


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Estimate:
  """Mean of `values` with a Student-t interval (n - 1 degrees of freedom).

  One value gives NaN bounds; identical values give a zero-width interval.
  """
  from scipy import stats as scipy_stats

  x = np.asarray(values, dtype=np.float64)
  mean = float(x.mean())
  if x.size < 2:
    return Estimate(mean, math.nan, math.nan)
  half = float(
    scipy_stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
  )
  return Estimate(mean, mean - half, mean + half)
