"""Property-based tests (hypothesis) of disco_eval.analysis.stats and .bootstrap.

What holds, and how exactly:

* Run order. The point estimates do not depend on the order of the runs, up
  to floating-point summation order; IQM bit for bit once it trims (4 or more
  scores: it averages the sorted middle; below 4 it is the plain mean, whose
  last bit can depend on the order), P(X > Y) bit for bit (it counts). The stratified bootstrap
  is *not* order-blind with a fixed seed: every resampled entry draws a run
  *index*, so permuting the rows by ``perm`` turns a resample of ``x[perm]``
  into the resample of ``x`` with indices ``perm[idx]`` (tested exactly). The
  same seed therefore gives a different, equally distributed set of
  replicates, and the intervals of a permuted matrix agree with the original
  ones only up to bootstrap noise (tested against a Dvoretzky-Kiefer-Wolfowitz
  band that fails with probability below 1e-6 per example).
* Bounds. IQM, mean and median lie between the smallest and largest score,
  and so do their interval ends (every replicate aggregates data values); the
  optimality gap lies in ``[gamma - min(max, gamma), gamma - min(min, gamma)]``;
  ``lo <= hi`` always. ``lo <= point <= hi`` is *not* guaranteed: a
  percentile interval is two quantiles of the replicates, which can both lie
  on one side of the point estimate (an exact counterexample for the median
  is below). P(X > Y) and its interval lie in [0, 1], and
  P(X > Y) + P(Y > X) = 1 (ties count one half each way).
* Seeds. The same seed gives bit-equal intervals (the same numpy program).
* Affine maps. IQM, mean and median commute with ``x -> a * x + b`` (any
  real ``a``); so do their intervals with the same seed, the ends swapping
  when ``a < 0``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from disco_eval.analysis import bootstrap, stats

# No deadline and no too-slow health check: a loaded machine must not fail these.
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REPS = 400
CENTRAL = ("iqm", "mean", "median")  # aggregates of the scores themselves

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
shapes = st.tuples(st.integers(1, 6), st.integers(1, 4))  # (runs, tasks)
matrices = shapes.flatmap(lambda s: hnp.arrays(np.float64, s, elements=finite))
seeds = st.integers(0, 2**32 - 1)


@st.composite
def permuted(draw, min_runs: int = 1):
  """A score matrix [runs, tasks] and a permutation of its runs."""
  runs, tasks = draw(st.integers(min_runs, 6)), draw(st.integers(1, 4))
  x = draw(hnp.arrays(np.float64, (runs, tasks), elements=finite))
  perm = np.array(draw(st.permutations(range(runs))), dtype=np.intp)
  return x, perm


def _tol(x: np.ndarray) -> float:
  """Allowed floating-point error of an average of `x` [runs, tasks]."""
  return 1e-12 * (1.0 + float(np.max(np.abs(x)))) * x.size


# ------------------------------------------------------------------ run order


@SETTINGS
@given(permuted())
def test_point_estimates_do_not_depend_on_run_order(case):
  x, perm = case
  if x.size >= 4:  # it trims, so it sorts: the same sorted scores, bit for bit
    assert stats.iqm(x[perm]) == stats.iqm(x)
  for name in stats.metric_names():
    fn = stats.get_metric(name)
    assert abs(fn(x[perm]) - fn(x)) <= _tol(x), name


@SETTINGS
@given(permuted(), seeds)
def test_resample_of_permuted_runs_is_a_relabelled_resample(case, seed):
  # The exact role of run order in the bootstrap: same seed, same uniform
  # draws, so the index drawn for x[perm] picks the run perm[index] of x.
  x, perm = case
  for name in stats.metric_names():
    fn = stats.get_metric(name)
    _, replicates = bootstrap.bootstrap(x[perm], fn, REPS, np.random.default_rng(seed))
    idx = bootstrap.draw_run_indices(np.random.default_rng(seed), REPS, x.shape)
    relabelled = fn(bootstrap.stratified_resample(x, perm[idx]))
    np.testing.assert_array_equal(replicates, relabelled)


def _dkw_band(replicates: np.ndarray, level: float, delta: float) -> tuple[float, float]:
  """Where another R-replicate sample's `level` percentile may lie, w.p. >= 1 - 2 delta.

  Both replicate sets are R draws from one bootstrap distribution F. By the
  Dvoretzky-Kiefer-Wolfowitz inequality each empirical CDF is within
  eps = sqrt(log(2 / delta) / (2 R)) of F everywhere, except with probability
  delta, so the other set's `level` percentile lies between this set's
  (level - 2 eps - 2/R) and (level + 2 eps + 2/R) order statistics.
  """
  r = np.sort(replicates)
  n = r.size
  eps = 2 * np.sqrt(np.log(2 / delta) / (2 * n)) + 2 / n
  lo = int(np.floor(max(0.0, level - eps) * (n - 1)))
  hi = int(np.ceil(min(1.0, level + eps) * (n - 1)))
  return float(r[lo]), float(r[hi])


@settings(SETTINGS, max_examples=30, derandomize=True)
@given(permuted(min_runs=2), seeds)
def test_intervals_of_permuted_runs_agree_up_to_bootstrap_noise(case, seed):
  x, perm = case
  reps, conf = 2_000, 0.95
  shuffled = stats.interval_estimates({"a": x[perm]}, reps=reps, confidence=conf, seed=seed)
  for name in stats.metric_names():
    _, reference = bootstrap.bootstrap(x, stats.get_metric(name), reps, np.random.default_rng(seed))
    est = shuffled["a"][name]
    for end, level in ((est.lo, (1 - conf) / 2), (est.hi, (1 + conf) / 2)):
      low, high = _dkw_band(reference, level, delta=1e-6)
      assert low - _tol(x) <= end <= high + _tol(x), (name, level, end, low, high)


@SETTINGS
@given(permuted(), permuted(), seeds)
def test_probability_of_improvement_does_not_depend_on_run_order(cx, cy, seed):
  (x, px), (y, py) = cx, cy
  y = y[:, :1].repeat(x.shape[1], axis=1)  # same tasks as x
  assert stats.probability_of_improvement(x[px], y[py]) == stats.probability_of_improvement(x, y)


# --------------------------------------------------------------------- bounds


@SETTINGS
@given(matrices, seeds, st.floats(0.5, 0.99))
def test_aggregates_and_interval_ends_lie_within_the_scores(x, seed, conf):
  lo_x, hi_x, tol = float(x.min()), float(x.max()), _tol(x)
  res = stats.interval_estimates({"a": x}, reps=REPS, confidence=conf, seed=seed)["a"]
  for name in CENTRAL:
    est = res[name]
    assert lo_x - tol <= est.point <= hi_x + tol, name
    assert lo_x - tol <= est.lo <= est.hi <= hi_x + tol, name
  gamma = 1.0
  og = res["og"]
  g_lo, g_hi = gamma - min(hi_x, gamma), gamma - min(lo_x, gamma)
  assert 0.0 <= g_lo and g_lo - tol <= og.point <= g_hi + tol
  assert g_lo - tol <= og.lo <= og.hi <= g_hi + tol


def test_percentile_interval_need_not_contain_the_point():
  # Exact bootstrap distribution of this median: P(median* <= -0.475) = 0.307
  # and P(median* < -0.4) = 0.336 (enumerated by hand), so the 35th
  # percentile is -0.4 and the 30% interval [-0.4, -0.2] excludes the point.
  x = np.zeros((5, 4))
  x[0, 0], x[0, 2], x[1, 2], x[4, 3] = -2.0, -3.0, 0.25, -3.0
  est = stats.interval_estimates({"a": x}, "median", reps=2_000, confidence=0.3, seed=0)["a"]
  assert est["median"].point == pytest.approx(-0.475)
  assert est["median"].lo == pytest.approx(-0.4)
  assert est["median"].point < est["median"].lo


@SETTINGS
@given(matrices, st.data())
def test_probability_of_improvement_bounds_and_complement(x, data):
  y = data.draw(hnp.arrays(np.float64, (data.draw(st.integers(1, 6)), x.shape[1]), elements=finite))
  p_xy = float(stats.probability_of_improvement(x, y))
  p_yx = float(stats.probability_of_improvement(y, x))
  assert 0.0 <= p_xy <= 1.0
  assert p_xy + p_yx == pytest.approx(1.0, abs=1e-12)
  assert float(stats.probability_of_improvement(x, x)) == pytest.approx(0.5, abs=1e-12)
  est = stats.probability_of_improvement_interval(x, y, reps=REPS, seed=0)
  assert 0.0 <= est.lo <= est.hi <= 1.0


@SETTINGS
@given(
  shapes.flatmap(lambda s: hnp.arrays(np.float64, (s[0] * 2, s[1]), elements=finite, unique=True))
)
def test_probability_of_improvement_counts_wins_without_ties(xy):
  x, y = xy[: len(xy) // 2], xy[len(xy) // 2 :]
  wins = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1)).mean()
  p_xy = float(stats.probability_of_improvement(x, y))
  assert p_xy == pytest.approx(wins, abs=1e-12)
  assert p_xy + float(stats.probability_of_improvement(y, x)) == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------- seeds


@SETTINGS
@given(matrices, matrices, seeds)
def test_same_seed_gives_bit_equal_intervals(x, y, seed):
  y = y[:, :1].repeat(x.shape[1], axis=1)
  first = stats.interval_estimates({"x": x, "y": y}, reps=REPS, seed=seed)
  assert stats.interval_estimates({"x": x, "y": y}, reps=REPS, seed=seed) == first
  poi = stats.probability_of_improvement_interval(x, y, reps=REPS, seed=seed)
  assert stats.probability_of_improvement_interval(x, y, reps=REPS, seed=seed) == poi
  taus = np.linspace(float(x.min()), float(x.max()) + 1.0, 5)
  a = stats.performance_profile({"x": x}, taus, reps=REPS, seed=seed)["x"]
  b = stats.performance_profile({"x": x}, taus, reps=REPS, seed=seed)["x"]
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------- affine maps

scales = st.floats(-100, 100).filter(lambda a: abs(a) >= 1e-3)


@SETTINGS
@given(matrices, scales, finite, seeds)
def test_central_aggregates_and_intervals_commute_with_affine_maps(x, a, b, seed):
  y = a * x + b
  tol = 1e-9 * (abs(a) * (1.0 + float(np.max(np.abs(x)))) + abs(b) + 1.0)
  for name in CENTRAL:
    fn = stats.get_metric(name)
    assert abs(fn(y) - (a * fn(x) + b)) <= tol, name
  before = stats.interval_estimates({"r": x}, CENTRAL, reps=REPS, seed=seed)["r"]
  after = stats.interval_estimates({"r": y}, CENTRAL, reps=REPS, seed=seed)["r"]
  for name in CENTRAL:
    lo, hi = a * before[name].lo + b, a * before[name].hi + b
    lo, hi = (lo, hi) if a > 0 else (hi, lo)
    assert abs(after[name].lo - lo) <= tol and abs(after[name].hi - hi) <= tol, name


@SETTINGS
@given(matrices, st.floats(1e-3, 100), finite)
def test_optimality_gap_moves_with_its_threshold(x, a, b):
  # og(x; gamma) is not affine-equivariant in x alone, but is when gamma moves too.
  tol = 1e-9 * (a * (1.0 + float(np.max(np.abs(x)))) + abs(b) + 1.0)
  gap = stats.optimality_gap(x, gamma=1.0)
  assert abs(stats.optimality_gap(x + b, gamma=1.0 + b) - gap) <= tol
  assert abs(stats.optimality_gap(a * x, gamma=a) - a * gap) <= tol
