"""Sokoban: Boxoban parsing and cache, dynamics, envpool parity, evaluation, training."""

import json
import math
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from disco_eval.agents.networks import Agent
from disco_eval.cli import data as cli_data
from disco_eval.config import suites
from disco_eval.envs import boxoban, registry, sokoban
from disco_eval.errors import UserError
from disco_eval.rules.base import OutputSpec

BOXOBAN = Path(__file__).resolve().parents[2] / "shared" / "boxoban"
UP, DOWN, LEFT, RIGHT = range(4)


@pytest.fixture
def levels_dir() -> Path:
  if not (BOXOBAN / "unfiltered" / "test").is_dir():
    pytest.skip(f"shared Boxoban levels {BOXOBAN} are missing")
  return BOXOBAN


@pytest.fixture
def pulled(levels_dir, disco_home) -> dict:
  return boxoban.pull(levels_dir)


def level(*rows: str) -> np.ndarray:
  """Cell codes [10, 10] of a level given as up to 10 rows (walled around)."""
  text = "; 0\n" + "\n".join(rows) + "\n"
  codes, _ = boxoban.parse_levels(text)
  return codes[0]


def walled(*inner: str) -> np.ndarray:
  rows = ["#" * 10] + ["#" + r.ljust(8) + "#" for r in inner]
  rows += ["#" + " " * 8 + "#"] * (9 - len(rows)) + ["#" * 10]
  return level(*rows)


# --- parsing ---------------------------------------------------------------------


def _blocks(path: Path) -> list[list[str]]:
  """The levels of a file, read independently of the parser: rows after each header."""
  blocks = []
  for line in path.read_text().splitlines():
    if line.startswith(";"):
      blocks.append([])
    elif line.strip():
      blocks[-1].append(line.ljust(10))
  return blocks


def test_every_level_of_every_file_is_parsed(levels_dir):
  files = sorted(levels_dir.glob("unfiltered/*/*.txt")) + sorted(levels_dir.glob("hard/*.txt"))
  assert len(files) == 25
  for path in files:
    codes, ids = boxoban.parse_levels(path.read_bytes(), str(path))
    blocks = _blocks(path)
    expected = 332 if path.name == "003.txt" and path.parent.name == "hard" else 1000
    assert len(codes) == len(blocks) == expected, path
    assert list(ids) == list(range(expected)), path
    for i in (0, expected - 1):  # first and last level, as in the text
      assert boxoban.render_level(codes[i]).split("\n") == blocks[i], (path, i)
    assert np.all(np.sum(codes == boxoban.BOX, axis=(1, 2)) == 4)
    assert np.all(np.sum(codes == boxoban.PLAYER, axis=(1, 2)) == 1)


def test_box_and_player_on_target_characters():
  codes = walled(" $.*+ $", "  . $")
  assert list(codes[1][:8]) == [
    boxoban.WALL,
    boxoban.FLOOR,
    boxoban.BOX,
    boxoban.TARGET,
    boxoban.BOX_ON_TARGET,
    boxoban.PLAYER_ON_TARGET,
    boxoban.FLOOR,
    boxoban.BOX,
  ]
  s = sokoban.state_from_codes(codes)
  assert [int(v) for v in s.player] == [1, 5]
  assert int(s.boxes.sum()) == 4 and int(s.targets.sum()) == 4
  assert bool(s.targets[1, 5]) and bool(s.boxes[1, 4]) and bool(s.targets[1, 4])
  obs = np.asarray(sokoban.observe(s))
  assert obs[1, 4, boxoban.BOX_ON_TARGET] == 1 and obs[1, 5, boxoban.PLAYER_ON_TARGET] == 1
  with pytest.raises(UserError, match="not exactly one player"):
    walled("@$.*+")
  with pytest.raises(UserError, match="unknown character 'x'"):
    walled("@$.x")
  with pytest.raises(UserError, match="has 3 rows, expected 10"):
    level("##########", "#@$.     #", "##########")


def test_pull_from_folder_into_the_cache(levels_dir, disco_home):
  app = typer.Typer()
  cli_data.register(app)
  res = CliRunner().invoke(app, ["data", "pull", "boxoban", "--from", str(levels_dir)])
  assert res.exit_code == 0, res.output
  assert "unfiltered-test: 1000 levels from 1 files" in res.output
  folder = disco_home / "data" / "boxoban"
  for split, n in (
    ("unfiltered-train", 10000),
    ("unfiltered-valid", 10000),
    ("unfiltered-test", 1000),
    ("hard", 3332),
  ):
    arrays = boxoban.load_split(split)
    assert arrays["levels"].shape == (n, 10, 10) and arrays["levels"].dtype == np.int8
    assert (folder / f"{split}.npz").is_file()
  test = boxoban.load_split("unfiltered-test")
  blocks = _blocks(levels_dir / "unfiltered" / "test" / "000.txt")
  assert boxoban.render_level(test["levels"][-1]).split("\n") == blocks[-1]
  record = json.loads((folder / "boxoban.json").read_text())
  assert record["splits"]["unfiltered-test"]["levels"] == 1000
  assert not list(folder.glob("*.txt"))  # no level files in the cache


