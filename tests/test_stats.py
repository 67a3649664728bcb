"""Tests for disco_eval.analysis.stats and .bootstrap: known answers, rliable
parity, determinism."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import pytest

from disco_eval.analysis import bootstrap, stats

RLIABLE_HINT = "install rliable==1.2.0 arch==7.2.0 'pandas>=2.2,<3'"

# Small matrix with hand-computed answers: 2 runs x 3 tasks.
#   per-task means: 2, 2, 15 -> median 2, mean 19/3
#   sorted scores: 0 1 3 4 10 20; int(0.25 * 6) = 1 cut per end -> IQM 4.5
#   min(s, 1) sums to 5 of 6 -> optimality gap 1/6; min(s, 5) sums to 18 -> 2
HAND = np.array([[1.0, 4.0, 10.0], [3.0, 0.0, 20.0]])


def _rliable() -> tuple[ModuleType, ModuleType]:
  """Imports rliable's library and metrics, or skips saying why not."""
  try:
    library = importlib.import_module("rliable.library")
    metrics = importlib.import_module("rliable.metrics")
  except Exception as e:  # ImportError, or arch/pandas incompatibilities.
    pytest.skip(f"rliable not importable here: {type(e).__name__}: {e}; {RLIABLE_HINT}")
  return library, metrics


def _random_matrix(seed: int, shape: tuple[int, ...]) -> np.ndarray:
  return np.random.default_rng(seed).normal(0.5, 0.3, size=shape)


# --------------------------------------------------------------- known answers


def test_hand_computed_point_estimates():
  assert stats.iqm(HAND) == pytest.approx(4.5, abs=1e-12)
  assert stats.median(HAND) == pytest.approx(2.0, abs=1e-12)
  assert stats.mean(HAND) == pytest.approx(19 / 3, abs=1e-12)
  assert stats.optimality_gap(HAND) == pytest.approx(1 / 6, abs=1e-12)
  assert stats.optimality_gap(HAND, gamma=5.0) == pytest.approx(2.0, abs=1e-12)


def test_iqm_trims_a_quarter_from_each_end():
  # 8 scores, 2 cut from each end: mean of 3, 4, 5, 6.
  scores = np.array([[100.0, 3.0, 4.0, -50.0], [5.0, 6.0, -1.0, 99.0]])
  assert stats.iqm(scores) == pytest.approx(4.5, abs=1e-12)
  # Fewer than 4 scores: nothing is trimmed.
  assert stats.iqm(np.array([[1.0, 2.0, 9.0]])) == pytest.approx(4.0)


def test_probability_of_improvement_hand_computed_with_ties():
  # Task 0: x = 1, 2, 3 vs y = 2, 2: 2 wins, 2 ties of 6 pairs -> 0.5.
  # Task 1: x = 5, 6, 7 vs y = 0, 6: 4 wins, 1 tie of 6 pairs -> 0.75.
  x = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]])
  y = np.array([[2.0, 0.0], [2.0, 6.0]])
  assert stats.probability_of_improvement(x, y) == pytest.approx(0.625)
  assert stats.probability_of_improvement(y, x) == pytest.approx(0.375)
  assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)
  assert stats.probability_of_improvement(x + 10, x) == pytest.approx(1.0)
  assert stats.probability_of_improvement(x, x + 10) == pytest.approx(0.0)
  # All tied, different numbers of runs.
  assert stats.probability_of_improvement(np.ones((3, 2)), np.ones((5, 2))) == pytest.approx(0.5)


def test_metrics_are_batched_over_leading_dims():
  batch = np.stack([_random_matrix(i, (4, 6)) for i in range(3)])
  for name, fn in stats.METRICS.items():
    got = fn(batch)
    assert got.shape == (3,), name
    np.testing.assert_allclose(got, [fn(b) for b in batch], atol=1e-12)


def test_run_score_distribution_is_strictly_above():
  scores = np.array([[0.0, 1.0], [2.0, 3.0]])
  np.testing.assert_allclose(
    stats.run_score_distribution(scores, [-1.0, 0.0, 1.5, 3.0]), [1.0, 0.75, 0.5, 0.0]
  )


