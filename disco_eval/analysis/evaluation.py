"""How a score was measured: policy, estimator and selection, for runs and published rows.

A number is only comparable with another measured the same way:

* ``policy``: ``greedy`` (the most probable action) or ``sampling`` (an action
  drawn from the policy);
* ``estimator``: ``training episodes`` (returns of the behaviour policy while
  it learns) or ``final-policy evaluation`` (fresh episodes of the final
  policy);
* ``selection``: ``none``, or how the number was picked among several, e.g.
  ``best of 10 learning rates`` (chosen on the evaluation itself: optimistic).

Published rows state these in the suite manifest (``policy``, ``estimator``,
``selection``, each with its source in the row's ``sources`` table). Runs made
here always sample (the trainer's acting and its final evaluation draw from
the policy's categorical distribution: ``disco_eval.train.loop``,
``disco_eval.train.host_loop``); their estimator is the protocol's:
``training episodes`` where its ``score_from`` says so (Crafter), else
``final-policy evaluation``; their selection is ``none`` unless
``compare --select`` made one (then their label says so).
"""

from __future__ import annotations

from typing import Any, Mapping

POLICIES = ("greedy", "sampling")
ESTIMATORS = ("training episodes", "final-policy evaluation")
RUN_POLICY = "sampling"


def run_measure(protocol: Mapping[str, Any] | None) -> tuple[str, str]:
  """(policy, estimator) of runs made here under `protocol` (its settings)."""
  score_from = str((protocol or {}).get("score_from", ""))
  estimator = "training episodes" if score_from.startswith("training episodes") else ESTIMATORS[1]
  return RUN_POLICY, estimator


def group_measure(manifest: Any, label: str) -> tuple[str, str]:
  """(policy, estimator) of runs under protocol label `label` of a suite manifest (or None)."""
  base = label.split("@", 1)[0].split("+", 1)[0]
  protocol = manifest.protocols.get(base) if manifest is not None else None
  return run_measure(protocol.settings if protocol is not None else None)


def published_measure(entry: Mapping[str, Any]) -> dict:
  """`policy`, `estimator`, `selection` and their `sources` of a published entry."""
  sources = entry.get("sources") if isinstance(entry.get("sources"), dict) else {}
  out: dict[str, Any] = {"sources": {str(k): str(v) for k, v in sources.items()}}
  for key in ("policy", "estimator", "selection"):
    value = entry.get(key)
    out[key] = str(value) if value else None
  return out


def measure_differences(
  policy: str | None,
  estimator: str | None,
  selection: str | None,
  runs: tuple[str, str] | None,
) -> str | None:
  """``greedy, best of 10 learning rates (runs: sampling, final-policy
  evaluation, no selection)``: how a published row was measured otherwise
  than runs measured as `runs`; None when it was not (or `runs` is None).
  What a row does not state is not counted as a difference."""
  if runs is None:
    return None
  parts = [policy] if policy and policy != runs[0] else []
  parts += [estimator] if estimator and estimator != runs[1] else []
  parts += [selection] if selection and selection != "none" else []
  if not parts:
    return None
  return f"{', '.join(parts)} (runs: {runs[0]}, {runs[1]}, no selection)"


def verdict(comparable: bool, reason: str | None) -> str:
  """``comparable``, or ``not comparable (greedy, best of 10 learning rates)``."""
  if comparable:
    return "comparable"
  head = (reason or "").split(" (runs:", 1)[0]
  return f"not comparable ({head})"
