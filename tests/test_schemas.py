"""schema_version in every JSON record and --json output, the JSON Schemas of
docs/schemas/, and records written before schema_version existed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_report import REPS, manifests, results  # noqa: F401
from typer.testing import CliRunner

from disco_eval import store
from disco_eval.analysis import collect
from disco_eval.cli import app
from disco_eval.config.fingerprint import fingerprint
from disco_eval.paths import PROJECT_ROOT

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")

SCHEMAS = PROJECT_ROOT / "docs" / "schemas"
RECORDS = {"config.json": "config", "status.json": "status", "summary.json": "summary"}


def validate(doc: dict, name: str) -> None:
  """Raises unless `doc` is valid under docs/schemas/NAME.schema.json."""
  schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
  jsonschema.Draft202012Validator.check_schema(schema)
  jsonschema.Draft202012Validator(schema).validate(doc)


def strip_versions(run: Path) -> None:
  """Makes `run`'s records look as records written before schema_version."""
  for name in RECORDS:
    path = run / name
    doc = json.loads(path.read_text())
    doc.pop(store.SCHEMA_KEY)
    path.write_text(json.dumps(doc))


def test_every_schema_is_a_valid_draft_2020_12_schema() -> None:
  names = sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
  assert names == [
    f"{n}.schema.json"
    for n in ("checkpoint", "compare", "config", "evaluation", "status", "summary")
  ]
  for path in SCHEMAS.glob("*.schema.json"):
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_records_and_compare_output_follow_their_schemas(results: Path) -> None:  # noqa: F811
  run = next(results.glob("*/*/*/seed0"))
  for name, schema in RECORDS.items():
    doc = json.loads((run / name).read_text())
    assert doc[store.SCHEMA_KEY] == store.SCHEMA_VERSION
    validate(doc, schema)
  record = store.RunRecord(run)
  with record.lock():
    record.save_checkpoint({"w": np.ones(3, np.float32)}, 500)
  validate(json.loads((run / "checkpoint" / "checkpoint.json").read_text()), "checkpoint")
  out = CliRunner().invoke(app, ["compare", str(results), "--json", "--reps", str(REPS)])
  assert out.exit_code == 0, out.output
  validate(json.loads(out.stdout), "compare")


def test_list_outputs_stay_lists_with_a_version_in_each_item() -> None:
  out = CliRunner().invoke(app, ["suites", "list", "--json"])
  rows = json.loads(out.stdout)
  assert isinstance(rows, list) and rows
  assert all(r[store.SCHEMA_KEY] == store.SCHEMA_VERSION for r in rows)
  out = CliRunner().invoke(app, ["rules", "show", "ppo", "--json"])
  assert json.loads(out.stdout)[store.SCHEMA_KEY] == store.SCHEMA_VERSION


def test_records_without_schema_version_are_read_and_matched_as_before(results: Path) -> None:  # noqa: F811
  before = collect.collect(results)
  run = next(results.glob("*/a/good/seed0"))
  config = json.loads((run / "config.json").read_text())
  strip_versions(run)
  assert store.schema_version(json.loads((run / "config.json").read_text())) == 0
  after = collect.collect(results)
  assert [(r.rule, r.seed, r.score, r.fingerprint) for r in after.runs] == [
    (r.rule, r.seed, r.score, r.fingerprint) for r in before.runs
  ]
  assert not after.excluded
  old = {k: v for k, v in config.items() if k != store.SCHEMA_KEY}
  assert fingerprint(old) == fingerprint(config)
  # Opening the old record with the same config accepts it; the key is added
  # when the lock is taken (as the other volatile keys are refreshed).
  record = store.RunRecord.open(results, "toy", "a", "good", 0, old)
  assert store.SCHEMA_KEY not in json.loads((run / "config.json").read_text())
  with record.lock():
    pass
  assert json.loads((run / "config.json").read_text())[store.SCHEMA_KEY] == 1


@pytest.mark.slow
def test_a_real_catch_run_writes_versioned_records_valid_under_the_schemas(
  tmp_path: Path,
) -> None:
  out = tmp_path / "results"
  env = dict(os.environ, DISCO_EVAL_HOME=str(tmp_path / "home"))
  cmd = [sys.executable, "-m", "disco_eval.cli", "run", "catch", "--rule", "ppo"]
  cmd += ["--steps", "600", "--seeds", "1", "--out", str(out), "--json"]
  done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr
  rows = json.loads(done.stdout)
  assert rows and all(r[store.SCHEMA_KEY] == store.SCHEMA_VERSION for r in rows)
  found = sorted(out.rglob("*.json"))
  assert {p.name for p in found} == set(RECORDS)
  for path in found:
    doc = json.loads(path.read_text())
    assert doc[store.SCHEMA_KEY] == store.SCHEMA_VERSION, path
    validate(doc, RECORDS[path.name])
  run = found[0].parent
  strip_versions(run)
  again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
  assert again.returncode == 0, again.stderr  # the old record matches: skipped, not refused
  assert json.loads(again.stdout)[0]["status"] == "skipped"
