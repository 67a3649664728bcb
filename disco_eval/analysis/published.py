"""Published reference scores from the suite manifests.

Published baselines are ``[[published]]`` tables of a suite manifest::

  [[published]]
  rule = "PPO (OpenAI)"       # a display name
  task = "coinrun"
  protocol = "easy-200"       # the protocol (label) the score belongs to
  score = 8.6                 # raw final score
  normalized_score = 0.7      # optional; else normalised with the manifest
  seeds = 3                   # optional
  per_seed = [8.1, 8.9, 8.8]  # optional raw final score of each seed
  citation = "Cobbe et al. (2020)"
  note = "..."                # optional
  metric = "return"           # the metric of `score` (default: the protocol's metric)
  env_steps = 200_000_000     # the budget the score is at; 0 = not stated (default:
                              # the protocol's env_steps, or STEPS of a NAME@STEPS label)
  read_off = "figure"         # optional: read off a figure, not a table or a log
  budget_note = "..."         # optional: what the source says about the budget

``[[published_other_metric]]`` rows give a ``value`` in a metric that the
protocol reports beside its score (``metric``, e.g. NetHack's ``mean_score``).

They are shown as separate rows marked "published" and never enter a
bootstrap together with runs made here. :func:`comparability` says whether a
row measured what a group of runs measured (same metric, same budget, same
protocol settings); a row that did not is shown marked "not comparable" with
the reason, and enters no aggregate. :func:`published_matrices` gives a
published rule's ``[seeds, tasks]`` matrix when it covers every task of an
aggregate: per-seed scores when every row has ``per_seed`` scores (as many per
task) that the manifest can normalise, else one row of per-task scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from disco_eval.analysis import evaluation
from disco_eval.analysis.collect import finite
from disco_eval.analysis.labels import label_budget
from disco_eval.config import suites
from disco_eval.errors import UserError


@dataclasses.dataclass(frozen=True)
class PublishedRow:
  """A published per-task score from a suite manifest (never bootstrapped
  together with runs made here)."""

  rule: str
  task: str
  protocol: str
  score: float
  normalized_score: float | None
  seeds: int | None
  per_seed: tuple[float, ...] | None
  citation: str
  note: str | None
  beside: Mapping[str, float] = dataclasses.field(default_factory=dict)
  # The metric of `score` (of the `beside` value for other-metric rows).
  metric: str = "return"
  # The budget (env steps per run) the number is at; 0 when the source states none.
  env_steps: int = 0
  read_off: str | None = None  # "figure" when read off a figure
  budget_note: str | None = None
  # How the number was measured (analysis.evaluation): the policy played
  # ("greedy" / "sampling"), what it averages ("training episodes" /
  # "final-policy evaluation"), how it was selected ("none" / "best of N ...");
  # None where the manifest does not state it; `sources` says where each is from.
  policy: str | None = None
  estimator: str | None = None
  selection: str | None = None
  sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
  # Set by the comparison: whether the row measured what the runs did, and why not.
  comparable: bool = True
  reason: str | None = None

  @property
  def label(self) -> str:
    """The row's name, marked published (and read off a figure where so)."""
    name = published_label(self.rule)
    return f"{name}, read off a {self.read_off}" if self.read_off else name


