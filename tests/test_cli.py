"""The command line, run as a user runs it (subprocesses)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
TINY = [
  "--set",
  "train.min_buffer=4",
  "--set",
  "train.sample_entries=4",
  "--set",
  "train.chunk=8",
  "--set",
  "agent.torso_hidden=[32]",
]


def cli(*args, home: Path, timeout=600):
  env = dict(os.environ, DISCO_EVAL_HOME=str(home))
  return subprocess.run(
    [sys.executable, "-m", "disco_eval.cli", *map(str, args)],
    capture_output=True,
    text=True,
    env=env,
    timeout=timeout,
  )


def one_line_error(res) -> str:
  assert res.returncode == 1, res.stdout + res.stderr
  lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
  assert len(lines) == 1, res.stderr
  assert lines[0].startswith("error:")
  assert "Traceback" not in res.stderr
  return lines[0]


def test_rules_list_and_show(disco_home):
  res = cli("rules", "list", "--json", home=disco_home)
  names = {r["name"] for r in json.loads(res.stdout)}
  assert {"disco103", "actor_critic"} <= names
  res = cli("rules", "show", "disco103", "--json", home=disco_home)
  info = json.loads(res.stdout)
  assert info["sha256"] == "dac840a15b81e8805326363458c33979626172618f620d9e6e170315388530aa"
  assert info["settings"]["hyperparams"]["value_cost"] == 0.2


def test_checkpoint_every_below_one_is_refused_by_its_check(disco_home, tmp_path):
  args = ("run", "catch", "--rule", "actor_critic", "--checkpoint-every", "0", "--out", tmp_path)
  line = one_line_error(cli(*args, home=disco_home))
  assert "--checkpoint-every = 0 is out of range: an integer >= 1" in line
  assert not any(tmp_path.iterdir())


def test_unknown_names_give_one_line(disco_home, tmp_path):
  line = one_line_error(cli("rules", "show", "nope", home=disco_home))
  assert "disco103" in line and "actor_critic" in line
  line = one_line_error(cli("run", "nosuite", "--out", tmp_path, home=disco_home))
  assert "catch" in line
  line = one_line_error(cli("run", "catch", "--tasks", "pong", "--out", tmp_path, home=disco_home))
  assert "valid tasks: catch" in line
  line = one_line_error(cli("run", "catch", "--protocol", "x", "--out", tmp_path, home=disco_home))
  assert "reference" in line
  line = one_line_error(
    cli(
      "run", "catch", "--rule", tmp_path / "missing.npz", "--out", tmp_path / "r", home=disco_home
    )
  )
  assert "missing.npz" in line
  assert not (tmp_path / "r").exists()


def test_offline_pull_names_where_to_put_the_file(disco_home, tmp_path, monkeypatch):
  # No network here: point the download at a closed local port.
  res = cli(
    "rules", "pull", "disco103", "--url", "http://127.0.0.1:9/disco_103.npz", home=disco_home
  )
  line = one_line_error(res)
  assert str(disco_home / "rules" / "disco_103.npz") in line


@pytest.mark.slow
def test_pull_from_file_then_run_and_resume(disco_home, tmp_path):
  weights = SHARED / "rules" / "disco_103.npz"
  if not weights.is_file():
    pytest.skip("weights missing")
  res = cli("rules", "pull", "disco103", "--file", weights, home=disco_home)
  assert res.returncode == 0, res.stderr
  assert (disco_home / "rules" / "disco_103.npz").is_file()
  out = tmp_path / "res"
  args = [
    "run",
    "catch",
    "--rule",
    "disco103",
    "--rule",
    "actor_critic",
    "--seeds",
    "2",
    "--steps",
    "600",
    "--out",
    out,
    "--json",
    *TINY,
  ]
  res = cli(*args, home=disco_home)
  assert res.returncode == 0, res.stderr
  rows = json.loads(res.stdout)
  assert {(r["rule"], r["seed"], r["status"]) for r in rows} == {
    ("disco103", 0, "complete"),
    ("disco103", 1, "complete"),
    ("actor_critic", 0, "complete"),
    ("actor_critic", 1, "complete"),
  }
  run = out / "catch" / "catch" / "disco103" / "seed1"
  config = json.loads((run / "config.json").read_text())
  assert config["rule"]["sha256"].startswith("dac840a1")
  assert config["seed"] == 1 and config["protocol"]["name"] == "reference"
  assert config["overrides"]["agent.torso_hidden"] == "[32]"
  assert "jax" in config["versions"]
  summary = json.loads((run / "summary.json").read_text())
  assert -1.0 <= summary["score"] <= 1.0
  assert summary["normalized_score"] == pytest.approx((summary["score"] + 1) / 2)
  header, *lines = (run / "metrics.csv").read_text().strip().splitlines()
  assert header.split(",")[:2] == ["iteration", "env_steps"]
  assert len(lines) == 11  # ceil(600 / 58) iterations
  assert json.loads((run / "status.json").read_text())["status"] == "complete"
  # Same command again: every run is skipped, nothing is redone.
  res = cli(*args, home=disco_home)
  assert res.returncode == 0
  assert {r["status"] for r in json.loads(res.stdout)} == {"skipped"}
  # A different config for the same run folder is refused.
  line = one_line_error(
    cli(
      "run",
      "catch",
      "--rule",
      "actor_critic",
      "--seeds",
      "1",
      "--steps",
      "600",
      "--out",
      out,
      *TINY[:-2],
      "--set",
      "agent.torso_hidden=[16]",
      home=disco_home,
    )
  )
  assert "different config" in line


def test_suites_show(disco_home):
  res = cli("suites", "show", "catch", "--json", home=disco_home)
  info = json.loads(res.stdout)
  assert info["protocol"] == "reference"
  assert info["settings"]["env_steps"] == 58000


def test_held_out_suites_name_their_valid_tasks_and_protocols(disco_home, tmp_path):
  for suite, task in (
    ("crafter", "crafter-reward"),
    ("nethack", "NetHackChallenge-v0"),
    ("procgen", "starpilot"),
  ):
    line = one_line_error(cli("run", suite, "--tasks", "pong", "--out", tmp_path, home=disco_home))
    assert "unknown task 'pong'" in line and task in line
  line = one_line_error(
    cli("run", "crafter", "--protocol", "10m", "--out", tmp_path, home=disco_home)
  )
  assert "1m" in line
  line = one_line_error(
    cli("run", "nethack", "--set", "protocol.metric=mean", "--out", tmp_path, home=disco_home)
  )
  assert "protocol.eval_episodes" in line
  assert not any(tmp_path.iterdir())


def test_missing_qt5_names_the_package(monkeypatch):
  import builtins

  from disco_eval.config import suites
  from disco_eval.envs import registry
  from disco_eval.errors import UserError

  real_import = builtins.__import__

  def no_qt(name, *args, **kwargs):
    if name == "envpool":
      raise ImportError("libQt5Gui.so.5: cannot open shared object file: No such file or directory")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_qt)
  with pytest.raises(UserError, match="apt-get install libqt5gui5"):
    registry.make(suites.load_suite("procgen"), "coinrun")


def test_progress_display_draws_a_bar_per_run_and_notes_events():
  from rich.console import Console

  from disco_eval.cli.progress import sweep_progress
  from disco_eval.runs import Progress

  console = Console(record=True, width=160, force_terminal=True)  # bars: on a terminal
  with sweep_progress(console) as on_progress:
    on_progress(Progress("plan", "", "", (), total_steps=200, message="1 rule x 2 seeds"))
    on_progress(
      Progress(
        "chunk",
        "ac",
        "catch",
        (0, 1),
        50,
        100,
        steps_per_s=400.0,
        latest_returns={0: 0.5, 1: -0.25},
      )
    )
    on_progress(Progress("skip", "ac", "catch", (2,), 100, 100))
    on_progress(Progress("busy", "ac", "catch", (3,), 0, 100, message="locked"))
    bars = on_progress.bars
    assert [t.description for t in bars.tasks] == [
      "all (1 rule x 2 seeds)",
      "ac / catch / seed 0",
      "ac / catch / seed 1",
      "ac / catch / seed 2",
    ]
    assert [t.completed for t in bars.tasks] == [200, 50, 50, 100]
    assert bars.tasks[1].fields["info"] == "200 steps/s  return +0.500"
  text = console.export_text()
  assert "skip ac/catch seed 2: already complete" in text
  assert "busy ac/catch seed 3: locked" in text


def test_cli_and_launch_import_without_cycles():
  """No module of disco_eval.cli or disco_eval.launch is on an import cycle,
  counting imports inside functions (parsed, not run). `from P import M` of a
  submodule M counts as importing P.M (as import linters count it)."""
  import ast

  package = Path(__file__).resolve().parents[1] / "disco_eval"
  names = {
    ".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): p
    for p in package.rglob("*.py")
  }

  def imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        # `from P import M` imports the module P.M if there is one, else names of P.
        found |= {
          f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module
          for a in node.names
        }
    return {n for n in found if n in names}

  graph = {name: imported(path) - {name} for name, path in names.items()}
  for start in (n for n in graph if n.startswith(("disco_eval.cli", "disco_eval.launch"))):
    seen, todo = set(), list(graph[start])
    while todo:
      name = todo.pop()
      assert name != start, f"{start} imports itself through {sorted(seen)}"
      if name not in seen:
        seen.add(name)
        todo += graph[name]
