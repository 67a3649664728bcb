"""ProcGen through EnvPool: episode boundaries, the IMPALA torso, a tiny sweep."""

import csv
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("envpool")

from disco_eval.agents.impala import ImpalaCNN  # noqa: E402
from disco_eval.agents.networks import TORSOS  # noqa: E402
from disco_eval.config.resolve import rule_settings
from disco_eval.config.suites import load_suite
from disco_eval.envs import procgen  # noqa: E402
from disco_eval.envs.base import HostPool, HostTask  # noqa: E402
from disco_eval.runs import SweepSpec, run_sweep  # noqa: E402

# The torso for ProcGen, small (the test's own [agent] table for the suite).
TINY_AGENT = {"torso": "impala_cnn", "impala_channels": [8, 8, 8], "impala_hidden": 64}


def test_env_ids():
  assert procgen.env_id("coinrun", "hard") == "CoinrunHard-v0"
  assert procgen.env_id("bigfish", "easy") == "BigfishEasy-v0"
  with pytest.raises(ValueError):
    procgen.env_id("pong", "easy")


@pytest.mark.parametrize("game", procgen.GAMES)
def test_every_game_of_the_suite_steps_in_both_modes(game):
  from disco_eval.config import suites

  assert set(suites.load_suite("procgen").tasks) == set(procgen.GAMES)
  for mode in procgen.MODES:
    pool = procgen.ProcgenPool(game, mode, num_envs=2, seed=0, num_levels=200)
    try:
      obs = pool.reset()
      assert obs.shape == (2, 3, 64, 64) and obs.dtype == np.uint8
      for a in range(procgen.NUM_ACTIONS):
        obs, reward, last, _ = pool.step(np.full(2, a))
      assert obs.shape == (2, 3, 64, 64) and np.isfinite(reward).all()
    finally:
      pool.close()


def test_episode_end_then_reset_step():
  """The step after an episode end is a reset step: reward 0, a new episode."""
  pool = procgen.ProcgenPool("coinrun", "easy", num_envs=8, seed=0, num_levels=200)
  assert pool.num_actions == 15 and pool.observation_shape == (3, 64, 64)
  obs = pool.reset()
  assert obs.shape == (8, 3, 64, 64) and obs.dtype == np.uint8
  rng = np.random.default_rng(0)
  ep_ret = np.zeros(8, np.float32)
  returns, checked = [], 0
  ended = np.zeros(8, bool)
  for _ in range(3000):
    prev_obs = obs
    obs, reward, last, truncated = pool.step(rng.integers(0, 15, 8))
    assert reward.dtype == np.float32 and last.dtype == bool
    assert not np.any(truncated & ~last)
    ep_ret += reward
    if checked:  # the row after an end: a reset step
      assert np.all(reward[ended] == 0.0) and not np.any(last[ended])
      # a fresh episode: the picture jumps (new level), its first obs
      assert all(np.any(obs[i] != prev_obs[i]) for i in np.flatnonzero(ended))
    checked = 0
    if last.any():
      ended = last.copy()
      returns += list(ep_ret[ended])
      ep_ret[ended] = 0.0
      checked = 1
    if len(returns) >= 4:
      break
  assert len(returns) >= 4
  # Coinrun pays 10 for the coin and nothing else.
  assert set(np.unique(returns)) <= {0.0, 10.0}
  pool.close()


def test_reset_step_elapsed_step_is_zero():
  """EnvPool's own counter confirms it: after an end, elapsed_step restarts at 0."""
  import envpool

  env = envpool.make("CoinrunEasy-v0", env_type="gymnasium", num_envs=4, seed=1, num_levels=200)
  env.reset()
  rng = np.random.default_rng(1)
  seen = False
  for _ in range(3000):
    _, _, term, trunc, _ = env.step(rng.integers(0, 15, 4))
    done = term | trunc
    if done.any():
      _, reward, _, _, info = env.step(rng.integers(0, 15, 4))
      assert np.all(info["elapsed_step"][done] == 0) and np.all(reward[done] == 0)
      seen = True
      break
  assert seen


def test_impala_torso_shapes():
  net = ImpalaCNN(channels=(16, 32, 32), hidden=256)
  obs = jnp.zeros((2, 3, 64, 64), jnp.uint8)
  params = net.init(jax.random.PRNGKey(0), obs)
  out = net.apply(params, obs)
  assert out.shape == (2, 256) and out.dtype == jnp.float32
  # 3 stacks x (1 + 2 x 2) convs + dense
  assert len(params["params"]) == 3 * 5 + 1
  assert params["params"]["dense"]["kernel"].shape == (8 * 8 * 32, 256)
  torso = TORSOS["impala_cnn"]({"impala_channels": [8, 8, 8], "impala_hidden": 64})
  assert torso.channels == (8, 8, 8) and torso.hidden == 64


