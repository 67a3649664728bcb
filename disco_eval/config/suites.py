"""Suite manifests (``suites/<name>.toml``): tasks, backend and protocols.

A protocol fixes the step budget, the training loop's settings, the
evaluation and the metric; every run record and report names the protocol it
used. Each item of a protocol carries its source in the protocol's
``[protocols.NAME.sources]`` table (item -> "Oh et al. 2025, ...", or "our
choice: ..." with the reason), and an item whose sources disagree says how,
and which one it follows, in ``[protocols.NAME.disagreement]``
(docs/protocols.md).

A suite's ``[overrides.NAME]`` tables are named bundles of protocol settings
(e.g. ProcGen's ``cpu-small-batch``: the learner batch that fits a CPU),
selected as ``--protocol BASE+NAME``; the protocol's name, and so every run's
label, is then ``BASE+NAME``.
"""

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from disco_eval import paths
from disco_eval.config.setting import BUDGET, POSITIVE_INT, declared, setting
from disco_eval.errors import UserError

# Tables of a protocol that document it rather than set it (kept out of its
# settings, and so out of every run's config).
DOC_TABLES = ("sources", "disagreement")
OVERRIDE_SEP = "+"


@dataclasses.dataclass(frozen=True)
class ProtocolSettings:
  """The protocol items every suite's runs read, each declared once with its
  default (:func:`disco_eval.config.setting.setting`); read them typed as
  ``protocol.typed.NAME``. A protocol's loop items are declared by
  :class:`~disco_eval.config.train.TrainConfig`; the items one suite's
  environments read (e.g. ProcGen's ``distribution_mode``) by those."""

  env_steps: int | None = setting(
    None, BUDGET, "the env-step budget of each run (--steps changes it)", settable=False
  )
  eval_episodes: int = setting(100, POSITIVE_INT, "episodes of the final evaluation")
  eval_max_steps: int | None = setting(
    None, POSITIVE_INT, "env steps after which an evaluation episode is cut (none: no limit)"
  )
  eval_envs: int | None = setting(
    None, POSITIVE_INT, "environments of the final evaluation (none: the loop's num_envs)"
  )
  metric: str = setting(
    "return",
    None,
    "the score: return, mean_score, median_score or solve_rate (runs/final.py)",
    settable=False,
  )
  final_window: int = setting(
    100,
    None,
    "the last metrics rows whose mean return the summary reports (final_window_return)",
    settable=False,
  )
  score_from: str = setting(
    "",
    None,
    "'training episodes ...': the score comes from the training episodes, no evaluation",
    settable=False,
  )
  smoke: bool = setting(
    False, None, "set for a budget below the protocol's: smoke_* evaluation items", settable=False
  )


PROTOCOL_SETTINGS = declared(ProtocolSettings)
# The names ``--set protocol.NAME`` may change (the run is then labelled off-protocol).
PROTOCOL_KEYS = tuple(s.name for s in PROTOCOL_SETTINGS if s.settable)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """A protocol's settings, and each setting's source.

  Attributes:
    name: the manifest's name (``BASE+OVERRIDE`` for a named override).
    description: one paragraph, for ``suites show``.
    settings: item -> value (budget, loop, evaluation, metric...).
    sources: item -> where its value comes from ("our choice: ..." if none).
    disagreement: item -> how its sources disagree and which one is followed.
  """

  name: str
  description: str
  settings: dict[str, Any]
  sources: dict[str, str] = dataclasses.field(default_factory=dict)
  disagreement: dict[str, str] = dataclasses.field(default_factory=dict)

  def get(self, key: str, default: Any = None) -> Any:
    return self.settings.get(key, default)

  @property
  def typed(self) -> ProtocolSettings:
    """The declared items (:class:`ProtocolSettings`), typed, at their
    defaults where the protocol does not set them."""
    values = {}
    for s in PROTOCOL_SETTINGS:
      value = self.settings.get(s.name)
      if value is not None:
        values[s.name] = s.type(value)
    return ProtocolSettings(**values)

  @property
  def base(self) -> str:
    """The manifest protocol a named override starts from (else the name)."""
    return base_name(self.name)

  def unsourced(self) -> list[str]:
    """The items without a source (the shipped manifests have none)."""
    return [k for k in self.settings if not self.sources.get(k)]