def test_missing_split_and_offline_download_are_one_line_errors(disco_home):
  with pytest.raises(UserError, match="data pull boxoban"):
    boxoban.load_levels("unfiltered-train")
  app = typer.Typer()
  cli_data.register(app)
  res = CliRunner().invoke(
    app, ["data", "pull", "boxoban", "--url", "http://127.0.0.1:9/master.zip"]
  )
  assert isinstance(res.exception, UserError)
  msg = str(res.exception)
  assert "\n" not in msg and "can't reach" in msg
  assert str(disco_home / "data" / "boxoban" / boxoban.ARCHIVE_NAME) in msg
  assert "--from DIR" in msg
  assert not list((disco_home / "data" / "boxoban").glob("*.partial*"))


def test_archive_sha256_is_recorded_then_checked(levels_dir, disco_home, tmp_path):
  archive = tmp_path / "master.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    for f in [levels_dir / "unfiltered" / "test" / "000.txt", levels_dir / "hard" / "003.txt"]:
      zf.write(f, "boxoban-levels-master/" + f.relative_to(levels_dir).as_posix())
  record = boxoban.pull(url=archive.as_uri())
  assert record["splits"]["unfiltered-test"]["levels"] == 1000
  assert record["splits"]["hard"]["levels"] == 332
  assert len(record["archive_sha256"]) == 64
  boxoban.pull()  # cached archive: checked, fine
  cached = disco_home / "data" / "boxoban" / boxoban.ARCHIVE_NAME
  cached.write_bytes(cached.read_bytes() + b"x")
  with pytest.raises(UserError, match="checksum mismatch"):
    boxoban.pull()


# --- dynamics --------------------------------------------------------------------


def _one_level_env(codes, max_steps=120):
  return sokoban.Sokoban(codes[None], max_steps)


def _play(env, codes, actions):
  s = sokoban.state_from_codes(codes, jax.random.PRNGKey(0), 0)
  step = jax.jit(env.step)
  out = []
  for a in actions:
    s, ts = step(s, jnp.asarray(a))
    out.append((s, ts))
  return out


def test_push_onto_and_off_a_target():
  codes = walled("@$.  *", "     *", "     *", "    .$")
  env = _one_level_env(codes)
  out = _play(env, codes, [RIGHT, RIGHT])
  assert math.isclose(float(out[0][1].reward), 0.9, abs_tol=1e-6)  # onto a target
  assert math.isclose(float(out[1][1].reward), -1.1, abs_tol=1e-6)  # and off it again
  assert not bool(out[1][1].last)


def test_solving_gives_ten_and_resets():
  codes = walled("@$.  *", "     *", "     *")
  env = _one_level_env(codes)
  ((s, ts),) = _play(env, codes, [RIGHT])
  assert math.isclose(float(ts.reward), 10.9, abs_tol=1e-5)  # +10 +1 -0.1
  assert bool(ts.last) and not bool(ts.truncated)
  # Auto-reset: the last step already shows the next episode's first grid.
  first = sokoban.observe(sokoban.state_from_codes(codes))
  assert np.array_equal(np.asarray(ts.observation), np.asarray(first))
  assert int(s.steps) == 0


def test_walls_and_box_behind_box_block():
  codes = walled("@", "$", "$", "", " $#", "    .", "   .", "    .")
  env = _one_level_env(codes)
  out = _play(env, codes, [UP, LEFT, DOWN])
  for s, ts in out:  # into the wall, into the wall, box behind box: nothing moves
    assert [int(v) for v in s.player] == [1, 1]
    assert math.isclose(float(ts.reward), -0.1, abs_tol=1e-6)
  assert np.array_equal(
    np.asarray(out[-1][0].boxes), np.asarray(sokoban.state_from_codes(codes).boxes)
  )
  # A box pushed into a wall does not move either.
  codes = walled("", "", "", " @$#", "    .", "   .", "    .", " $ $")
  out = _play(_one_level_env(codes), codes, [RIGHT])
  assert [int(v) for v in out[0][0].player] == [4, 2]
  # A free push moves both.
  codes = walled("@$", "", "", "", "    .", "   ..", "    .$", "  $ $")
  out = _play(_one_level_env(codes), codes, [RIGHT])
  assert [int(v) for v in out[0][0].player] == [1, 2] and bool(out[0][0].boxes[1, 3])


