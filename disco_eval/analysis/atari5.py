"""The Atari-5 estimate of the Atari-57 median (Aitchison, Sweetser & Hutter 2023).

Atari-5 predicts the median human-normalised score of the 57 games from five
games' scores by a linear regression without intercept in log space:

  log10(1 + median%) = sum_i w_i * log10(1 + max(0, HNS_i%))

where HNS_i% = 100 (score_i - random_i) / (human_i - random_i). The games and
weights are the ``atari5`` protocol's ``tasks`` and ``median_weights``
(suites/atari.toml, with their sources). The result is an ESTIMATE of a
median, in percent; it is neither a measured median nor an IQM.
"""

import math
from typing import Any, Mapping


def estimate_median(protocol: Any, hns: Mapping[str, float]) -> float:
  """The Atari-5 estimate (percent) from human-normalised scores `hns`
  (task -> HNS as a fraction, 1.0 = human) of the protocol's five tasks.

  Raises KeyError naming a missing task.
  """
  tasks, weights = list(protocol.get("tasks")), list(protocol.get("median_weights"))
  if len(tasks) != len(weights):
    raise ValueError("atari5 protocol: tasks and median_weights differ in length")
  total = 0.0
  for task, weight in zip(tasks, weights):
    if task not in hns:
      raise KeyError(f"Atari-5 needs a score for '{task}'")
    total += float(weight) * math.log10(1.0 + max(0.0, 100.0 * float(hns[task])))
  return 10.0**total - 1.0