@pytest.mark.slow
def test_tiny_procgen_sweep(tmp_path, monkeypatch):
  events = []
  spec = SweepSpec(
    suite="procgen",
    rules=("actor_critic",),
    seeds=(0,),
    tasks=("coinrun",),
    steps=1600,
    protocol="easy-200",
    out=tmp_path,
    checkpoint_every=2,
    overrides=(
      ("train.num_envs", "8"),
      ("train.rollout_len", "10"),
      ("train.min_buffer", "2"),
      ("train.sample_entries", "2"),
      ("train.buffer_capacity", "8"),
      ("train.chunk", "4"),
      *((f"agent.{k}", str(v)) for k, v in TINY_AGENT.items()),
    ),
  )
  # eval_episodes comes from the protocol (100); shrink it for the test.
  from disco_eval.train import host_loop

  real_eval = host_loop.HostTrainer.evaluate
  monkeypatch.setattr(
    host_loop.HostTrainer,
    "evaluate",
    lambda self, params, rng, episodes: real_eval(self, params, rng, 8),
  )
  results = run_sweep(spec, events.append)
  assert [r.status for r in results] == ["complete"], [r.error for r in results]
  path = results[0].path
  config = json.loads((path / "config.json").read_text())
  summary = results[0].summary
  assert config["protocol"]["name"] == "easy-200"
  assert config["settings"]["agent"]["torso"] == "impala_cnn"
  assert summary["protocol"] == "easy-200" and summary["metric"] == "return"
  assert summary["eval_episodes"] == 8 and summary["env_steps"] == 20 * 80
  assert math.isfinite(summary["score"]) and 0.0 <= summary["score"] <= 10.0
  with open(path / "metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [int(r["iteration"]) for r in rows] == list(range(20))
  assert int(rows[-1]["env_steps"]) == 1600
  # The protocol makes 1 learner step per iteration (DiscoRL's 192-trajectory batches of 3
  # entries) once 2 entries are in.
  assert config["train"]["updates_per_iteration"] == 1
  assert int(rows[0]["learner_steps"]) == 0 and int(rows[1]["learner_steps"]) == 1
  assert all(math.isfinite(float(r["loss"])) for r in rows[1:])
  assert all(int(r["episodes"]) >= 0 for r in rows)  # coinrun episodes may outlast 200 steps
  kinds = [e.kind for e in events]
  assert kinds[0] == "plan" and "start" in kinds and kinds[-1] == "done"


class _FakePool(HostPool):
  """Episodes of 3 steps (reward 1 on the last), then a reset step (reward 0)."""

  num_actions, observation_shape = 15, (3, 64, 64)

  def __init__(self, num_envs):
    self.num_envs, self.t = num_envs, 0

  def reset(self):
    self.t = 0
    return np.zeros((self.num_envs, 3, 64, 64), np.uint8)

  def step(self, actions):
    self.t += 1
    k = self.t % 4  # steps 1, 2, 3 of an episode, then 0 = reset step
    last = np.full(self.num_envs, k == 3)
    reward = np.full(self.num_envs, 1.0 if k == 3 else 0.0, np.float32)
    return (
      np.full((self.num_envs, 3, 64, 64), k, np.uint8),
      reward,
      last,
      np.zeros(self.num_envs, bool),
    )

  def close(self):
    pass


def test_host_trainer_rows_and_returns():
  from disco_eval.agents.networks import Agent
  from disco_eval.rules import weights
  from disco_eval.rules.registry import build_rule
  from disco_eval.train.host_loop import HostTrainer
  from disco_eval.train.loop import TrainConfig
  from disco_eval.train.optim import make_optimizer

  class Task(HostTask):
    num_actions, observation_shape = 15, (3, 64, 64)
    episode_columns = ()
    observation_dtype = np.uint8

    def pool(self, num_envs, seed, protocol=None, evaluation=False):
      return _FakePool(num_envs)

  r = weights.resolve_rule("actor_critic")
  st = rule_settings(r.manifest, load_suite("procgen"))
  st["agent"] = {**st["agent"], **TINY_AGENT}
  rule = build_rule(r.manifest.kind, st, r.label)
  agent = Agent(st["agent"], rule.output_spec(15), 15, (3, 64, 64))
  cfg = TrainConfig(
    num_envs=2, rollout_len=8, buffer_capacity=4, min_buffer=4, sample_entries=1, chunk=2
  )
  tr = HostTrainer(Task(), agent, rule, make_optimizer(st["optimizer"]), cfg, None)
  s, (ret, eps, learned, _, extra) = tr.iteration(tr.init(0), r.params, 0)
  assert extra == {}
  # rows: t=0 reset obs, steps 1..3 (3 = last), 0 = reset step, 1, 2, 3 (last)
  assert eps == 2 * 2 and ret == 4.0 and learned == 0
  entry = jax.tree.map(lambda x: np.asarray(x[0]), s.buffer.data)
  assert entry.observations.dtype == np.uint8
  np.testing.assert_array_equal(entry.discounts[:, 0], [1, 1, 1, 0, 1, 1, 1, 0])
  np.testing.assert_array_equal(entry.rewards[:, 0], [0, 0, 0, 1, 0, 0, 0, 1])
  np.testing.assert_array_equal(entry.observations[:, 0, 0, 0, 0], [0, 1, 2, 3, 0, 1, 2, 3])