def test_metric_registry():
  assert stats.metric_names() == ("iqm", "median", "mean", "og")
  assert stats.get_metric("og") is stats.optimality_gap
  with pytest.raises(ValueError, match="choose from iqm, median, mean, og"):
    stats.get_metric("max")
  assert list(stats.resolve_metrics("iqm")) == ["iqm"]
  custom = stats.resolve_metrics({"m": stats.mean})
  assert custom == {"m": stats.mean}


# ----------------------------------------------------------- rliable parity


@pytest.mark.parametrize(
  "shape", [(1, 1), (1, 5), (2, 2), (3, 7), (5, 16), (10, 3), (7, 13), (20, 57)]
)
def test_point_estimates_match_rliable(shape):
  _, rm = _rliable()
  x = _random_matrix(sum(shape), shape)
  y = _random_matrix(sum(shape) + 1, (max(1, shape[0] - 1), shape[1]))
  y[0, 0] = x[0, 0]  # at least one tie.
  assert abs(stats.iqm(x) - rm.aggregate_iqm(x)) < 1e-9
  assert abs(stats.median(x) - rm.aggregate_median(x)) < 1e-9
  assert abs(stats.mean(x) - rm.aggregate_mean(x)) < 1e-9
  assert abs(stats.optimality_gap(x) - rm.aggregate_optimality_gap(x)) < 1e-9
  assert abs(stats.optimality_gap(x, 0.7) - rm.aggregate_optimality_gap(x, 0.7)) < 1e-9
  assert abs(stats.probability_of_improvement(x, y) - rm.probability_of_improvement(x, y)) < 1e-9
  assert abs(stats.probability_of_improvement(x, x) - rm.probability_of_improvement(x, x)) < 1e-9


def test_probability_of_improvement_matches_rliable_on_discrete_scores():
  _, rm = _rliable()
  rng = np.random.default_rng(3)
  x = rng.integers(0, 3, size=(6, 9)).astype(float)
  y = rng.integers(0, 3, size=(4, 9)).astype(float)
  assert abs(stats.probability_of_improvement(x, y) - rm.probability_of_improvement(x, y)) < 1e-9


@pytest.fixture(scope="module")
def ci_case() -> dict[str, np.ndarray]:
  rng = np.random.default_rng(2024)
  return {"x": rng.random((5, 16)), "y": rng.random((4, 16))}


@pytest.mark.slow
def test_intervals_match_rliable(ci_case):
  """All four metric CIs in one rliable call at 50,000 reps (~5 s)."""
  rl, rm = _rliable()
  x = ci_case["x"]

  def all_metrics(s):
    return np.array(
      [
        rm.aggregate_iqm(s),
        rm.aggregate_median(s),
        rm.aggregate_mean(s),
        rm.aggregate_optimality_gap(s),
      ]
    )

  np.random.seed(0)  # rliable draws from numpy's global generator.
  points, cis = rl.get_interval_estimates({"x": x}, all_metrics, reps=50_000)
  ours = stats.interval_estimates({"x": x}, reps=50_000, seed=0)["x"]
  for i, name in enumerate(("iqm", "median", "mean", "og")):
    assert abs(ours[name].point - points["x"][i]) < 1e-9, name
    assert abs(ours[name].lo - cis["x"][0, i]) < 0.01, name
    assert abs(ours[name].hi - cis["x"][1, i]) < 0.01, name


@pytest.mark.slow
def test_probability_of_improvement_interval_matches_rliable(ci_case):
  """rliable's pairwise CI at 2,000 reps (its Mann-Whitney loop is slow)."""
  rl, rm = _rliable()
  x, y = ci_case["x"], ci_case["y"]

  def poi(a, b):
    return np.array([rm.probability_of_improvement(a, b)])

  np.random.seed(0)
  points, cis = rl.get_interval_estimates({"x,y": [x, y]}, poi, reps=2_000)
  ours = stats.probability_of_improvement_interval(x, y, reps=50_000, seed=0)
  assert abs(ours.point - points["x,y"][0]) < 1e-9
  assert abs(ours.lo - cis["x,y"][0, 0]) < 0.01
  assert abs(ours.hi - cis["x,y"][1, 0]) < 0.01


