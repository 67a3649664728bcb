"""Times the stratified-bootstrap IQM interval on a 5 x 16 score matrix.

Usage:
  python benchmarks/bench_stats.py               # disco_eval.analysis.stats only
  python benchmarks/bench_stats.py --rliable     # also rliable 1.2.0

Prints wall-clock seconds for ``reps`` bootstrap replicates of the IQM
(the first call, then the best of ``--repeat`` calls) and the resulting 95%
intervals, so the two implementations can be compared side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from disco_eval.analysis import stats  # noqa: E402


def _time(
  fn: Callable[[], tuple[float, float, float]], repeat: int
) -> tuple[float, float, tuple[float, float, float]]:
  """Returns (first call seconds, best of ``repeat`` calls, last result)."""
  times = []
  result = None
  for _ in range(max(1, repeat)):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return times[0], min(times), result


def ours(scores: np.ndarray, reps: int, seed: int) -> tuple[float, float, float]:
  """IQM point and CI from disco_eval.analysis.stats."""
  est = stats.interval_estimates({"rule": scores}, ["iqm"], reps=reps, seed=seed)["rule"]["iqm"]
  return est.point, est.lo, est.hi


def theirs(scores: np.ndarray, reps: int, seed: int) -> tuple[float, float, float]:
  """IQM point and CI from rliable.library.get_interval_estimates."""
  # pylint: disable-next=import-outside-toplevel
  from rliable import library, metrics

  np.random.seed(seed)  # rliable draws from numpy's global generator.
  points, cis = library.get_interval_estimates(
    {"rule": scores}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps
  )
  return (float(points["rule"][0]), float(cis["rule"][0, 0]), float(cis["rule"][1, 0]))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reps", type=int, default=50_000)
  parser.add_argument("--runs", type=int, default=5)
  parser.add_argument("--tasks", type=int, default=16)
  parser.add_argument(
    "--repeat", type=int, default=5, help="timed calls of ours (rliable is timed once)"
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--rliable", action="store_true", help="also time rliable 1.2.0 (a few seconds)"
  )
  args = parser.parse_args(argv)

  scores = np.random.default_rng(args.seed).random((args.runs, args.tasks))
  print(
    f"IQM stratified bootstrap, {args.reps:,} reps, "
    f"{args.runs}x{args.tasks} matrix, {os.cpu_count()} CPU(s), "
    f"numpy {np.__version__}"
  )

  first, best, (p, lo, hi) = _time(lambda: ours(scores, args.reps, args.seed), args.repeat)
  print(
    f"  disco_eval.analysis.stats: first {first:.3f} s, best of {args.repeat} "
    f"{best:.3f} s  IQM {p:.4f} [{lo:.4f}, {hi:.4f}]"
  )

  if args.rliable:
    try:
      # pylint: disable-next=import-outside-toplevel,unused-import
      import rliable.library  # noqa: F401
    except Exception as e:  # pylint: disable=broad-except
      print(
        f"  rliable: not importable ({type(e).__name__}: {e}); install "
        f"rliable==1.2.0 arch==7.2.0 'pandas>=2.2,<3'"
      )
      return 1
    first_r, _, (p, lo, hi) = _time(lambda: theirs(scores, args.reps, args.seed), 1)
    print(f"  rliable 1.2.0:    {first_r:.3f} s  IQM {p:.4f} [{lo:.4f}, {hi:.4f}]")
    print(f"  speed-up: {first_r / best:.0f}x (best) / {first_r / first:.0f}x (first call)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
