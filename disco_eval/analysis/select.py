"""``compare --select KEY``: pick one value of a swept setting per rule, and say how.

Runs of one rule that differ in setting KEY (e.g. the configurations of
``run --sweep optimizer.learning_rate=...``) are candidates. Per group (suite
and protocol label) and rule, each candidate's score is the IQM of its
normalised scores over the selection seeds (``[seeds, tasks]``, only seeds it
has on every task of the group's runs); the best (highest, the first value in
sorted order on a tie) is kept, the others leave the comparison. The kept
runs are those of the reporting seeds. Every rule of the group is reported on
those seeds only.

The kept rule's label says how it was selected, so that every table, CSV row,
JSON document and plot that names it says so too:

* disjoint seeds: ``ppo[lr=0.0003; selected on seeds 0-1, reported on seeds 2-3]``;
* the same (or overlapping) seeds:
  ``ppo[lr=0.0003; selected on the reported seeds (optimistic)]``.

:class:`Selection` records the choice and every candidate's score.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from disco_eval.analysis import stats
from disco_eval.analysis.collect import Collection, Run
from disco_eval.config.overrides import ALIASES
from disco_eval.errors import UserError

OPTIMISTIC = "selected on the reported seeds (optimistic)"


@dataclasses.dataclass(frozen=True)
class Selection:
  """One rule's choice in one group: the value kept, how, and every candidate's score."""

  suite: str
  protocol: str
  rule: str
  key: str
  value: str
  label: str  # the kept runs' label in every report
  note: str  # how it was selected (OPTIMISTIC, or the disjoint seeds)
  select_seeds: tuple[int, ...]
  report_seeds: tuple[int, ...]
  candidates: dict[str, float | None]  # value -> IQM on the selection seeds (None: incomplete)
  optimistic: bool

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def parse_seeds(text: str | None, option: str) -> tuple[int, ...] | None:
  """``0-2`` or ``0,1,4`` -> seeds; None for None; a UserError naming `option` otherwise."""
  if text is None:
    return None
  seeds: list[int] = []
  try:
    for part in (p.strip() for p in text.split(",") if p.strip()):
      lo, _, hi = part.partition("-")
      seeds += range(int(lo), int(hi) + 1) if hi else [int(lo)]
  except ValueError:
    seeds = []
  if not seeds or min(seeds) < 0:
    raise UserError(f"{option} expects seeds such as 0-2 or 0,1,4, got '{text}'")
  return tuple(sorted(set(seeds)))


def seeds_text(seeds: Sequence[int]) -> str:
  """``0-2``, ``0,2,5``: seeds in short form."""
  seeds = sorted(seeds)
  if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
    return f"{seeds[0]}-{seeds[-1]}"
  return ",".join(map(str, seeds))


def setting_value(run: Run, key: str) -> str | None:
  """The value of setting `key` (``table.key``, or an alias such as ``lr``) in
  the run's stored config, as text; None when the config has no such setting."""
  key = ALIASES.get(key, key)
  try:
    config = json.loads((run.path / "config.json").read_text())
  except (OSError, ValueError):
    return None
  node: Any = config.get("settings", {})
  for part in key.split("."):
    if not isinstance(node, dict) or part not in node:
      node = (
        config.get("protocol", {}).get(key.split(".", 1)[-1])
        if key.startswith("protocol.")
        else None
      )
      break
    node = node[part]
  return (
    None
    if node is None or isinstance(node, dict)
    else f"{node:g}"
    if isinstance(node, float)
    else str(node)
  )


def _score(runs: Sequence[Run], seeds: Sequence[int], tasks: Sequence[str]) -> float | None:
  """IQM of the normalised scores of `runs` over `seeds` x `tasks` (None if one is missing)."""
  by = {(r.seed, r.task): r.normalized_score for r in runs}
  if any((s, t) not in by for s in seeds for t in tasks):
    return None
  matrix = np.array([[by[s, t] for t in tasks] for s in seeds], dtype=np.float64)
  return float(stats.iqm(matrix))


def _note(select: tuple[int, ...], report: tuple[int, ...]) -> tuple[str, bool]:
  if set(select) == set(report):
    return OPTIMISTIC, True
  if set(select) & set(report):
    return (
      f"selected on seeds {seeds_text(select)}, which overlap the reported seeds "
      f"{seeds_text(report)} (optimistic)",
      True,
    )
  return f"selected on seeds {seeds_text(select)}, reported on seeds {seeds_text(report)}", False


