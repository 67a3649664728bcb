"""The shipped suite manifests: they load, their protocols are complete, and
their published baselines are well formed and cited."""

import csv
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from disco_eval import paths
from disco_eval.analysis import published
from disco_eval.config import suites

SUITES = sorted(p.stem for p in (paths.PROJECT_ROOT / "suites").glob("*.toml"))
PROCGEN_GAMES = [
  "bigfish",
  "bossfight",
  "caveflyer",
  "chaser",
  "climber",
  "coinrun",
  "dodgeball",
  "fruitbot",
  "heist",
  "jumper",
  "leaper",
  "maze",
  "miner",
  "ninja",
  "plunder",
  "starpilot",
]
TRAIN_KEYS = (
  "env_steps",
  "num_envs",
  "rollout_len",
  "buffer_capacity",
  "min_buffer",
  "sample_entries",
  "updates_per_iteration",
)


def _entries(manifest: suites.SuiteManifest) -> list[tuple[str, dict]]:
  """Every published-style entry: ``[[published]]`` and ``[[published_other_metric]]``."""
  out = []
  for key in ("published", "published_other_metric"):
    rows = manifest.raw.get(key, [])
    assert isinstance(rows, list), f"{manifest.name}: '{key}' must be an array of tables"
    out += [(key, row) for row in rows]
  return out


def test_the_new_suites_are_shipped():
  assert {"procgen", "crafter", "nethack"} <= set(SUITES)


@pytest.mark.parametrize("name", SUITES)
def test_manifest_loads_and_default_protocol_exists(name):
  m = suites.load_suite(name)
  assert m.name == name
  assert m.tasks and len(set(m.tasks)) == len(m.tasks)
  assert m.default_protocol in m.protocols
  assert m.protocol().name == m.default_protocol


@pytest.mark.parametrize("name", SUITES)
def test_protocols_have_a_budget_and_loop_settings(name):
  m = suites.load_suite(name)
  for p in m.protocols.values():
    assert p.description, f"{name}/{p.name} has no description"
    for key in TRAIN_KEYS:
      value = p.get(key)
      assert isinstance(value, int) and value > 0, f"{name}/{p.name}: {key} = {value!r}"
    assert p.get("min_buffer") <= p.get("buffer_capacity")


@pytest.mark.parametrize("name", SUITES)
def test_normalisation_tables_cover_known_tasks_with_a_positive_range(name):
  m = suites.load_suite(name)
  tables = [m.normalization] + [
    p.get("normalization") for p in m.protocols.values() if p.get("normalization") is not None
  ]
  for table in tables:
    assert isinstance(table, dict)
    for task, n in table.items():
      assert task in m.tasks
      assert set(n) == {"min", "max"} and n["max"] > n["min"]


def test_procgen_tasks_protocols_and_constants():
  m = suites.load_suite("procgen")
  assert m.backend == "envpool"
  assert sorted(m.tasks) == PROCGEN_GAMES
  assert m.raw["actions"] == 15
  assert set(m.protocols) >= {"disco", "easy-200"} and m.default_protocol == "disco"
  disco, easy = m.protocol("disco"), m.protocol("easy-200")
  assert disco.get("env_steps") == 50_000_000 and disco.get("distribution_mode") == "hard"
  assert disco.get("num_levels") == 0 and disco.get("eval_num_levels") == 0
  assert easy.get("env_steps") == 25_000_000 and easy.get("distribution_mode") == "easy"
  assert (easy.get("start_level"), easy.get("num_levels")) == (0, 200)
  assert easy.get("eval_num_levels") == 0
  for p in (disco, easy):
    assert sorted(p.get("normalization")) == PROCGEN_GAMES
    assert isinstance(p.get("eval_episodes"), int) and p.get("eval_episodes") > 0
  # The suite-wide table is the default protocol's (HARD) one.
  assert m.normalization == disco.get("normalization")
  # Spot checks of constants that differ between the modes (Cobbe et al. 2020).
  assert disco.get("normalization")["starpilot"] == {"min": 1.5, "max": 35.0}
  assert easy.get("normalization")["starpilot"] == {"min": 2.5, "max": 64.0}
  assert disco.get("normalization")["bigfish"] == {"min": 0.0, "max": 40.0}
  assert easy.get("normalization")["bigfish"] == {"min": 1.0, "max": 40.0}


