"""`disco-eval report`: one self-contained HTML or Markdown file per comparison.

The HTML is parsed (every element closed in order, one head and body, the
sections present), its images decoded as PNG, and, where Chromium is installed,
rendered headless into a screenshot that must not be blank. The quick tests use
synthetic runs with known scores; the slow ones a tiny real Catch sweep.
"""

from __future__ import annotations

import base64
import html.parser
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_report import REPS, manifests, results, write_run  # noqa: F401
from typer.testing import CliRunner

from disco_eval.analysis import report
from disco_eval.cli import app
from disco_eval.errors import UserError

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}
PNG_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


class Structure(html.parser.HTMLParser):
  """Checks that elements nest and close; collects ids, tags and image sources."""

  def __init__(self) -> None:
    super().__init__()
    self.stack: list[str] = []
    self.errors: list[str] = []
    self.tags: list[str] = []
    self.ids: list[str] = []
    self.images: list[str] = []
    self.text: list[str] = []

  def handle_starttag(self, tag, attrs):
    self.tags.append(tag)
    found = dict(attrs)
    if "id" in found:
      self.ids.append(found["id"])
    if tag == "img":
      self.images.append(found.get("src", ""))
      if not found.get("alt"):
        self.errors.append("img without alt text")
    if tag not in VOID:
      self.stack.append(tag)

  def handle_endtag(self, tag):
    if tag in VOID:
      return
    if not self.stack or self.stack[-1] != tag:
      self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
      return
    self.stack.pop()

  def handle_data(self, data):
    self.text.append(data)


def parse_report(text: str) -> Structure:
  """The parsed report; fails on any structural error."""
  assert text.startswith("<!DOCTYPE html>")
  parser = Structure()
  parser.feed(text)
  parser.close()
  assert not parser.errors, parser.errors[:5]
  assert not parser.stack, f"unclosed elements: {parser.stack}"
  for tag in ("html", "head", "body", "title"):
    assert parser.tags.count(tag) == 1, tag
  return parser


def decode_png(uri: str) -> Image.Image:
  """The image of a data URI, checked to be a whole PNG."""
  match = PNG_URI.fullmatch(uri)
  assert match, uri[:60]
  data = base64.b64decode(match.group(1), validate=True)
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  Image.open(io.BytesIO(data)).verify()
  image = Image.open(io.BytesIO(data))
  image.load()
  assert image.format == "PNG" and min(image.size) > 50
  return image


def check_html(path: Path, plots: int) -> str:
  text = path.read_text(encoding="utf-8")
  parsed = parse_report(text)
  assert "exclusions" in parsed.ids and "group-0" in parsed.ids
  assert len(parsed.images) == plots
  for uri in parsed.images:
    decode_png(uri)
  words = " ".join(parsed.text)
  for needed in ("Protocol", "What each number is", "Per-task final scores", "IQM", "Seeds:"):
    assert needed in words, needed
  assert "stratified bootstrap CI" in words and "Student-t" in words
  return words


def test_html_report_is_valid_with_its_plots_embedded(results: Path, tmp_path: Path) -> None:  # noqa: F811
  write_run(results, "a", "good", 9, status="failed")
  out = report.report(results, tmp_path / "r.html", reps=REPS)
  words = check_html(out, plots=4)
  assert "excluded" in words and "failed" in words and "seed9" in words
  assert "5 seeds per rule" in words


def test_markdown_report_embeds_plots_as_data_uris(results: Path, tmp_path: Path) -> None:  # noqa: F811
  out = report.report(results, tmp_path / "r.md", reps=REPS, at="900")
  text = out.read_text()
  images = re.findall(r"!\[[^\]]+\]\((data:image/png;base64,[^)]+)\)", text)
  assert len(images) == 3  # no curves: the scores are read from the curve at 900 steps
  for uri in images:
    decode_png(uri)
  assert "read from the training curve at 900 steps" in text
  assert text.count("```") % 2 == 0 and "# disco-eval report" in text


def test_report_refuses_a_bad_file_name(results: Path, tmp_path: Path) -> None:  # noqa: F811
  with pytest.raises(UserError, match=r"\.html or \.md"):
    report.report(results, tmp_path / "r.pdf")
  with pytest.raises(UserError, match="does not exist"):
    report.report(results, tmp_path / "missing" / "r.html")
  out = CliRunner().invoke(app, ["report", str(results), "--out", str(tmp_path / "r.txt")])
  assert out.exit_code == 1 and isinstance(out.exception, UserError)  # main prints it in one line


def screenshot(page: Path, png: Path) -> Image.Image | None:
  """A headless Chromium screenshot of `page`, or None where no Chromium is installed."""
  browser = shutil.which("chromium") or shutil.which("chromium-browser")
  if browser is None:
    return None
  subprocess.run(
    [
      browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
      "--window-size=1400,3000", f"--screenshot={png}", page.as_uri(),
    ],
    check=True, capture_output=True, timeout=120,
  )  # fmt: skip
  return Image.open(png).convert("L")


@pytest.fixture(scope="module")
def catch_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
  """A tiny real Catch sweep: actor_critic and ppo, 2 seeds, 600 steps."""
  root = tmp_path_factory.mktemp("catch")
  env = dict(os.environ, DISCO_EVAL_HOME=str(root / "home"))
  env.pop("DISCO_EVAL_MANIFESTS", None)
  subprocess.run(
    [
      sys.executable, "-m", "disco_eval.cli", "run", "catch", "--rule", "actor_critic",
      "--rule", "ppo", "--steps", "600", "--seeds", "2", "--out", str(root / "results"),
    ],
    check=True, env=env, capture_output=True, timeout=900,
  )  # fmt: skip
  return root / "results"


@pytest.mark.slow
def test_report_of_a_real_catch_sweep_renders_in_a_browser(
  catch_results: Path, tmp_path: Path
) -> None:
  out = tmp_path / "catch.html"
  result = CliRunner().invoke(app, ["report", str(catch_results), "--out", str(out)])
  assert result.exit_code == 0, result.output
  words = check_html(out, plots=4)
  assert "catch" in words and "reference@600" in words and "actor_critic" in words
  shot = screenshot(out, tmp_path / "shot.png")
  if shot is None:
    pytest.skip("chromium is not installed: the HTML was checked with html.parser only")
  low, high = shot.getextrema()
  assert high - low > 100  # text and plots drawn, not a blank page


def test_report_of_two_folders_counts_a_copied_run_once(results: Path, tmp_path: Path) -> None:  # noqa: F811
  copy = tmp_path / "copy"
  shutil.copytree(results, copy)
  out = report.report([results, copy], tmp_path / "r.html", reps=REPS)
  words = check_html(out, plots=4)
  assert "30 run(s) in the statistics; 30 excluded (30 duplicate)" in words
  assert f"Results folders: {results}, {copy}" in words