def base_name(label: str) -> str:
  """``disco`` of ``disco``, ``disco@40000``, ``disco+cpu-small-batch@40000+eval_episodes=8``."""
  return label.split("@", 1)[0].split(OVERRIDE_SEP, 1)[0]


@dataclasses.dataclass(frozen=True)
class SuiteManifest:
  name: str
  description: str
  backend: str
  tasks: tuple[str, ...]
  default_protocol: str
  protocols: dict[str, Protocol]
  normalization: dict[str, dict[str, float]]
  raw: dict[str, Any]
  path: Path
  overrides: dict[str, Protocol] = dataclasses.field(default_factory=dict)

  def protocol(self, name: str | None = None) -> Protocol:
    """Protocol `name` (default: the suite's); ``BASE+OVERRIDE`` applies the
    suite's ``[overrides.OVERRIDE]`` to protocol BASE."""
    name = name or self.default_protocol
    base, _, override = name.partition(OVERRIDE_SEP)
    if base not in self.protocols:
      raise UserError(
        f"unknown protocol '{base}' for suite '{self.name}'; "
        f"valid protocols: {', '.join(sorted(self.protocols))}"
      )
    if not override:
      return self.protocols[base]
    return _with_override(self, self.protocols[base], override)

  def check_tasks(self, tasks: list[str] | None) -> list[str]:
    if not tasks:
      return list(self.tasks)
    bad = [t for t in tasks if t not in self.tasks]
    if bad:
      raise UserError(
        f"unknown task '{bad[0]}' for suite '{self.name}'; valid tasks: {', '.join(self.tasks)}"
      )
    return list(tasks)

  def normalization_for(self, task: str, protocol: str | None = None) -> dict[str, float] | None:
    """{min, max} of `task`: the protocol's own table if it has one, else the
    suite's. `protocol` may be a label ``NAME@STEPS``."""
    name = base_name(protocol or "")
    table = self.protocols[name].get("normalization") if name in self.protocols else None
    if isinstance(table, dict) and task in table:
      return table[task]
    return self.normalization.get(task)

  def normalize(self, task: str, score: float, protocol: str | None = None) -> float:
    """(score - min) / (max - min) with the constants of `task` (NaN if none)."""
    n = self.normalization_for(task, protocol)
    if n is None:
      return float("nan")
    return (score - n["min"]) / (n["max"] - n["min"])


def _with_override(suite: "SuiteManifest", base: Protocol, name: str) -> Protocol:
  """`base` with the settings of the suite's ``[overrides.NAME]`` table."""
  table = suite.overrides.get(name)
  if table is None:
    known = ", ".join(sorted(suite.overrides)) or "none"
    raise UserError(
      f"unknown override '{name}' for suite '{suite.name}' (in --protocol "
      f"{base.name}{OVERRIDE_SEP}{name}); overrides: {known}"
    )
  applies = table.settings.get("applies_to", [])
  if base.name not in applies:
    raise UserError(
      f"override '{name}' of suite '{suite.name}' applies to protocols "
      f"{', '.join(applies)}, not '{base.name}'"
    )
  changes = {k: v for k, v in table.settings.items() if k != "applies_to"}
  return Protocol(
    name=f"{base.name}{OVERRIDE_SEP}{name}",
    description=f"{base.description} Override '{name}': {table.description}",
    settings={**base.settings, **changes},
    sources={**base.sources, **{k: table.sources.get(k, "") for k in changes}},
    disagreement={**base.disagreement, **table.disagreement},
  )


def _doc_table(table: Any, where: str, items: dict[str, Any]) -> dict[str, str]:
  """A protocol's ``sources`` or ``disagreement`` table, checked: item ->
  non-empty string, each item one the protocol sets, or ``normalization``
  (the protocol's own table, or the suite-wide one it uses)."""
  if table is None:
    return {}
  items = {**items, "normalization": items.get("normalization")}
  if not isinstance(table, dict):
    raise UserError(f'{where} must be a table of item = "text"')
  for key, text in table.items():
    if key not in items:
      raise UserError(f"{where}: '{key}' is not an item of the protocol; items: {', '.join(items)}")
    if not isinstance(text, str) or not text.strip():
      raise UserError(
        f"{where}: '{key}' must be a non-empty string (a source, or 'our choice: ...')"
      )
  return dict(table)


