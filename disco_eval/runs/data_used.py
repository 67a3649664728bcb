"""The data a run trains and evaluates on, as its record fingerprints it.

A Sokoban run plays levels from the Boxoban cache (``disco-eval data pull
boxoban``); a cache pulled again from another source holds other levels.
:func:`data_used` is what ``config.json`` records under ``"data"``: the
sha256 of each cached split, so that runs on different level sets are never
pooled (:mod:`disco_eval.config.fingerprint`) and a run is not resumed on
other levels (:mod:`disco_eval.store.config_match`). Suites without a data
cache record nothing.
"""

from __future__ import annotations

from typing import Any

# Suites whose tasks play levels from the Boxoban cache (envs/sokoban.py).
BOXOBAN_SUITES = ("sokoban",)


def data_used(suite: str) -> dict[str, Any]:
  """``{"data": {"boxoban": {split: sha256}}}`` for a Sokoban suite, else {}."""
  if suite not in BOXOBAN_SUITES:
    return {}
  from disco_eval.envs import boxoban

  splits = boxoban.read_record().get("splits") or {}
  return {"data": {"boxoban": {k: v.get("sha256") for k, v in sorted(splits.items())}}}
