"""Packaging: what the runtime imports, the dependencies it declares, the citation
file, and the built wheel installed and run outside the repository."""

from __future__ import annotations

import importlib.metadata
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import disco_eval
from disco_eval.paths import PROJECT_ROOT

TEST_ONLY = ("rliable", "arch")


def _requirement_names(items: list[str]) -> set[str]:
  return {re.split(r"[\s<>=!~\[;]", item, maxsplit=1)[0].lower() for item in items}


def test_rliable_and_arch_are_test_only_dependencies() -> None:
  project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
  runtime = _requirement_names(project["dependencies"])
  test = _requirement_names(project["optional-dependencies"]["test"])
  for name in TEST_ONLY:
    assert name not in runtime and name in test, name
  source = "\n".join(p.read_text() for p in Path(disco_eval.__file__).parent.rglob("*.py"))
  assert not re.search(r"^\s*(import|from)\s+(rliable|arch)\b", source, re.MULTILINE)


def test_every_module_imports_with_rliable_and_arch_blocked() -> None:
  """A None entry in sys.modules makes any import of that name fail."""
  found = pkgutil.walk_packages(disco_eval.__path__, "disco_eval.")
  names = [m.name for m in found if not m.name.endswith("__main__")]  # __main__ runs the CLI
  assert len(names) > 50
  script = (
    "import importlib, sys\n"
    + "".join(f"sys.modules[{n!r}] = None\n" for n in TEST_ONLY)
    + f"for name in {names!r}:\n  importlib.import_module(name)\n"
    + "assert not any(sys.modules.get(n) for n in "
    + repr(TEST_ONLY)
    + ")\n"
  )
  done = subprocess.run(
    [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600
  )
  assert done.returncode == 0, done.stderr[-3000:]


def test_citation_file_names_the_project_and_the_discorl_paper() -> None:
  text = (PROJECT_ROOT / "CITATION.cff").read_text()
  assert text.startswith("cff-version: 1.2.0")
  for needed in ("title:", "message:", "authors:", "license: Apache-2.0", "references:"):
    assert needed in text, needed
  assert "doi: 10.1038/s41586-025-09761-x" in text
  assert "Discovering state-of-the-art reinforcement learning algorithms" in text
  version = re.search(r"^version: (\S+)$", text, re.MULTILINE)
  assert version and version.group(1) == disco_eval.__version__
  yaml = pytest.importorskip("yaml")
  doc = yaml.safe_load(text)
  assert doc["references"][0]["journal"] == "Nature" and doc["references"][0]["year"] == 2025


# --- the built wheel ------------------------------------------------------------------------


def _build_requirements_met() -> bool:
  """Whether this Python has what pyproject.toml's [build-system] requires (then the
  wheel builds offline, without an isolated environment)."""
  try:
    setuptools = importlib.metadata.version("setuptools")
    importlib.metadata.version("wheel")
  except importlib.metadata.PackageNotFoundError:
    return False
  return int(setuptools.split(".")[0]) >= 68


def _copy_checkout(target: Path) -> Path:
  """The project's sources copied to `target` (a build writes beside its sources)."""
  ignore = shutil.ignore_patterns(
    ".git", "results", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".venv"
  )
  shutil.copytree(PROJECT_ROOT, target, ignore=ignore)
  (target / "results").mkdir()
  return target


@pytest.mark.slow
def test_the_wheel_installs_and_runs_catch_outside_the_repository(tmp_path: Path) -> None:
  pytest.importorskip("build", reason="the build package is in the test extra")
  source = _copy_checkout(tmp_path / "src")
  dist = tmp_path / "dist"
  cmd = [sys.executable, "-m", "build", "--outdir", str(dist), str(source)]
  if _build_requirements_met():
    cmd.insert(3, "--no-isolation")
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  (wheel,) = dist.glob("disco_eval-*.whl")
  assert len(list(dist.glob("disco_eval-*.tar.gz"))) == 1
  # A venv that sees this Python's packages (no downloads) but installs the wheel itself.
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
  bin_dir = venv / "bin"
  pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
  subprocess.run([*pip, "--ignore-installed", str(wheel)], check=True, timeout=300)
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISCO_EVAL_MANIFESTS")}
  env["DISCO_EVAL_HOME"] = str(tmp_path / "home")

  def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(
      [str(bin_dir / "disco-eval"), *args],
      cwd=outside,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out

  where = subprocess.run(
    [
      str(bin_dir / "python"),
      "-c",
      "import disco_eval.paths as p; print(p.manifest_dir('suites'))",
    ],
    cwd=outside,
    env=env,
    capture_output=True,
    text=True,
    check=True,
  ).stdout.strip()
  assert Path(where).is_relative_to(venv) and where.endswith("disco_eval/manifests/suites")
  listed = run("suites", "list").stdout
  assert "catch" in listed and "procgen" in listed
  weights = PROJECT_ROOT.parent / "shared" / "rules" / "disco_103.npz"
  rule = []
  if weights.is_file():  # the README's main job: Disco103 on Catch
    run("rules", "pull", "disco103", "--file", str(weights))
  else:
    rule = ["--rule", "ppo"]
  run("run", "catch", *rule, "--steps", "600", "--seeds", "1", "--out", "results")
  assert (outside / "results" / "catch" / "catch").is_dir()
  summaries = list((outside / "results").rglob("summary.json"))
  assert len(summaries) == 1
  assert "IQM" not in run("compare", "results").stderr
