"""Suite manifests (``suites/<name>.toml``): tasks, backend and protocols.

A protocol fixes the step budget, the training loop's settings, the
evaluation and the metric; every run record and report names the protocol it
used.
"""

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from disco_eval import paths
from disco_eval.errors import UserError


@dataclasses.dataclass(frozen=True)
class Protocol:
  name: str
  description: str
  settings: dict[str, Any]

  def get(self, key: str, default: Any = None) -> Any:
    return self.settings.get(key, default)


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

  def protocol(self, name: str | None = None) -> Protocol:
    name = name or self.default_protocol
    if name not in self.protocols:
      raise UserError(
        f"unknown protocol '{name}' for suite '{self.name}'; "
        f"valid protocols: {', '.join(sorted(self.protocols))}"
      )
    return self.protocols[name]

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
    name = (protocol or "").split("@", 1)[0]
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


def _read(path: Path) -> SuiteManifest:
  try:
    data = tomllib.loads(path.read_text())
  except (OSError, tomllib.TOMLDecodeError) as e:
    raise UserError(f"cannot read suite manifest {path}: {e}") from None
  for field in ("name", "backend", "tasks", "protocols", "default_protocol"):
    if field not in data:
      raise UserError(f"suite manifest {path} lacks the field '{field}'")
  protocols = {
    name: Protocol(
      name, str(p.get("description", "")), {k: v for k, v in p.items() if k != "description"}
    )
    for name, p in data["protocols"].items()
  }
  return SuiteManifest(
    name=data["name"],
    description=data.get("description", ""),
    backend=data["backend"],
    tasks=tuple(data["tasks"]),
    default_protocol=data["default_protocol"],
    protocols=protocols,
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