def test_timeout_at_120_steps_is_truncation():
  codes = walled("@$.  *", "     *", "     *")
  env = _one_level_env(codes)
  out = _play(env, codes, [UP] * 121)
  assert not any(bool(ts.last) for _, ts in out[:119])
  s, ts = out[119]
  assert bool(ts.last) and bool(ts.truncated)
  assert math.isclose(float(ts.reward), -0.1, abs_tol=1e-6)
  assert int(s.steps) == 0 and not bool(out[120][1].last)


def test_observation_is_one_hot(pulled):
  env = registry.make(suites.load_suite("sokoban"), "boxoban-unfiltered")
  assert env.num_levels == 10000 and env.observation_shape == (10, 10, 7)
  states, ts = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 16))
  obs = np.asarray(ts.observation)
  assert obs.shape == (16, 10, 10, 7) and obs.dtype == np.float32
  assert np.all(obs.sum(-1) == 1.0)
  assert np.all(obs[..., boxoban.BOX].sum((1, 2)) == 4)
  assert np.all(obs[..., boxoban.PLAYER].sum((1, 2)) == 1)
  assert len(set(np.asarray(states.level).tolist())) > 8


# --- envpool cross-check ------------------------------------------------------------


def _to_envpool(codes: np.ndarray) -> np.ndarray:
  """Cell codes [..., 10, 10] -> envpool/jumanji layout [..., 10, 10, 2] (fixed, variable)."""
  b = boxoban
  target = np.isin(codes, [b.TARGET, b.BOX_ON_TARGET, b.PLAYER_ON_TARGET])
  fixed = np.where(codes == b.WALL, 1, np.where(target, 2, 0))
  var = np.where(
    np.isin(codes, [b.PLAYER, b.PLAYER_ON_TARGET]),
    3,
    np.where(np.isin(codes, [b.BOX, b.BOX_ON_TARGET]), 4, 0),
  )
  return np.stack([fixed, var], -1).astype(np.uint8)


# envpool (as jumanji's code, whose docs say otherwise) numbers the moves up,
# right, down, left; ours are up, down, left, right.
TO_ENVPOOL_ACTION = np.array([0, 2, 3, 1], np.int32)


def test_matches_envpool_sokoban(levels_dir, tmp_path):
  try:
    import envpool
  except ImportError as e:
    pytest.skip(f"envpool cannot be imported ({e})")
  test, _ = boxoban.parse_levels((levels_dir / "unfiltered" / "test" / "000.txt").read_bytes())
  near = walled("@$.  *", "     *", "     *")  # one push from solved
  loose = walled("  *", "@$.  *", "  .$")  # boxes to push on and off targets
  levels = np.concatenate([test[:40], test[-4:], np.stack([near] * 12 + [loose] * 8)])
  n = len(levels)
  # envpool reads BASE/jumanji/assets/boxoban/unfiltered-test.npy: [N, 10, 10, (fixed, variable)].
  asset = tmp_path / "jumanji" / "assets" / "boxoban"
  asset.mkdir(parents=True)
  np.save(asset / "unfiltered-test.npy", _to_envpool(levels))
  actions = np.random.default_rng(0).integers(0, 4, size=(n, 120)).astype(np.int32)

  # Ours: all levels at once, 120 steps, observations before any reset.
  env = sokoban.Sokoban(levels)

  def run(codes, acts, i):
    s = sokoban.state_from_codes(codes, jax.random.PRNGKey(0), i)

    def body(s, a):
      moved, reward, solved, timed_out = sokoban.transition(s, a)
      _, ts = env.step(s, a)
      return moved, (sokoban.render_codes(moved), reward, ts.reward, ts.last, ts.truncated)

    return jax.lax.scan(body, s, acts)[1]

  codes_seq, rewards, step_rewards, lasts, truncs = jax.device_get(
    jax.jit(jax.vmap(run))(jnp.asarray(levels), jnp.asarray(actions), jnp.arange(n))
  )
  np.testing.assert_allclose(rewards, step_rewards, atol=0)

  seen = {"solved": 0, "on": 0, "off": 0, "timeout": 0}
  for i in range(n):
    ep = envpool.make(
      "Sokoban-v0",
      env_type="gymnasium",
      num_envs=1,
      sokoban_level_index=i,
      base_path=str(tmp_path),
      seed=0,
    )
    obs, _ = ep.reset()
    assert np.array_equal(obs["grid"][0][..., ::-1], _to_envpool(levels[i])), i
    for t in range(120):
      obs, r, term, trunc, _ = ep.step(TO_ENVPOOL_ACTION[actions[i, t : t + 1]])
      where = f"level {i} step {t + 1}"
      assert np.array_equal(obs["grid"][0][..., ::-1], _to_envpool(codes_seq[i, t])), where
      assert abs(float(r[0]) - float(rewards[i, t])) < 1e-5, where
      assert bool(term[0]) == (bool(lasts[i, t]) and not bool(truncs[i, t])), where
      assert bool(trunc[0]) == bool(truncs[i, t]), where
      seen["on"] += float(r[0]) > 0.5
      seen["off"] += float(r[0]) < -0.5
      if term[0] or trunc[0]:
        seen["solved" if term[0] else "timeout"] += 1
        break
  # The random play covered every kind of reward and both kinds of ending.
  assert all(v > 0 for v in seen.values()), seen


