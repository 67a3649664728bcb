"""Tests of checkpoint loading, downloading and rule resolution, on real files.

Downloads only ever contact a local HTTP server on 127.0.0.1.
"""

import contextlib
import http.server
import shutil
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from disco_eval.config import manifests
from disco_eval.config.resolve import rule_settings
from disco_eval.config.suites import load_suite
from disco_eval.errors import UserError
from disco_eval.rules import weights
from disco_eval.rules.architectures import DISCO103_SHAPES, expected_shapes

DISCO103_SHA = "dac840a15b81e8805326363458c33979626172618f620d9e6e170315388530aa"
TIMEOUT = 5.0


# --- helpers -----------------------------------------------------------------


def _files_under(folder: Path) -> list[Path]:
  """Every file below `folder` (empty if it doesn't exist)."""
  return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _flat(npz_path: Path) -> dict[str, np.ndarray]:
  """The arrays of an .npz as a plain dict."""
  with np.load(npz_path, allow_pickle=False) as npz:
    return {k: npz[k] for k in npz.files}


def _save(path: Path, arrays: dict[str, np.ndarray], allow_pickle: bool = False) -> Path:
  """Write `arrays` to the .npz `path` (names kept as given)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(path, "w") as zf:
    for key, value in arrays.items():
      with zf.open(f"{key}.npy", "w") as f:
        np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=allow_pickle)
  return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
  """A scratch folder for test files, apart from DISCO_EVAL_HOME."""
  folder = tmp_path / "work"
  folder.mkdir()
  return folder


@pytest.fixture
def disco103_arrays(disco103_npz: Path) -> dict[str, np.ndarray]:
  return _flat(disco103_npz)


@pytest.fixture
def manifest() -> manifests.RuleManifest:
  return manifests.load_rule_manifest("disco103")


# --- architecture table -------------------------------------------------------


def test_architecture_table_matches_checkpoint(disco103_arrays):
  assert {k: v.shape for k, v in disco103_arrays.items()} == DISCO103_SHAPES
  assert len(DISCO103_SHAPES) == 42
  assert sum(int(np.prod(s)) for s in DISCO103_SHAPES.values()) == 754_778


def test_unknown_architecture():
  with pytest.raises(UserError, match="unknown architecture 'nope'; known architectures: disco103"):
    expected_shapes("nope")


# --- loading ------------------------------------------------------------------


def test_sha256_file(disco103_npz):
  assert weights.sha256_file(disco103_npz) == DISCO103_SHA


def test_load_real_checkpoint(disco103_npz, disco_home):
  params = weights.load_params(disco103_npz, "disco103", expected_sha256=DISCO103_SHA)
  leaves = [v for module in params.values() for v in module.values()]
  assert len(leaves) == 42
  assert sum(v.size for v in leaves) == 754_778
  assert all(v.dtype == np.float32 for v in leaves)
  assert params["lstm/mlp/~/linear_0"]["w"].shape == (600, 16)
  assert params["lstm/~/meta_lstm/~unroll/lstm/linear"]["b"].shape == (512,)
  assert not disco_home.exists()


def _assert_load_error(path: Path, home: Path, *fragments: str, **kwargs) -> str:
  """load_params(path) fails with a one-line message holding `fragments`."""
  with pytest.raises(UserError) as info:
    weights.load_params(path, **kwargs)
  message = str(info.value)
  assert "\n" not in message
  for fragment in fragments:
    assert fragment in message
  assert not home.exists(), "nothing may be written to DISCO_EVAL_HOME"
  return message


def test_missing_file(work, disco_home):
  _assert_load_error(work / "absent.npz", disco_home, "checkpoint not found", "absent.npz")


def test_wrong_sha256(disco103_npz, disco_home):
  _assert_load_error(
    disco103_npz,
    disco_home,
    "checksum mismatch",
    f"expected {'0' * 64}",
    f"found {DISCO103_SHA}",
    expected_sha256="0" * 64,
  )


def test_missing_key(work, disco_home, disco103_arrays):
  key = "lstm/linear_4/w"
  del disco103_arrays[key]
  path = _save(work / "missing.npz", disco103_arrays)
  message = _assert_load_error(path, disco_home, f"missing array '{key}'", "(16, 1)")
  assert "more problem" not in message


def test_two_missing_keys_name_first_and_count(work, disco_home, disco103_arrays):
  del disco103_arrays["lstm/linear/b"], disco103_arrays["lstm/linear/w"]
  path = _save(work / "missing2.npz", disco103_arrays)
  _assert_load_error(path, disco_home, "missing array 'lstm/linear/b'", "(and 1 more problem)")


def test_wrong_shape(work, disco_home, disco103_arrays):
  key = "lstm/lstm/linear/w"
  disco103_arrays[key] = disco103_arrays[key][:, :512]
  path = _save(work / "shape.npz", disco103_arrays)
  _assert_load_error(path, disco_home, f"'{key}'", "expected (283, 1024)", "shape (283, 512)")


def test_extra_key(work, disco_home, disco103_arrays):
  disco103_arrays["lstm/extra/w"] = np.zeros((2, 3), np.float32)
  path = _save(work / "extra.npz", disco103_arrays)
  _assert_load_error(path, disco_home, "unexpected array 'lstm/extra/w'")


def test_integer_dtype(work, disco_home, disco103_arrays):
  key = "lstm/linear_1/b"
  disco103_arrays[key] = np.zeros((1,), np.int32)
  path = _save(work / "int.npz", disco103_arrays)
  _assert_load_error(path, disco_home, f"'{key}'", "dtype int32", "floating point")


def test_float64_is_converted(work, disco_home, disco103_arrays):
  disco103_arrays["lstm/linear_1/b"] = disco103_arrays["lstm/linear_1/b"].astype(np.float64)
  params = weights.load_params(_save(work / "f64.npz", disco103_arrays))
  assert params["lstm/linear_1"]["b"].dtype == np.float32


def test_nan_values(work, disco_home, disco103_arrays):
  disco103_arrays["lstm/linear_1/b"] = np.array([np.nan], np.float32)
  _assert_load_error(_save(work / "nan.npz", disco103_arrays), disco_home, "NaN")


def test_pickled_npz_is_refused(work, disco_home, disco103_arrays):
  disco103_arrays["lstm/linear_1/b"] = np.array([{"boom": 1}], dtype=object)
  path = work / "pickled.npz"
  np.savez(path, allow_pickle=True, **disco103_arrays)
  _assert_load_error(path, disco_home, "pickled data", "refusing")


def test_random_bytes(work, disco_home):
  path = work / "random.npz"
  path.write_bytes(np.random.default_rng(0).bytes(4096))
  _assert_load_error(path, disco_home, "not an .npz archive")


def test_truncated_zip(work, disco_home, disco103_npz):
  path = work / "truncated.npz"
  path.write_bytes(disco103_npz.read_bytes()[:100_000])
  _assert_load_error(path, disco_home, "corrupt or not an .npz archive")


def test_single_npy_file(work, disco_home):
  path = work / "single.npz"
  with open(path, "wb") as f:
    np.save(f, np.zeros(3, np.float32))
  _assert_load_error(path, disco_home, "single .npy array")


# --- downloading ----------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves `files` from the server: /good, /wrong, /half, /slow, else 404."""

  def do_GET(self):
    files = self.server.files
    name = self.path.lstrip("/")
    if name == "slow":
      self.server.release.wait(TIMEOUT)
      return
    if name not in files:
      self.send_error(404)
      return
    body = files[name]
    self.send_response(200)
    self.send_header("Content-Type", "application/octet-stream")
    self.send_header("Content-Length", str(len(files["good"])))
    self.end_headers()
    if name == "half":
      self.wfile.write(body[: len(body) // 2])
      self.wfile.flush()
      self.close_connection = True
      self.connection.shutdown(socket.SHUT_RDWR)
      return
    self.wfile.write(body)

  def log_message(self, *args):
    pass


@pytest.fixture
def server(disco103_npz, work):
  """A local HTTP server on 127.0.0.1 serving a copy of the real checkpoint."""
  copy = shutil.copy(disco103_npz, work / "served.npz")
  good = Path(copy).read_bytes()
  wrong = bytearray(good)
  wrong[len(wrong) // 2] ^= 0xFF
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  httpd.files = {"good": good, "wrong": bytes(wrong), "half": good}
  httpd.release = threading.Event()
  httpd.timeout = TIMEOUT
  thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
  finally:
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(TIMEOUT)


def _closed_port() -> int:
  """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
  with contextlib.closing(socket.socket()) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _assert_cache_clean(home: Path) -> None:
  assert _files_under(home) == [], "no file (not even a .partial) may be left"


def test_pull_good_file(server, manifest, disco_home):
  path = weights.pull(manifest, url=f"{server}/good", timeout=TIMEOUT)
  assert path == disco_home / "rules" / "disco_103.npz"
  assert weights.sha256_file(path) == DISCO103_SHA
  assert _files_under(disco_home) == [path]
  # A verified cached file is kept without contacting the server.
  assert weights.pull(manifest, url=f"http://127.0.0.1:{_closed_port()}/x") == path


def test_pull_wrong_bytes(server, manifest, disco_home):
  with pytest.raises(UserError) as info:
    weights.pull(manifest, url=f"{server}/wrong", timeout=TIMEOUT)
  message = str(info.value)
  assert message.startswith(
    f"checksum mismatch for {server}/wrong: expected {DISCO103_SHA}, found "
  )
  _assert_cache_clean(disco_home)


def test_pull_interrupted_transfer(server, manifest, disco_home):
  with pytest.raises(UserError) as info:
    weights.pull(manifest, url=f"{server}/half", timeout=TIMEOUT)
  message = str(info.value)
  assert "cut short" in message or "interrupted" in message
  assert str(disco_home / "rules" / "disco_103.npz") in message
  _assert_cache_clean(disco_home)


def test_pull_timeout(server, manifest, disco_home):
  with pytest.raises(UserError) as info:
    weights.pull(manifest, url=f"{server}/slow", timeout=0.5)
  assert "timed out" in str(info.value)
  _assert_cache_clean(disco_home)


def test_pull_http_error(server, manifest, disco_home):
  with pytest.raises(UserError, match="HTTP 404"):
    weights.pull(manifest, url=f"{server}/missing", timeout=TIMEOUT)
  _assert_cache_clean(disco_home)


def test_pull_unreachable(manifest, disco_home):
  url = f"http://127.0.0.1:{_closed_port()}/disco_103.npz"
  with pytest.raises(UserError) as info:
    weights.pull(manifest, url=url, timeout=TIMEOUT)
  message = str(info.value)
  assert message.startswith(f"`disco-eval` can't reach {url}: ")
  assert f"place it at {disco_home / 'rules' / 'disco_103.npz'}" in message
  assert "--rule PATH.npz" in message
  assert not disco_home.exists()


def test_pull_refuses_bad_cached_file(manifest, disco_home, server):
  cached = disco_home / "rules" / "disco_103.npz"
  cached.parent.mkdir(parents=True)
  cached.write_bytes(b"not the rule")
  with pytest.raises(UserError) as info:
    weights.pull(manifest, url=f"{server}/good", timeout=TIMEOUT)
  assert "checksum mismatch" in str(info.value)
  assert "disco-eval rules pull disco103 --force" in str(info.value)
  assert cached.read_bytes() == b"not the rule"
  weights.pull(manifest, url=f"{server}/good", force=True, timeout=TIMEOUT)
  assert weights.sha256_file(cached) == DISCO103_SHA
  assert _files_under(disco_home) == [cached]


def test_pull_hand_designed_rule():
  with pytest.raises(UserError, match="hand-designed"):
    weights.pull(manifests.load_rule_manifest("actor_critic"))


# --- resolving ------------------------------------------------------------------


def test_resolve_checkpoint_path(work, disco103_npz):
  copy = Path(shutil.copy(disco103_npz, work / "my_rule.npz"))
  resolved = weights.resolve_rule(str(copy))
  assert resolved.label == "my_rule"
  assert resolved.sha256 == DISCO103_SHA
  assert resolved.path == copy
  assert resolved.manifest.name == "my_rule"
  assert resolved.manifest.sha256 == DISCO103_SHA
  assert resolved.manifest.source_url is None
  assert rule_settings(resolved.manifest, load_suite("catch"))["optimizer"]["learning_rate"] == 1e-2
  assert len(resolved.params) == 21


def test_resolve_missing_checkpoint_path(work):
  with pytest.raises(UserError, match="checkpoint not found"):
    weights.resolve_rule(str(work / "nope.npz"))


def test_resolve_uncached_rule_without_download(disco_home):
  with pytest.raises(UserError) as info:
    weights.resolve_rule("disco103", download=False)
  assert "disco-eval rules pull disco103" in str(info.value)
  assert not disco_home.exists()


def test_resolve_cached_rule(disco_home, disco103_npz):
  cached = disco_home / "rules" / "disco_103.npz"
  cached.parent.mkdir(parents=True)
  shutil.copy(disco103_npz, cached)
  resolved = weights.resolve_rule("disco103", download=False)
  assert resolved.label == "disco103"
  assert resolved.sha256 == DISCO103_SHA
  assert resolved.path == cached
  assert resolved.manifest.name == "disco103"
  assert sum(v.size for m in resolved.params.values() for v in m.values()) == 754_778


def test_resolve_corrupted_cache_is_refused(disco_home, disco103_npz):
  cached = disco_home / "rules" / "disco_103.npz"
  cached.parent.mkdir(parents=True)
  data = bytearray(disco103_npz.read_bytes())
  data[-100] ^= 0xFF
  cached.write_bytes(bytes(data))
  with pytest.raises(UserError) as info:
    weights.resolve_rule("disco103", download=False)
  assert "checksum mismatch" in str(info.value)
  assert "--force" in str(info.value)


def test_resolve_hand_designed_rule():
  resolved = weights.resolve_rule("actor_critic")
  assert resolved.params is None and resolved.sha256 is None and resolved.path is None
  assert resolved.label == "actor_critic"


def test_resolve_unknown_rule():
  with pytest.raises(UserError, match="unknown rule 'nope'"):
    weights.resolve_rule("nope")