def test_procgen_normalisation_follows_the_protocol():
  m = suites.load_suite("procgen")
  assert m.normalize("starpilot", 35.0, "disco") == pytest.approx(1.0)
  assert m.normalize("starpilot", 64.0, "easy-200") == pytest.approx(1.0)
  assert m.normalize("starpilot", 2.5, "easy-200@1000") == pytest.approx(0.0)


@pytest.mark.parametrize("name", SUITES)
def test_published_entries_are_cited_and_point_at_known_protocols_and_tasks(name):
  m = suites.load_suite(name)
  for key, row in _entries(m):
    where = f"{name} {key} {row.get('rule')!r}/{row.get('task')!r}"
    for field in ("rule", "task", "protocol", "citation"):
      assert isinstance(row.get(field), str) and row[field].strip(), f"{where}: {field}"
    assert row["protocol"] in m.protocols, where
    assert row["task"] in m.tasks or row["task"] == "*", where
    value = row.get("score" if key == "published" else "value")
    assert isinstance(value, (int, float)) and math.isfinite(value), where
    if "per_seed" in row:
      assert isinstance(row.get("seeds"), int), f"{where}: per_seed without seeds"
      assert len(row["per_seed"]) == row["seeds"], where
    if "seeds" in row:
      assert isinstance(row["seeds"], int) and row["seeds"] > 0, where
    if key == "published_other_metric":
      assert row.get("metric") and row["metric"] != m.protocol(row["protocol"]).get("metric")


@pytest.mark.parametrize("name", SUITES)
def test_report_reads_every_published_row_without_warnings(name):
  m = suites.load_suite(name)
  rows, warnings = published.published_rows(m)
  assert warnings == []
  # Every [[published]] row, plus the figures in another metric that the
  # protocol reports beside its score (shown with no score of their own).
  beside = [
    e
    for e in m.raw.get("published_other_metric", [])
    if e["metric"] in m.protocols[e["protocol"]].get("reported_beside", [])
  ]
  assert len(rows) == len(m.raw.get("published", [])) + len(beside)
  assert all(math.isnan(r.score) and r.beside for r in rows[len(rows) - len(beside) :])


def test_procgen_published_scores_are_the_mean_of_their_seeds():
  m = suites.load_suite("procgen")
  rows = m.raw["published"]
  assert rows
  for row in rows:
    if "per_seed" in row:
      assert row["seeds"] == 3
      assert row["score"] == pytest.approx(statistics.mean(row["per_seed"]), abs=1e-3)
  # Every published rule of a protocol covers all 16 games (so its aggregate is shown).
  by_rule: dict[tuple[str, str], set[str]] = {}
  for row in rows:
    by_rule.setdefault((row["protocol"], row["rule"]), set()).add(row["task"])
  assert ("easy-200", "PPO (OpenAI train-procgen, published)") in by_rule
  assert ("disco", "PPG (OpenAI, published)") in by_rule
  for key, tasks in by_rule.items():
    assert sorted(tasks) == PROCGEN_GAMES, key