def test_performance_profile_matches_rliable(ci_case):
  rl, _ = _rliable()
  x = ci_case["x"]
  taus = np.linspace(0.0, 1.0, 21)
  np.random.seed(0)
  points, cis = rl.create_performance_profile({"x": x}, taus, reps=2_000)
  ours = stats.performance_profile({"x": x}, taus, reps=2_000, seed=0)["x"]
  np.testing.assert_allclose(ours.point, points["x"], atol=1e-12)
  # Profile values are multiples of 1 / (runs * tasks); at 2,000 reps the
  # two bootstraps' percentiles may land one step apart.
  step = 1 / x.size
  np.testing.assert_allclose(ours.lo, cis["x"][0], atol=step + 1e-9)
  np.testing.assert_allclose(ours.hi, cis["x"][1], atol=step + 1e-9)


# ------------------------------------------------------------- determinism


def test_same_seed_same_intervals_different_seed_different():
  x = {"a": _random_matrix(0, (5, 16)), "b": _random_matrix(1, (3, 16))}
  first = stats.interval_estimates(x, reps=2_000, seed=7)
  again = stats.interval_estimates(x, reps=2_000, seed=7)
  other = stats.interval_estimates(x, reps=2_000, seed=8)
  assert first == again
  for rule in x:
    for name in stats.metric_names():
      assert first[rule][name].point == other[rule][name].point
      assert first[rule][name][1:] != other[rule][name][1:]

  a, b = x["a"], x["b"]
  assert stats.probability_of_improvement_interval(
    a, b, 2_000, seed=3
  ) == stats.probability_of_improvement_interval(a, b, 2_000, seed=3)
  assert stats.probability_of_improvement_interval(
    a, b, 2_000, seed=3
  ) != stats.probability_of_improvement_interval(a, b, 2_000, seed=4)


def test_global_numpy_generator_is_untouched():
  np.random.seed(123)
  expected = np.random.random()
  np.random.seed(123)
  stats.interval_estimates({"a": _random_matrix(0, (5, 16))}, reps=500)
  assert np.random.random() == expected


def test_chunk_size_does_not_change_results():
  x = {"a": _random_matrix(0, (5, 16))}
  whole = stats.interval_estimates(x, reps=3_001, seed=1)
  chunked = stats.interval_estimates(x, reps=3_001, seed=1, chunk_size=7)
  assert whole == chunked
  a, b = _random_matrix(1, (5, 8)), _random_matrix(2, (3, 8))
  assert stats.probability_of_improvement_interval(
    a, b, 1_001, seed=2
  ) == stats.probability_of_improvement_interval(a, b, 1_001, seed=2, chunk_size=13)
  over_time = {"a": _random_matrix(3, (4, 6, 5))}
  c1 = stats.sample_efficiency_curves(over_time, reps=999, seed=5)["a"]
  c2 = stats.sample_efficiency_curves(over_time, reps=999, seed=5, chunk_size=10)["a"]
  for u, v in zip(c1, c2):
    np.testing.assert_array_equal(u, v)


def test_rule_interval_does_not_depend_on_other_rules():
  a, b = _random_matrix(0, (5, 16)), _random_matrix(1, (7, 16))
  alone = stats.interval_estimates({"a": a}, reps=1_000, seed=0)
  together = stats.interval_estimates({"b": b, "a": a}, reps=1_000, seed=0)
  assert alone["a"] == together["a"]


# ------------------------------------------------------- bootstrap semantics


def test_resampling_is_stratified_within_tasks():
  # Every task's runs agree, so resampling runs within a task changes
  # nothing: the intervals collapse onto the point estimates. A bootstrap
  # that mixed scores across tasks would not.
  scores = np.tile(np.arange(8.0), (5, 1))
  result = stats.interval_estimates({"a": scores}, reps=500)["a"]
  for est in result.values():
    assert est.lo == pytest.approx(est.point)
    assert est.hi == pytest.approx(est.point)
  indices = bootstrap.draw_run_indices(np.random.default_rng(0), 4, (3, 5))
  assert indices.shape == (4, 3, 5)
  assert indices.min() == 0 and indices.max() == 2
  resampled = bootstrap.stratified_resample(_random_matrix(0, (3, 5)), indices)
  src = _random_matrix(0, (3, 5))
  for t in range(5):
    assert set(resampled[:, :, t].ravel()) <= set(src[:, t])