def _short(key: str) -> str:
  full = ALIASES.get(key, key)
  return next((a for a, k in ALIASES.items() if k == full), full.rsplit(".", 1)[-1])


def apply(
  collection: Collection,
  key: str,
  select_seeds: tuple[int, ...] | None = None,
  report_seeds: tuple[int, ...] | None = None,
) -> tuple[Collection, list[Selection]]:
  """`collection` with one value of `key` kept per rule and group, reported
  on `report_seeds` (default: `select_seeds`; both default to every seed
  found), and the selections made. A UserError when no rule has runs that
  differ in `key`, or when one rule's runs differ in other settings too."""
  kept: list[Run] = []
  selections: list[Selection] = []
  for group, runs in collection.groups().items():
    found = tuple(sorted({r.seed for r in runs}))
    select = select_seeds or report_seeds or found
    report = report_seeds or select
    tasks = sorted({r.task for r in runs})
    by_rule: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
      by_rule[run.rule_name or run.rule].append(run)
    for name, rule_runs in by_rule.items():
      values: dict[str, list[Run]] = defaultdict(list)
      for run in rule_runs:
        values[str(setting_value(run, key))].append(run)
      for value, vruns in values.items():
        if len({r.rule for r in vruns}) > 1:
          raise UserError(
            f"--select {key}: runs of {name} with {key}={value} differ in other settings "
            f"too ({', '.join(sorted({r.rule for r in vruns}))}); pass --rules to pick some"
          )
      if len(values) < 2:
        kept += [r for r in rule_runs if r.seed in report]
        continue
      scores = {v: _score(vr, select, tasks) for v, vr in sorted(values.items())}
      ranked = [v for v in scores if scores[v] is not None]
      if not ranked:
        raise UserError(
          f"--select {key}: no value of {name} has runs of every selection seed "
          f"({seeds_text(select)}) on every task of {group.suite}"
        )
      best = max(ranked, key=lambda v: scores[v])
      note, optimistic = _note(select, report)
      label = f"{name}[{_short(key)}={best}; {note}]"
      kept += [dataclasses.replace(r, rule=label) for r in values[best] if r.seed in report]
      selections.append(
        Selection(
          group.suite,
          group.protocol,
          name,
          ALIASES.get(key, key),
          best,
          label,
          note,
          tuple(select),
          tuple(report),
          scores,
          optimistic,
        )
      )
  if not selections:
    raise UserError(
      f"--select {key}: no rule has runs that differ in {key} (train them with "
      f"`run --sweep {key}=V1,V2`)"
    )
  labels = tuple(sorted(set(collection.all_rules) | {r.rule for r in kept}))
  return dataclasses.replace(collection, runs=tuple(kept), all_rules=labels), selections


def lines(selections: Sequence[Selection]) -> list[str]:
  """One line per selection: the value kept, how, and the candidates' scores."""
  return [
    f"{s.suite}/{s.protocol}: {s.rule} {s.key}={s.value} kept ({s.note}); candidates, IQM of "
    f"the normalised score on seeds {seeds_text(s.select_seeds)}: "
    + ", ".join(
      f"{v}: {'incomplete' if x is None else f'{x:.3f}'}" for v, x in s.candidates.items()
    )
    for s in selections
  ]


@dataclasses.dataclass(frozen=True)
class SelectOptions:
  """``--select KEY`` with ``--select-seeds`` and ``--report-seeds`` (text, as given)."""

  key: str
  select_seeds: str | None = None
  report_seeds: str | None = None


def options(
  key: str | None, select_seeds: str | None, report_seeds: str | None
) -> SelectOptions | None:
  """The command's selection options (None without ``--select``)."""
  if key is None:
    if select_seeds or report_seeds:
      raise UserError("--select-seeds and --report-seeds go with --select KEY")
    return None
  return SelectOptions(key, select_seeds, report_seeds)


def apply_options(
  collection: Collection, opts: SelectOptions | None
) -> tuple[Collection, list[Selection]]:
  """:func:`apply` with the command's options (`collection` unchanged without them)."""
  if opts is None:
    return collection, []
  return apply(
    collection,
    opts.key,
    parse_seeds(opts.select_seeds, "--select-seeds"),
    parse_seeds(opts.report_seeds, "--report-seeds"),
  )


def group_notes(selections: Sequence[Selection], suite: str, protocol: str) -> list[str]:
  """The selection lines of one group (suite and protocol label)."""
  return lines([s for s in selections if (s.suite, s.protocol) == (suite, protocol)])