# --- evaluation and training ------------------------------------------------------------


def test_evaluate_levels_plays_each_level_once(pulled):
  levels = boxoban.load_levels("unfiltered-test")
  agent = Agent(
    {"torso": "sokoban_conv", "conv_channels": [8], "conv_hidden": 16},
    OutputSpec(flat={"logits": (4,)}, model={}),
    4,
    (10, 10, 7),
  )
  params = agent.init(jax.random.PRNGKey(0))
  solved, returns = sokoban.evaluate_levels(agent.apply, params, levels, jax.random.PRNGKey(1))
  solved, returns = np.asarray(solved), np.asarray(returns)
  assert solved.shape == returns.shape == (1000,)
  # A random-ish policy: unsolved levels end after 120 steps, return -12 +- box rewards.
  assert np.all(returns[~solved] >= -12.0 - 4 - 1e-4) and np.all(returns <= 13.9 + 1e-4)
  assert np.all(np.abs(returns[~solved] - np.round(returns[~solved] + 12.0) + 12.0) < 1e-3)
  # A policy that always pushes right solves exactly the levels where that works.
  near = walled("@$.  *", "     *", "     *")
  right = lambda p, obs: {"logits": jnp.tile(jnp.array([-1e9, -1e9, -1e9, 0.0]), (obs.shape[0], 1))}
  solved, returns = sokoban.evaluate_levels(
    right, None, np.stack([near, levels[0]]), jax.random.PRNGKey(0)
  )
  assert list(np.asarray(solved)) == [True, False]
  assert math.isclose(float(returns[0]), 10.9, abs_tol=1e-5)
  assert float(returns[1]) <= -12.0 + 4 + 1e-4
  res = sokoban.evaluate_split(right, None, "unfiltered-test", jax.random.PRNGKey(0))
  assert res["levels"] == 1000 and 0.0 <= res["solve_rate"] <= 1.0


@pytest.mark.slow
def test_tiny_training_run(pulled, tmp_path):
  from disco_eval.runs import SweepSpec, run_sweep

  out = tmp_path / "results"
  results = run_sweep(
    SweepSpec(
      suite="sokoban",
      rules=("actor_critic",),
      seeds=(0,),
      steps=2000,
      out=out,
      overrides=(
        ("train.min_buffer", "4"),
        ("train.sample_entries", "4"),
        ("train.chunk", "8"),
        ("train.num_envs", "8"),
        ("train.rollout_len", "10"),
      ),
    )
  )
  assert [r.status for r in results] == ["complete"], [r.error for r in results]
  run = results[0].path
  for name in ("config.json", "status.json", "metrics.csv", "summary.json"):
    assert (run / name).is_file(), name
  summary = json.loads((run / "summary.json").read_text())
  config = json.loads((run / "config.json").read_text())
  assert config["settings"]["agent"]["torso"] == "sokoban_conv"
  assert summary["metric"] == "return" and summary["env_steps"] == 2000
  assert math.isfinite(summary["score"]) and -16.0 <= summary["score"] <= 13.9
  assert math.isfinite(summary["normalized_score"])
  # The protocol's evaluation: each of the 1,000 unfiltered-test levels once.
  assert summary["eval_levels"] == "unfiltered-test" and summary["eval_episodes"] == 1000
  assert 0.0 <= summary["solve_rate"] <= 1.0
  rows = (run / "metrics.csv").read_text().splitlines()
  assert len(rows) == 1 + 25