def _protocol(name: str, table: Any, path: Path, kind: str = "protocols") -> Protocol:
  """One ``[protocols.NAME]`` (or ``[overrides.NAME]``) table as a Protocol."""
  where = f"suite manifest {path}: [{kind}.{name}]"
  if not isinstance(table, dict):
    raise UserError(f"{where} must be a table")
  settings = {k: v for k, v in table.items() if k != "description" and k not in DOC_TABLES}
  return Protocol(
    name,
    str(table.get("description", "")),
    settings,
    sources=_doc_table(table.get("sources"), f"{where}.sources", settings),
    disagreement=_doc_table(table.get("disagreement"), f"{where}.disagreement", settings),
  )


def _read(path: Path) -> SuiteManifest:
  try:
    data = tomllib.loads(path.read_text())
  except (OSError, tomllib.TOMLDecodeError) as e:
    raise UserError(f"cannot read suite manifest {path}: {e}") from None
  for field in ("name", "backend", "tasks", "protocols", "default_protocol"):
    if field not in data:
      raise UserError(f"suite manifest {path} lacks the field '{field}'")
  protocols = {name: _protocol(name, p, path) for name, p in data["protocols"].items()}
  overrides = {
    name: _protocol(name, p, path, "overrides") for name, p in data.get("overrides", {}).items()
  }
  for name in [*protocols, *overrides]:
    if OVERRIDE_SEP in name or "@" in name:
      raise UserError(f"suite manifest {path}: protocol name '{name}' may not contain '+' or '@'")
  return SuiteManifest(
    name=data["name"],
    description=data.get("description", ""),
    backend=data["backend"],
    tasks=tuple(data["tasks"]),
    default_protocol=data["default_protocol"],
    protocols=protocols,
    overrides=overrides,
    normalization=dict(data.get("normalization", {})),
    raw=data,
    path=path,
  )


def list_suites() -> list[SuiteManifest]:
  folder = paths.manifest_dir("suites")
  return [_read(p) for p in sorted(folder.glob("*.toml"))]


def load_suite(name: str) -> SuiteManifest:
  path = paths.manifest_dir("suites") / f"{name}.toml"
  if not path.is_file():
    known = ", ".join(s.name for s in list_suites())
    raise UserError(f"unknown suite '{name}'; known suites: {known}")
  return _read(path)


PUBLISHED_TABLES = (("published", "published"), ("published_other_metric", "other metric"))


def published_entries(suite: SuiteManifest, protocol: str) -> list[dict[str, Any]]:
  """The ``[[published]]`` and ``[[published_other_metric]]`` entries of
  `protocol`'s base protocol, each with ``kind`` ("published" or "other
  metric") and ``value`` (its score, or value)."""
  base = base_name(protocol)
  rows = []
  for table, kind in PUBLISHED_TABLES:
    for entry in suite.raw.get(table, []) or []:
      if isinstance(entry, dict) and str(entry.get("protocol")) == base:
        value = entry.get("score", entry.get("value"))
        rows.append({**entry, "kind": kind, "value": value})
  return rows


def published_summary(suite: SuiteManifest, protocol: str) -> list[dict[str, Any]]:
  """The published entries of `protocol` grouped by (kind, rule, metric,
  budget, read_off): one line each, with the number of tasks and, for one
  task, the value."""
  groups: dict[tuple, list[dict[str, Any]]] = {}
  for e in published_entries(suite, protocol):
    key = (e["kind"], e.get("rule"), e.get("metric"), e.get("env_steps"), e.get("read_off"))
    groups.setdefault(key, []).append(e)
  out = []
  for (kind, rule, metric, steps, read_off), entries in groups.items():
    out.append(
      {
        "rule": rule,
        "kind": kind,
        "metric": metric,
        "env_steps": steps,
        "budget_note": entries[0].get("budget_note"),
        "read_off": read_off,
        "tasks": len(entries),
        "value": entries[0]["value"] if len(entries) == 1 else None,
      }
    )
  return out