def test_procgen_published_aggregates_match_the_shared_reference():
  """IQMs of the per-seed rows, normalised by the manifest, are those in
  shared/published/README.md (PPO easy-200 0.353, PPG hard 0.667)."""
  m = suites.load_suite("procgen")
  rows, _ = published.published_rows(m)
  for protocol, rule, iqm in (
    ("easy-200", "PPO (OpenAI train-procgen, published)", 0.353),
    ("disco", "PPG (OpenAI, published)", 0.667),
    ("disco", "PPO (OpenAI PPG repo, published)", 0.398),
  ):
    chosen = [r for r in rows if r.protocol == protocol and r.rule == rule]
    matrices = published.published_matrices(chosen, PROCGEN_GAMES, m)
    matrix, per_seed = matrices[rule]
    assert per_seed and matrix.shape == (3, 16)
    flat = sorted(matrix.ravel())
    assert statistics.mean(flat[12:36]) == pytest.approx(iqm, abs=1e-3)


def _csv_rows(shared_dir: Path, name: str) -> list[dict]:
  path = shared_dir / "published" / name
  if not path.is_file():
    pytest.skip(f"{path} is missing")
  with path.open(newline="") as f:
    return list(csv.DictReader(f))


def test_procgen_per_seed_scores_come_from_the_shared_csv(shared_dir):
  data = _csv_rows(shared_dir, "procgen_published_per_seed.csv")
  scores = {float(r["score"]) for r in data}
  m = suites.load_suite("procgen")
  for row in m.raw["published"]:
    for v in row.get("per_seed", []):
      assert v in scores, (row["rule"], row["task"], v)


def test_crafter_protocol_and_published_human_score(shared_dir):
  m = suites.load_suite("crafter")
  assert m.backend == "crafter" and m.tasks == ("crafter-reward",)
  assert m.raw["actions"] == 17
  p = m.protocol("scoreboard-1m")
  assert p.name == "scoreboard-1m" and p.get("env_steps") == 1_000_000
  assert p.get("metric") == "score" and "reward" in p.get("reported_beside")
  assert len(p.get("achievements")) == 22
  assert m.normalize("crafter-reward", 50.0, "scoreboard-1m") == pytest.approx(0.5)
  data = _csv_rows(shared_dir, "crafter_published_per_seed.csv")
  human_csv = [float(r["score_pct"]) for r in data if r["method"] == "human"]
  assert len(human_csv) == 5
  human = [r for r in m.raw["published"] if r["rule"].startswith("Human")]
  assert len(human) == 1
  assert abs(human[0]["score"] - statistics.mean(human_csv)) <= 0.5
  assert human[0]["per_seed"] == pytest.approx(human_csv)
  random_csv = [float(r["score_pct"]) for r in data if r["method"] == "random"]
  random = [r for r in m.raw["published"] if r["rule"].startswith("Random")]
  assert random[0]["per_seed"] == pytest.approx(random_csv)


def test_nethack_protocol():
  m = suites.load_suite("nethack")
  assert m.backend == "nle" and m.tasks == ("NetHackChallenge-v0",)
  assert m.raw["actions"] == 121 and m.raw["seedable"] is False
  p = m.protocol("challenge")
  assert p.get("metric") == "median_score" and p.get("eval_episodes") == 4096
  assert "seed" in p.description.lower()
  assert m.protocol().get("metric") == "mean_score"  # disco: the figure's mean


def test_cli_suites_show_procgen_easy_200(tmp_path):
  env = dict(os.environ, DISCO_EVAL_HOME=str(tmp_path / "home"))
  env.pop("DISCO_EVAL_MANIFESTS", None)
  res = subprocess.run(
    [
      sys.executable,
      "-m",
      "disco_eval.cli",
      "suites",
      "show",
      "procgen",
      "--protocol",
      "easy-200",
      "--json",
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=120,
  )
  assert res.returncode == 0, res.stdout + res.stderr
  info = json.loads(res.stdout)
  assert info["name"] == "procgen" and info["backend"] == "envpool"
  assert info["protocol"] == "easy-200"
  assert sorted(info["tasks"]) == PROCGEN_GAMES
  assert info["settings"]["env_steps"] == 25_000_000
  assert info["settings"]["normalization"]["starpilot"] == {"min": 2.5, "max": 64.0}
  assert any(r["protocol"] == "easy-200" for r in info["published"])
