"""A recorded run, rebuilt from its config.json: for reproducing and re-evaluating it.

:func:`rebuild` reads a run folder's config and turns it back into the sweep
of that one run (suite, task, rule, seed, protocol, budget, ``--set``
overrides), resolves the rule again and compares the config this code
would record now with the stored one: a changed rule checkpoint (its
sha256), protocol, setting or level set shows as a difference.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from disco_eval import provenance
from disco_eval.config import suites
from disco_eval.errors import UserError
from disco_eval.rules import weights
from disco_eval.runs.plan import plan_sweep, run_config
from disco_eval.runs.spec import SweepSpec
from disco_eval.store import CONFIG_FILE, STATUS_FILE
from disco_eval.store.atomic import read_json
from disco_eval.store.config_match import config_difference


@dataclasses.dataclass
class Rebuilt:
  """A recorded run rebuilt: its stored `config`, the one-run `spec`, the
  suite, resolved rule, the RunConfig this code makes of it, and `data`:
  why the data it needs differ now (a phrase), or None."""

  path: Path
  config: dict[str, Any]
  spec: SweepSpec
  suite: Any
  rule: Any
  run_config: Any
  data: str | None

  @property
  def seed(self) -> int:
    return int(self.config["seed"])


def read_config(run: Path) -> dict[str, Any]:
  """A run folder's config.json (one-line UserErrors when it is not a run)."""
  run = Path(run)
  if not run.is_dir():
    raise UserError(
      f"{run} is not a folder; give a run folder (<out>/<suite>/<task>/<rule>/seed<k>)"
    )
  try:
    config = read_json(run / CONFIG_FILE)
  except FileNotFoundError:
    raise UserError(
      f"{run} holds no {CONFIG_FILE}: give a run folder (<out>/<suite>/<task>/<rule>/seed<k>)"
    ) from None
  except (OSError, ValueError) as e:
    raise UserError(f"{run / CONFIG_FILE} is unreadable ({e})") from None
  needed = ("suite", "task", "rule", "seed", "protocol", "budget")
  if not isinstance(config, dict) or any(k not in config for k in needed):
    raise UserError(f"{run / CONFIG_FILE} is not a run's config (it lacks {', '.join(needed)})")
  return config


def run_status(run: Path) -> str | None:
  """The run's status ("complete", ...) or None."""
  try:
    doc = read_json(Path(run) / STATUS_FILE)
  except (OSError, ValueError):
    return None
  return doc.get("status") if isinstance(doc, dict) else None


def _rule(config: dict) -> tuple[str, Any, str | None]:
  """(rule spec for ``--rule``, resolved rule, why it differs or None)."""
  recorded = config["rule"]
  name, source, sha = recorded.get("name"), recorded.get("source"), recorded.get("sha256")
  candidates = [name]
  if source:
    candidates.append(source if str(source).endswith(".toml") else f"{name}={source}")
  found, last = None, None
  for spec in candidates:
    try:
      rule = weights.resolve_rule(spec)
    except UserError as e:
      last = str(e)
      continue
    if rule.label != name:
      continue
    if sha is None or rule.sha256 == sha:
      return spec, rule, None
    found = (spec, rule)
  if found is not None:
    why = f"rule {name}'s weights have sha256 {found[1].sha256[:12]} here, {sha[:12]} in the run"
    return found[0], found[1], why
  raise UserError(f"rule {name} of the run cannot be loaded here: {last or 'unknown rule'}")


def data_difference(config: dict) -> str | None:
  """Why the data files the run read (e.g. Boxoban level sets) differ now."""
  recorded = (config.get(provenance.PROVENANCE_KEY) or {}).get("data")
  now = provenance.data_fingerprint(config["suite"])
  if not isinstance(recorded, dict):
    return None
  found = provenance.data_difference(recorded, now or {})
  return None if found is None else f"its data files differ ({found})"


def rebuild(run: Path, out: Path) -> Rebuilt:
  """The run recorded in folder `run`, as a one-run sweep writing to `out`."""
  config = read_config(run)
  rule_spec, rule, rule_why = _rule(config)
  overrides = config.get("overrides") or {}
  spec = SweepSpec(
    suite=config["suite"],
    rules=(rule_spec,),
    seeds=(int(config["seed"]),),
    tasks=(config["task"],),
    steps=int(config["budget"]),
    protocol=config["protocol"]["name"],
    out=Path(out),
    overrides=tuple((str(k), str(v)) for k, v in overrides.items()),
  )
  plan = plan_sweep(spec)
  unit = plan.units[0]
  suite = suites.load_suite(spec.suite)
  made = run_config(spec, suite, unit.task, plan.rules[0], unit.overrides)
  if config.get("episodes_reproducible") is False:
    made = dataclasses.replace(made, episodes_reproducible=False)
  why = rule_why or data_difference(config)
  if why is None:
    now = {**made.to_json(), "seed": config["seed"]}
    difference = config_difference(config, now)
    why = None if difference is None else f"its config differs: {difference}"
  return Rebuilt(Path(run), config, spec, suite, plan.rules[0], made, why)
