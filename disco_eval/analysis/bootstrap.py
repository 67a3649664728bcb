"""The stratified bootstrap behind every interval, rliable-style.

Score arrays follow rliable's convention: ``[num_runs, num_tasks]`` (runs are
seeds, entries are normalised scores), or ``[num_runs, num_tasks,
num_points]`` for curves. The aggregate metrics and the interval functions
built on this module are in :mod:`disco_eval.analysis.stats`.

Resampling is rliable's stratified bootstrap (``rliable.library
.StratifiedBootstrap`` with ``task_bootstrap=False``): every entry of the
resampled array draws its run index independently and uniformly from the runs
of its own task (and, for ``[runs, tasks, points]`` arrays, of its own point),
with replacement. Confidence intervals are percentile intervals computed with
``np.percentile``'s default linear interpolation, as ``arch`` does.

Randomness: callers pass a ``np.random.Generator``; the global numpy generator
is never touched. Replicates are processed in chunks to bound memory; run
indices are drawn from uniform floats, whose stream does not depend on how it
is split, so the chunk size never changes a result.

Missing values: any NaN (or infinite) score raises ``ValueError``
(:func:`check_scores`). Callers must drop failed runs explicitly, and say so,
before computing statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

DEFAULT_CONFIDENCE = 0.95

# Upper bound on the number of array elements materialised per chunk of
# bootstrap replicates (2**22 float64 values = 32 MiB per intermediate array).
_CHUNK_ELEMENTS = 1 << 22


# ----------------------------------------------------------------- validation


def check_scores(scores: np.ndarray, name: str = "scores", ndim: int = 2) -> np.ndarray:
  """Validates a score array and returns it as float64.

  Args:
    scores: array of shape ``[num_runs, num_tasks]`` (``ndim=2``) or
      ``[num_runs, num_tasks, num_points]`` (``ndim=3``).
    name: what to call the array in error messages (e.g. the rule's name).
    ndim: the required number of dimensions.

  Returns:
    ``scores`` as a float64 array of the same shape.

  Raises:
    ValueError: wrong number of dimensions, no runs or tasks, non-numeric
      values, or any NaN/infinite score.
  """
  arr = np.asarray(scores)
  if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
    raise ValueError(f"{name}: scores must be numeric, got dtype {arr.dtype}")
  arr = arr.astype(np.float64, copy=False)
  if arr.ndim != ndim:
    raise ValueError(
      f"{name}: expected {ndim} dimensions "
      f"({'[runs, tasks]' if ndim == 2 else '[runs, tasks, points]'}), "
      f"got shape {arr.shape}"
    )
  if arr.size == 0:
    raise ValueError(f"{name}: needs at least one run and one task, got shape {arr.shape}")
  nan = np.isnan(arr)
  if nan.any():
    runs = sorted({int(r) for r in np.argwhere(nan)[:, 0]})
    raise ValueError(
      f"{name}: {int(nan.sum())} NaN score(s) in run(s) {runs}; exclude "
      f"failed runs explicitly (and report them) before computing statistics"
    )
  if not np.isfinite(arr).all():
    raise ValueError(f"{name}: infinite score(s); scores must be finite")
  return arr


def check_reps(reps: int) -> int:
  """`reps` as an int; ValueError unless it is a positive integer."""
  if isinstance(reps, bool) or int(reps) != reps or reps < 1:
    raise ValueError(f"reps must be a positive integer, got {reps!r}")
  return int(reps)


def check_confidence(confidence: float) -> float:
  """`confidence` as a float; ValueError unless it is in (0, 1)."""
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
  return float(confidence)


# ------------------------------------------------------------------ resampling


def chunk_sizes(reps: int, elements_per_rep: int, chunk_size: int | None) -> Iterator[int]:
  """Splits ``reps`` into chunks of at most ``chunk_size`` replicates."""
  if chunk_size is None:
    chunk_size = max(1, _CHUNK_ELEMENTS // max(1, elements_per_rep))
  elif chunk_size < 1:
    raise ValueError(f"chunk_size must be positive, got {chunk_size!r}")
  for start in range(0, reps, chunk_size):
    yield min(chunk_size, reps - start)


def draw_run_indices(rng: np.random.Generator, reps: int, shape: tuple[int, ...]) -> np.ndarray:
  """Draws stratified-bootstrap run indices.

  Each entry is uniform on ``range(shape[0])`` and independent of all others,
  so every (task, ...) cell is resampled with replacement from its own runs.
  Indices come from ``floor(u * num_runs)`` with uniform float64 ``u``: one
  64-bit draw per index, so consecutive calls continue one stream and
  splitting ``reps`` into chunks does not change the indices.

  Args:
    rng: the generator to draw from.
    reps: number of bootstrap replicates.
    shape: ``(num_runs, num_tasks, ...)`` of the array to resample.

  Returns:
    ``[reps, *shape]`` integer indices into axis 0 of that array.
  """
  num_runs = shape[0]
  u = rng.random((reps, *shape))
  u *= num_runs
  idx = u.astype(np.intp)
  np.minimum(idx, num_runs - 1, out=idx)  # guards u * n rounding up to n.
  return idx


def stratified_resample(scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
  """Gathers resampled scores.

  ``out[b, r, t, ...] = scores[indices[b, r, t, ...], t, ...]``.

  Args:
    scores: ``[num_runs, num_tasks, ...]``.
    indices: ``[reps, num_runs, num_tasks, ...]`` from :func:`draw_run_indices`.

  Returns:
    ``[reps, num_runs, num_tasks, ...]``.
  """
  return np.take_along_axis(scores[None], indices, axis=1)


def bootstrap(
  scores: np.ndarray,
  statistic: Callable[[np.ndarray], np.ndarray],
  reps: int,
  rng: np.random.Generator,
  elements_per_rep: int | None = None,
  chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Evaluates a batched statistic on the data and on stratified resamples.

  Args:
    scores: ``[num_runs, num_tasks, ...]``, already validated.
    statistic: maps ``[*batch, num_runs, num_tasks, ...]`` to
      ``[*batch, *out]`` for any leading ``batch`` dims (none included).
    reps: number of replicates.
    rng: generator the run indices are drawn from.
    elements_per_rep: memory cost of one replicate, to size chunks (defaults
      to ``scores.size``).
    chunk_size: replicates per chunk; ``None`` picks one from a memory budget.
      It does not affect the result.

  Returns:
    ``(point [*out], replicates [reps, *out])``.

  Raises:
    ValueError: if ``statistic`` is not batched (its output on a chunk of
      resamples is not ``[chunk, *out]``).
  """
  point = np.asarray(statistic(scores), dtype=np.float64)
  per_rep = scores.size if elements_per_rep is None else elements_per_rep
  out = []
  for n in chunk_sizes(reps, per_rep, chunk_size):
    resampled = stratified_resample(scores, draw_run_indices(rng, n, scores.shape))
    values = np.asarray(statistic(resampled), dtype=np.float64)
    if values.shape != (n, *point.shape):
      raise ValueError(
        f"statistic returned shape {values.shape} for {n} resamples "
        f"(expected {(n, *point.shape)}); metrics must be batched: "
        f"[..., runs, tasks] -> [...]"
      )
    out.append(values)
  return point, np.concatenate(out, axis=0)


def percentile_interval(
  replicates: np.ndarray, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
  """Two-sided percentile interval of bootstrap replicates (arch's method).

  Args:
    replicates: ``[reps, ...]``.
    confidence: coverage, e.g. 0.95 for the 2.5th and 97.5th percentiles.

  Returns:
    ``(lo, hi)``, each ``[...]``.
  """
  alpha = (1.0 - check_confidence(confidence)) / 2
  lo, hi = np.percentile(replicates, [100 * alpha, 100 * (1.0 - alpha)], axis=0)
  return lo, hi
