"""compare, export csv and plot over several results folders (results of several
machines): runs are gathered from all, and a run found twice is counted once."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_report import BAD, GOOD, REPS, manifests, results, write_matrix, write_run  # noqa: F401
from typer.testing import CliRunner

from disco_eval.analysis import collect, compare
from disco_eval.cli import app
from disco_eval.errors import UserError


def _points(result: compare.CompareResult) -> dict:
  return {(r.rule, r.metric): (r.point, r.lo, r.hi, r.seeds) for r in result.groups[0].aggregate}


@pytest.fixture
def split(tmp_path: Path, manifests: Path) -> tuple[Path, Path]:  # noqa: F811
  """The `results` fixture's runs split over two folders (seeds 0-2, 3-4)."""
  a, b = tmp_path / "machine_a", tmp_path / "machine_b"
  write_matrix(a, "good", GOOD[:3])
  write_matrix(a, "bad", BAD[:3])
  write_matrix(b, "good", GOOD[3:], first_seed=3)
  write_matrix(b, "bad", BAD[3:], first_seed=3)
  return a, b


def test_runs_are_gathered_from_every_folder(results: Path, split: tuple[Path, Path]) -> None:  # noqa: F811
  whole = compare.compare(results, reps=REPS)
  both = compare.compare(list(split), reps=REPS)
  assert _points(both) == _points(whole)
  assert not both.excluded
  assert both.to_json()["roots"] == [str(p) for p in split]


def test_a_run_found_twice_is_counted_once(results: Path, tmp_path: Path) -> None:  # noqa: F811
  copy = tmp_path / "copy"
  shutil.copytree(results, copy)
  whole = compare.compare(results, reps=REPS)
  both = compare.compare([results, copy], reps=REPS)
  assert _points(both) == _points(whole)
  assert {e.reason for e in both.excluded} == {"duplicate"}
  assert len(both.excluded) == 2 * GOOD.size
  assert all(Path(e.path).is_relative_to(copy) for e in both.excluded)
  assert any("duplicate" in w and str(results) in w for w in both.warnings)


def test_the_first_folder_given_wins_and_a_differing_score_is_named(
  tmp_path: Path,
  manifests: Path,  # noqa: F811
) -> None:
  a, b = tmp_path / "a", tmp_path / "b"
  for seed in range(3):
    write_run(a, "a", "good", seed, 0.5)
    write_run(b, "a", "good", seed, 0.5 if seed else 0.9)
  found = collect.collect([b, a])
  kept = {r.seed: r for r in found.runs}
  assert kept[0].normalized_score == pytest.approx(0.9)
  assert all(r.path.is_relative_to(b) for r in found.runs)
  detail = next(e.detail for e in found.excluded if e.seed == 0)
  assert "score 5 here, 9 there" in detail


def test_runs_of_other_settings_are_not_duplicates(tmp_path: Path, manifests: Path) -> None:  # noqa: F811
  """Same rule, task and seed but another budget: another configuration, kept apart."""
  a, b = tmp_path / "a", tmp_path / "b"
  write_run(a, "a", "good", 0, 0.5)
  write_run(b, "a", "good", 0, 0.6, env_steps=2000, protocol_steps=1000)
  found = collect.collect([a, b])
  assert len(found.runs) == 2 and not found.excluded


def test_one_folder_given_twice_is_read_once(results: Path) -> None:  # noqa: F811
  found = collect.collect([results, results / "." / ""])
  assert not found.excluded and len(found.runs) == 2 * GOOD.size


def test_cli_takes_several_folders(results: Path, tmp_path: Path) -> None:  # noqa: F811
  copy = tmp_path / "copy"
  shutil.copytree(results, copy)
  runner = CliRunner()
  args = [str(results), str(copy), "--reps", str(REPS)]
  out = runner.invoke(app, ["compare", *args, "--json"])
  assert out.exit_code == 0, out.output
  doc = json.loads(out.stdout)
  assert doc["roots"] == [str(results), str(copy)]
  assert sum(e["reason"] == "duplicate" for e in doc["excluded"]) == 2 * GOOD.size
  out = runner.invoke(app, ["export", "csv", *args])
  assert out.exit_code == 0, out.output
  frame = pd.read_csv(io.StringIO(out.stdout))
  final = frame[frame["kind"] == "final"]
  assert len(final) == 2 * GOOD.size
  assert not final.duplicated(["task", "rule", "seed"]).any()
  assert "duplicate" in out.stderr
  png = tmp_path / "iqm.png"
  out = runner.invoke(app, ["plot", "intervals", *args, "--out", str(png)])
  assert out.exit_code == 0, out.output
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_runs_among_several_is_named(results: Path, tmp_path: Path) -> None:  # noqa: F811
  (tmp_path / "empty").mkdir()
  for folder in (tmp_path / "typo", tmp_path / "empty"):
    with pytest.raises(UserError, match=f"no runs found under {folder}; run"):
      collect.collect([results, folder])