def test_intervals_contain_point_and_widen_with_confidence():
  x = {"a": _random_matrix(0, (5, 16))}
  narrow = stats.interval_estimates(x, reps=5_000, confidence=0.5)["a"]
  wide = stats.interval_estimates(x, reps=5_000, confidence=0.99)["a"]
  for name in stats.metric_names():
    assert wide[name].lo <= narrow[name].lo <= narrow[name].point
    assert narrow[name].point <= narrow[name].hi <= wide[name].hi


def test_custom_metric_must_be_batched():
  x = {"a": _random_matrix(0, (5, 16))}
  ok = stats.interval_estimates(
    x, {"max_task_mean": lambda s: s.mean(axis=-2).max(axis=-1)}, reps=200
  )
  assert set(ok["a"]) == {"max_task_mean"}
  with pytest.raises(ValueError, match="batched"):
    stats.interval_estimates(x, {"flat": lambda s: np.mean(s)}, reps=200)


def test_sample_efficiency_curves_match_per_point_intervals():
  over_time = _random_matrix(0, (5, 16, 3))
  curve = stats.sample_efficiency_curves({"a": over_time}, "iqm", reps=20_000)["a"]
  assert curve.point.shape == curve.lo.shape == curve.hi.shape == (3,)
  for p in range(3):
    single = stats.interval_estimates({"a": over_time[..., p]}, ["iqm"], reps=20_000)["a"]["iqm"]
    assert curve.point[p] == pytest.approx(single.point, abs=1e-12)
    assert curve.lo[p] == pytest.approx(single.lo, abs=0.01)
    assert curve.hi[p] == pytest.approx(single.hi, abs=0.01)


def test_performance_profile_shapes_and_monotonicity():
  taus = np.linspace(-0.5, 1.5, 41)
  band = stats.performance_profile({"a": _random_matrix(0, (5, 16))}, taus, reps=1_000)["a"]
  assert band.point.shape == band.lo.shape == band.hi.shape == (41,)
  assert np.all(np.diff(band.point) <= 0)
  assert np.all(band.lo <= band.point + 1e-12)
  assert np.all(band.point <= band.hi + 1e-12)


# ------------------------------------------------------------------ errors


def test_nan_scores_raise():
  bad = _random_matrix(0, (5, 4))
  bad[2, 1] = np.nan
  good = _random_matrix(1, (5, 4))
  with pytest.raises(ValueError, match=r"NaN score\(s\) in run\(s\) \[2\]"):
    stats.interval_estimates({"rule": bad}, reps=10)
  with pytest.raises(ValueError, match="NaN"):
    stats.probability_of_improvement_interval(good, bad, reps=10)
  with pytest.raises(ValueError, match="NaN"):
    stats.performance_profile({"rule": bad}, [0.5], reps=10)
  with pytest.raises(ValueError, match="NaN"):
    stats.sample_efficiency_curves({"rule": bad[..., None]}, reps=10)
  with pytest.raises(ValueError, match="NaN"):
    bootstrap.check_scores(bad)


@pytest.mark.parametrize(
  "bad, match",
  [
    (np.ones(4), "expected 2 dimensions"),
    (np.ones((0, 3)), "at least one run"),
    (np.array([[1.0, np.inf]]), "infinite"),
    (np.array([["a", "b"]]), "numeric"),
  ],
)
def test_invalid_scores_raise(bad, match):
  with pytest.raises(ValueError, match=match):
    stats.interval_estimates({"rule": bad}, reps=10)


def test_invalid_arguments_raise():
  x = {"a": _random_matrix(0, (3, 4))}
  with pytest.raises(ValueError, match="reps"):
    stats.interval_estimates(x, reps=0)
  with pytest.raises(ValueError, match="confidence"):
    stats.interval_estimates(x, reps=10, confidence=1.0)
  with pytest.raises(ValueError, match="unknown metric"):
    stats.interval_estimates(x, ["iqm", "nope"], reps=10)
  with pytest.raises(ValueError, match="same tasks"):
    stats.probability_of_improvement_interval(
      _random_matrix(0, (3, 4)), _random_matrix(1, (3, 5)), reps=10
    )
  with pytest.raises(ValueError, match="taus"):
    stats.performance_profile(x, [], reps=10)