def published_rows(manifest: suites.SuiteManifest) -> tuple[list[PublishedRow], list[str]]:
  """The ``[[published]]`` rows of a suite manifest, and warnings about
  entries that were ignored because they are malformed."""
  entries = manifest.raw.get("published", [])
  if not isinstance(entries, list):
    return [], [
      f"suite manifest {manifest.path}: 'published' must be an array "
      "of tables ([[published]]); ignored"
    ]
  rows, warnings = [], []
  for i, entry in enumerate(entries, start=1):
    where = f"suite manifest {manifest.path}: published entry #{i}"
    if not isinstance(entry, dict):
      warnings.append(f"{where} is not a table; ignored")
      continue
    missing = [k for k in ("rule", "task", "protocol", "score", "citation") if k not in entry]
    score = finite(entry.get("score"))
    if missing or score is None:
      what = f"lacks {', '.join(missing)}" if missing else "has no finite score"
      warnings.append(f"{where} {what}; ignored")
      continue
    normalized = finite(entry.get("normalized_score"))
    if normalized is None:
      normalized = finite(manifest.normalize(str(entry["task"]), score, str(entry["protocol"])))
    per_seed = entry.get("per_seed")
    if per_seed is not None:
      values = [finite(v) for v in per_seed] if isinstance(per_seed, list) else [None]
      if not values or any(v is None for v in values):
        warnings.append(f"{where} has a malformed per_seed list; it is ignored")
        per_seed = None
      else:
        per_seed = tuple(values)
    seeds = entry.get("seeds")
    seeds = (
      int(seeds)
      if isinstance(seeds, int) and not isinstance(seeds, bool)
      else (len(per_seed) if per_seed else None)
    )
    rows.append(
      PublishedRow(
        rule=str(entry["rule"]),
        task=str(entry["task"]),
        protocol=str(entry["protocol"]),
        score=score,
        normalized_score=normalized,
        seeds=seeds,
        per_seed=per_seed,
        citation=str(entry["citation"]),
        note=str(entry["note"]) if entry.get("note") else None,
        beside=_published_beside(manifest, entry),
        **_metric_and_budget(manifest, entry),
      )
    )
  rows += _published_beside_only(manifest)
  return rows, warnings


def _published_beside_only(manifest: suites.SuiteManifest) -> list[PublishedRow]:
  """``[[published_other_metric]]`` entries (e.g. DiscoRL's mean NetHack
  scores beside our medians): rows with no score (NaN) and their value under
  ``beside``, shown in the per-task table, never aggregated (comparable only
  when the runs report that metric beside their score)."""
  rows = []
  for entry in manifest.raw.get("published_other_metric", []) or []:
    if not isinstance(entry, dict):
      continue
    value = finite(entry.get("value"))
    if not entry.get("metric") or value is None or "rule" not in entry:
      continue
    seeds = entry.get("seeds")
    rows.append(
      PublishedRow(
        rule=str(entry["rule"]),
        task=str(entry.get("task")),
        protocol=str(entry["protocol"]),
        score=math.nan,
        normalized_score=None,
        seeds=int(seeds) if isinstance(seeds, int) else None,
        per_seed=None,
        citation=str(entry.get("citation", "")),
        note=str(entry["note"]) if entry.get("note") else None,
        beside={str(entry["metric"]): value},
        **_metric_and_budget(manifest, entry),
      )
    )
  return rows


def _metric_and_budget(manifest: suites.SuiteManifest, entry: dict) -> dict:
  """`metric`, `env_steps`, `read_off` and `budget_note` of a published entry;
  rows written before these fields get the protocol's metric and budget."""
  label = str(entry.get("protocol"))
  protocol = manifest.protocols.get(label.split("@", 1)[0])
  default_steps = protocol.get("env_steps") if protocol is not None else None
  default_steps = label_budget(label, default_steps)
  steps = entry.get("env_steps", default_steps)
  metric = entry.get("metric") or (protocol.get("metric") if protocol is not None else None)
  read_off = entry.get("read_off")
  if read_off is None and "read off a figure" in str(entry.get("note", "")):
    read_off = "figure"
  return dict(
    **evaluation.published_measure(entry),
    metric=str(metric or "score"),
    env_steps=int(steps) if isinstance(steps, (int, float)) and not isinstance(steps, bool) else 0,
    read_off=str(read_off) if read_off else None,
    budget_note=str(entry["budget_note"]) if entry.get("budget_note") else None,
  )


def steps_text(steps: int) -> str:
  """``200M``, ``1.5M``, ``58k``, ``1,508``: a budget in short form."""
  for size, unit in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
    if steps >= size and (steps * 100) % size == 0:
      return f"{steps / size:g}{unit}"
  return f"{steps:,}"


