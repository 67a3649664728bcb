"""The command line under real use (issue 13, items 6, 7, 9, 10): logs off a
terminal, escaped user text, one-line errors, exit codes, help and --version.

Most tests start the CLI as a user does (a subprocess, output to pipes)."""

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from disco_eval import store
from disco_eval.paths import PROJECT_ROOT

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
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


def _env(home: Path, **extra: str) -> dict:
  """The environment of a CLI subprocess: this checkout first on the path."""
  path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
  env = dict(os.environ, DISCO_EVAL_HOME=str(home), PYTHONPATH=path)
  env.pop("COLUMNS", None)
  env.update(extra)
  return env


def cli(*args, home: Path, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
  """Runs `disco-eval ARGS` with stdout and stderr to pipes."""
  return subprocess.run(
    [sys.executable, "-m", "disco_eval.cli", *map(str, args)],
    capture_output=True,
    text=True,
    env=_env(home, **extra),
    timeout=timeout,
  )


def one_line_error(res: subprocess.CompletedProcess) -> str:
  """The one `error: ...` line of a failed command (exit 1, no traceback)."""
  assert res.returncode == 1, res.stdout + res.stderr
  lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
  assert len(lines) == 1, res.stderr
  assert lines[0].startswith("error:")
  assert "Traceback" not in res.stderr + res.stdout
  return lines[0]


# --- item 6: logs off a terminal -----------------------------------------------------


@pytest.mark.slow
def test_piped_progress_is_written_while_the_run_goes_on(disco_home, tmp_path):
  """Piped stdout (as under Slurm) gets a plain progress line per chunk while
  the run trains: a job killed mid-run leaves a log saying how far it got."""
  args = ["run", "catch", "--rule", "actor_critic", "--seeds", "1", "--steps", "50000000"]
  proc = subprocess.Popen(
    [sys.executable, "-m", "disco_eval.cli", *args, "--out", str(tmp_path / "r"), *TINY],
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    env=_env(disco_home),
  )
  seen, deadline = b"", time.monotonic() + 300
  try:
    while b"latest return" not in seen and time.monotonic() < deadline:
      ready, _, _ = select.select([proc.stdout], [], [], 1.0)
      if ready:
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
          break
        seen += chunk
    assert proc.poll() is None, seen.decode()  # still training: 50M steps
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  text = seen.decode()
  assert "sweep: 1 runs" in text, text
  line = next(x for x in text.splitlines() if "latest return" in x)
  assert re.fullmatch(
    r"actor_critic/catch seeds 0: [\d,]+/50,000,\d+ env steps, [\d,]+ steps/s, "
    r"latest return ([+-]\d\.\d{3}|n/a)",
    line,
  ), line
  assert "\x1b[" not in text  # no terminal control codes in a log


def test_plain_display_prints_every_event_and_a_heartbeat():
  from disco_eval.cli.progress import sweep_progress
  from disco_eval.runs import Progress

  console = Console(record=True, width=200, force_terminal=False)
  with sweep_progress(console, heartbeat_s=0.05) as on_progress:
    on_progress(Progress("plan", "", "", (0, 1), total_steps=200, message="2 runs"))
    chunk = Progress(
      "chunk", "r[red]x", "catch", (0, 1), 50, 100, steps_per_s=400.0, latest_return=0.5
    )
    on_progress(chunk)
    deadline = time.monotonic() + 30
    while "still running" not in console.export_text(clear=False):
      assert time.monotonic() < deadline, "no heartbeat line"
      time.sleep(0.05)
    on_progress(Progress("busy", "ac", "catch", (3,), message="locked [pid 7]"))
  every = console.export_text().splitlines()
  beats = [x for x in every if x.startswith("still running (")]
  assert any("last: r[red]x/catch seeds 0,1: 50/100" in x for x in beats), every
  assert [x for x in every if x not in beats] == [
    "sweep: 2 runs, 200 env steps in all",
    "r[red]x/catch seeds 0,1: 50/100 env steps, 400 steps/s, latest return +0.500",
    "busy ac/catch seeds 3: locked [pid 7]",
  ]


def test_tables_honour_columns_off_a_terminal(disco_home):
  res = cli("rules", "list", home=disco_home, COLUMNS="60")
  assert res.returncode == 0, res.stderr
  lines = res.stdout.splitlines()
  assert any("disco103" in x for x in lines)
  assert max(len(x) for x in lines) <= 60, res.stdout
  wide = cli("rules", "list", home=disco_home, COLUMNS="230")
  assert max(len(x) for x in wide.stdout.splitlines()) > 60


# --- item 7: escaping, one-line errors ---------------------------------------------


def test_error_lines_keep_square_brackets(disco_home, tmp_path):
  line = one_line_error(
    cli("run", "catch", "--rule", "actor_critic", "--set", "agent.nosuch=1", home=disco_home)
  )
  assert "valid keys in [agent]: " in line, line
  line = one_line_error(cli("export", "csv", tmp_path / "res[red]", home=disco_home))
  assert f"{tmp_path}/res[red]" in line, line


def test_the_runs_table_and_the_bars_keep_square_brackets(monkeypatch):
  from disco_eval.cli import run as cli_run
  from disco_eval.cli.progress import sweep_progress
  from disco_eval.runs import Progress, RunResult

  console = Console(record=True, width=300, force_terminal=False)
  monkeypatch.setattr(cli_run, "out", console)
  result = RunResult("r[red]", "catch", 0, "failed", Path("res[red]/seed0"), error="x [bold]y")
  cli_run._print_results("catch", [result], as_json=False)
  text = console.export_text()
  assert "res[red]/seed0" in text and "r[red]" in text and "x [bold]y" in text, text
  bars = Console(record=True, width=300, force_terminal=True)
  with sweep_progress(bars) as on_progress:
    on_progress(Progress("start", "r[red]", "t[b]", (0,), 0, 100))
    on_progress(Progress("failed", "r[red]", "t[b]", (0,), message="m [i]z"))
  text = bars.export_text()
  assert "r[red] / t[b] / seed 0" in text and "failed r[red]/t[b] seeds 0: m [i]z" in text


def _toy_results(tmp_path: Path) -> tuple[Path, Path]:
  """(results, manifests): one complete run of a one-task synthetic suite."""
  manifests = tmp_path / "manifests"
  (manifests / "suites").mkdir(parents=True)
  shutil.copytree(PROJECT_ROOT / "rules", manifests / "rules")
  (manifests / "suites" / "toy.toml").write_text(
    'name = "toy"\ndescription = "synthetic"\nbackend = "jax"\ntasks = ["a"]\n'
    'default_protocol = "std"\n[protocols.std]\ndescription = "standard"\n'
    'env_steps = 1000\nnum_envs = 2\nrollout_len = 50\nmetric = "return"\n'
    "[normalization]\na = { min = 0.0, max = 1.0 }\n"
  )
  root = tmp_path / "results"
  config = {
    "suite": "toy",
    "task": "a",
    "seed": 0,
    "protocol": {"name": "std", "env_steps": 1000},
    "rule": {"name": "alpha", "kind": "test"},
    "train": {"num_envs": 2, "rollout_len": 50},
    "env_steps": 1000,
  }
  record = store.RunRecord.open(root, "toy", "a", "alpha", 0, config)
  record.append_metrics(
    [
      {
        "iteration": i,
        "env_steps": 100 * (i + 1),
        "episodes": 2,
        "avg_return": 0.05 * i,
        "learner_steps": i,
        "loss": 0.1,
      }
      for i in range(10)
    ]
  )
  summary = {"score": 0.5, "normalized_score": 0.5, "protocol": "std", "env_steps": 1000}
  record.mark_complete({**summary, "metric": "return"})
  return root, manifests


def test_out_a_folder_is_a_one_line_error(disco_home, tmp_path):
  root, manifests = _toy_results(tmp_path)
  folder = tmp_path / "figures.png"
  folder.mkdir()
  env = {"DISCO_EVAL_MANIFESTS": str(manifests)}
  line = one_line_error(cli("export", "csv", root, "--out", tmp_path, home=disco_home, **env))
  assert "is a folder" in line and "--out FILE.csv" in line, line
  line = one_line_error(
    cli("plot", "intervals", root, "--out", folder, "--reps", 100, home=disco_home, **env)
  )
  assert "is a folder" in line and "--out FILE.png" in line, line
  assert not any(folder.iterdir())


def test_an_internal_error_is_one_line_and_a_traceback_file(disco_home, monkeypatch, capsys):
  from disco_eval import cli as cli_pkg
  from disco_eval.config import suites

  def bug():
    raise RuntimeError("boom [red]x")

  monkeypatch.setattr(suites, "list_suites", bug)
  monkeypatch.setattr(sys, "argv", ["disco-eval", "suites", "list"])
  with pytest.raises(SystemExit) as exit_info:
    cli_pkg.main()
  assert exit_info.value.code == 1
  lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
  assert len(lines) == 1, lines
  logs = list((disco_home / "logs").iterdir())
  assert len(logs) == 1
  assert lines[0] == (
    f"error: internal error (RuntimeError: boom [red]x); the full traceback is in {logs[0]}"
  )
  text = logs[0].read_text()
  assert text.startswith("command: disco-eval suites list")
  assert "Traceback" in text and "in bug" in text


# --- item 9: exit codes --------------------------------------------------------------


def test_a_run_whose_every_seed_is_busy_exits_3(monkeypatch, tmp_path):
  from disco_eval import launch
  from disco_eval.cli import run as cli_run
  from disco_eval.runs import RunResult

  def all_busy(spec, options, on_progress):
    return [
      RunResult("ac", "catch", s, "busy", tmp_path / f"seed{s}", error="locked") for s in spec.seeds
    ]

  monkeypatch.setattr(launch, "run", all_busy)
  app = typer.Typer()
  cli_run.register(app)
  res = CliRunner().invoke(app, ["catch", "--seeds", "2", "--out", str(tmp_path)])
  assert res.exit_code == 3, res.output
  assert "nothing ran: all 2 run(s) are being written by another process" in res.output


@pytest.mark.slow
def test_a_run_held_by_another_process_exits_3(disco_home, tmp_path):
  args = ["run", "catch", "--rule", "actor_critic", "--seeds", "1", "--steps", "300"]
  args += ["--out", tmp_path / "r", *TINY]
  first = cli(*args, home=disco_home)
  assert first.returncode == 0, first.stderr
  record = store.RunRecord(tmp_path / "r" / "catch" / "catch" / "actor_critic" / "seed0")
  with record.lock():  # as another sweep writing the run would
    res = cli(*args, home=disco_home)
  assert res.returncode == 3, res.stdout + res.stderr
  assert "nothing ran: all 1 run(s)" in res.stderr
  assert cli(*args, home=disco_home).returncode == 0  # once released: skipped


@pytest.fixture
def weights_file() -> Path:
  path = SHARED / "rules" / "disco_103.npz"
  if not path.is_file():
    pytest.skip(f"{path} is missing")
  return path


def test_pull_file_that_differs_from_the_cache_is_refused(disco_home, tmp_path, weights_file):
  cached = disco_home / "rules" / "disco_103.npz"
  cached.parent.mkdir(parents=True)
  shutil.copyfile(weights_file, cached)
  other = tmp_path / "other.npz"
  other.write_bytes(weights_file.read_bytes() + b"not the same file")
  line = one_line_error(cli("rules", "pull", "disco103", "--file", other, home=disco_home))
  assert f"--file {other}" in line and "differs from the cached copy" in line
  assert "--force" in line
  assert cached.read_bytes() == weights_file.read_bytes()
  # The same file as the cached copy: nothing to do.
  res = cli("rules", "pull", "disco103", "--file", weights_file, home=disco_home)
  assert res.returncode == 0 and "already cached" in res.stdout, res.stdout + res.stderr
  # --force imports the file, which must still be the manifest's.
  line = one_line_error(
    cli("rules", "pull", "disco103", "--file", other, "--force", home=disco_home)
  )
  assert "checksum mismatch" in line
  assert cached.read_bytes() == weights_file.read_bytes()
  # A damaged cached copy: --file is refused, --file --force replaces it.
  cached.write_bytes(b"not the weights")
  line = one_line_error(cli("rules", "pull", "disco103", "--file", weights_file, home=disco_home))
  assert "--force" in line
  res = cli("rules", "pull", "disco103", "--file", weights_file, "--force", home=disco_home)
  assert res.returncode == 0, res.stderr
  assert cached.read_bytes() == weights_file.read_bytes()


LEVEL = "; 0\n##########\n#@$.     #\n" + "#        #\n" * 7 + "##########\n"


def test_data_pull_with_the_levels_cached_needs_no_network(disco_home, tmp_path):
  levels = tmp_path / "levels" / "unfiltered" / "test"
  levels.mkdir(parents=True)
  (levels / "000.txt").write_text(LEVEL + "\n" + LEVEL.replace("; 0", "; 1"))
  res = cli("data", "pull", "boxoban", "--from", tmp_path / "levels", home=disco_home)
  assert res.returncode == 0, res.stderr
  offline = "http://127.0.0.1:9/master.zip"  # a closed port: any download fails
  res = cli("data", "pull", "boxoban", "--url", offline, home=disco_home)
  assert res.returncode == 0, res.stderr
  assert "already cached" in res.stdout
  assert "unfiltered-test: 2 levels from 1 files" in res.stdout
  line = one_line_error(
    cli("data", "pull", "boxoban", "--url", offline, "--force", home=disco_home)
  )
  assert "127.0.0.1:9" in line


# --- item 10: --version, help --------------------------------------------------------


def test_version(disco_home):
  from disco_eval import __version__

  res = cli("--version", home=disco_home)
  assert res.returncode == 0 and res.stdout.strip() == f"disco-eval {__version__}"


def _commands(group, path=()):
  """(path, command) of every command and group under the click `group`."""
  yield path, group
  if isinstance(group, typer.core.TyperGroup):
    for name, command in group.commands.items():
      yield from _commands(command, (*path, name))


def test_help_names_values_not_python_types_and_shows_examples():
  from disco_eval.cli import app

  runner = CliRunner()
  pages = {}
  for path, _ in _commands(typer.main.get_command(app)):
    res = runner.invoke(app, [*path, "--help"], terminal_width=100)
    assert res.exit_code == 0, (path, res.output)
    pages[" ".join(path)] = res.output
  assert {"", "run", "compare", "export csv", "plot", "rules pull", "data pull"} <= set(pages)
  label = re.compile(r"<(str|int|float|bool|path|list\[[^\]]*\]|int range)>|\b(TEXT|INTEGER)\b")
  for name, page in pages.items():
    assert not label.search(page), (name, label.search(page).group(0), page)
  for name in ("run", "compare", "export csv", "plot"):
    assert "Examples:" in pages[name] and f"disco-eval {name} " in pages[name], pages[name]
  assert "--version" in pages[""]
  assert "SUITE" in pages["run"] and "KEY=VALUE" in pages["run"] and "FOLDER" in pages["run"]
