"""Shared fixtures: the read-only shared data folder and an isolated cache."""

import os
from pathlib import Path

import pytest

from disco_eval import runtime

# Before any test starts JAX's backend: on a GPU every test (resume and verify tests
# compare bit for bit or within tight bounds) runs with XLA's deterministic ops;
# on the CPU the flag changes nothing (docs/gpu.md).
runtime.apply_determinism(True, strict=False)
# No persistent compilation cache for the commands tests run (in this process and in
# subprocesses): each test's DISCO_EVAL_HOME is a fresh folder, and one process's cache
# would stay pointed at the first. tests/test_gpu_setup.py turns it on where it tests it.
os.environ.setdefault(runtime.CACHE_ENV, "off")


@pytest.fixture
def shared_dir() -> Path:
  """The shared data folder next to the repository (tests skip without it)."""
  folder = Path(__file__).resolve().parents[2] / "shared"
  if not folder.is_dir():
    pytest.skip(f"shared data folder {folder} is missing")
  return folder


@pytest.fixture
def disco103_npz(shared_dir: Path) -> Path:
  """The published Disco103 checkpoint (read it; never write to it)."""
  path = shared_dir / "rules" / "disco_103.npz"
  if not path.is_file():
    pytest.skip(f"{path} is missing")
  return path


@pytest.fixture(autouse=True)
def disco_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
  """Point DISCO_EVAL_HOME at a fresh, not yet created, temporary folder."""
  home = tmp_path / "disco-eval-home"
  monkeypatch.setenv("DISCO_EVAL_HOME", str(home))
  monkeypatch.delenv("DISCO_EVAL_MANIFESTS", raising=False)
  return home