def comparability(
  row: PublishedRow,
  label: str,
  metrics: Sequence[str],
  budget: int | None,
  measure: tuple[str, str] | None = None,
) -> str | None:
  """Why published `row` is not comparable with runs of protocol label `label`
  that report `metrics` at `budget` env steps, measured as `measure` (their
  policy and estimator; :func:`evaluation.run_measure`), None when it is: the
  policy, estimator or a selection on the evaluation, the metric, the budget,
  or the protocol's settings differ."""
  runs = f"{budget_phrase_short(budget)} {'/'.join(metrics) or '?'}"
  published = f"published at {budget_phrase_short(row.env_steps)} in {row.metric}"
  differs = evaluation.measure_differences(row.policy, row.estimator, row.selection, measure)
  if differs:
    return differs
  if row.metric not in metrics:
    return f"{published}; runs: {runs}"
  if not row.env_steps:
    return f"published budget not stated{f' ({row.budget_note})' if row.budget_note else ''}"
  if budget is None or row.env_steps != budget:
    return f"{published}; runs: {runs}"
  ours, theirs = (_settings_part(x) for x in (label, row.protocol))
  if ours != theirs:
    return f"published for protocol {row.protocol}; runs: {label} (other protocol settings)"
  return None


def budget_phrase_short(steps: int | None) -> str:
  """A budget in short form, or 'an unstated budget'."""
  return steps_text(steps) if steps else "an unstated budget"


def _settings_part(label: str) -> str:
  """A label without its ``@STEPS`` budget: the protocol and its changed settings."""
  if "@" not in label:
    return label
  name, rest = label.split("@", 1)
  return name + ("+" + rest.split("+", 1)[1] if "+" in rest else "")


def _published_beside(manifest: suites.SuiteManifest, entry: dict) -> dict[str, float]:
  """The figures a published entry gives beside its score, for the names its
  protocol reports beside the score (e.g. Crafter's ``reward``)."""
  return {n: v for n in _beside_names(manifest, entry) if (v := finite(entry.get(n))) is not None}


def _beside_names(manifest: suites.SuiteManifest, entry: dict) -> list[str]:
  """The names the protocol of a published entry reports beside its score."""
  protocol = manifest.protocols.get(str(entry.get("protocol")))
  return list(protocol.get("reported_beside", [])) if protocol is not None else []


def published_label(rule: str) -> str:
  """A published rule's name, marked "(published)" unless it says so."""
  return rule if "published" in rule else f"{rule} (published)"


def load_manifest(suite: str) -> tuple[suites.SuiteManifest | None, str | None]:
  """The suite's manifest, or None and a warning when it cannot be loaded."""
  try:
    return suites.load_suite(suite), None
  except UserError as exc:
    return None, (f"suite manifest of '{suite}' not loaded ({exc}); no published baselines shown")


def published_matrices(
  rows: Sequence[PublishedRow], tasks: Sequence[str], manifest: suites.SuiteManifest | None
) -> dict[str, tuple[np.ndarray, bool]]:
  """Normalised score matrices of published rules covering all `tasks`.

  Returns ``{rule: (matrix, per_seed)}``: a ``[seeds, tasks]`` matrix of
  normalised per-seed scores (``per_seed`` True) when every task's row has
  ``per_seed`` scores, as many per task, that the manifest can normalise;
  else a ``[1, tasks]`` matrix of the published per-task normalised scores
  (``per_seed`` False). Rules lacking a task, or a normalised score for one,
  are left out.
  """
  out: dict[str, tuple[np.ndarray, bool]] = {}
  by_rule: dict[str, dict[str, PublishedRow]] = defaultdict(dict)
  for row in rows:
    by_rule[row.rule].setdefault(row.task, row)
  for rule, per_task in by_rule.items():
    if not tasks or any(t not in per_task for t in tasks):
      continue
    chosen = [per_task[t] for t in tasks]
    lengths = {len(r.per_seed) if r.per_seed else 0 for r in chosen}
    if manifest is not None and len(lengths) == 1 and 0 not in lengths:
      columns = [[manifest.normalize(r.task, v, r.protocol) for v in r.per_seed] for r in chosen]
      matrix = np.array(columns, dtype=np.float64).T
      if np.isfinite(matrix).all():
        out[rule] = (matrix, True)
        continue
    points = [r.normalized_score for r in chosen]
    if all(p is not None for p in points):
      out[rule] = (np.array([points], dtype=np.float64), False)
  return out


def norm_label(manifest: suites.SuiteManifest | None) -> str:
  """What the suite calls its normalised score (``normalised`` by default)."""
  if manifest is None:
    return "normalised"
  return str(manifest.raw.get("normalized_label", "normalised"))
