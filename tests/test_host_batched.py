"""Host-stepped suites, GPU-shaped: batched seeds and policy lag (tiny ProcGen runs on CPU).

Batched seeds (one pool, one vmapped policy call, one vmapped learner) must
compute what separate seeds compute. The vmapped program is compiled
differently, so no figure that passes through it is compared bit for bit
between the two: what holds by contract is checked exactly (the schedule of
learner steps, the metrics' structure, and each seed's environment stream:
its own pool, stepped with the actions the batched run took, gives the
observations, rewards and episode ends the batched run recorded), the rest
within a stated tolerance (losses and parameters: float rounding; sampled
actions: a draw may flip where two logits tie within rounding, so at least
``ACTIONS_AGREE`` of them must agree). Comparisons of one compiled program
with itself (policy lag 0 as the loop was, chunk boundaries) stay exact.
Policy lag 1 must act with the parameters of one iteration earlier and record
that policy's logits.
"""

import dataclasses
import json

import jax
import numpy as np
import pytest

from disco_eval.config import label as labels
from disco_eval.config.resolve import rule_settings
from disco_eval.config.suites import load_suite
from disco_eval.envs.base import HostPool
from disco_eval.envs.concat import ConcatPool
from disco_eval.errors import UserError

TINY_AGENT = {"torso": "impala_cnn", "impala_channels": [4, 4, 4], "impala_hidden": 32}
CFG = dict(
  num_envs=4,
  rollout_len=6,
  buffer_capacity=8,
  min_buffer=2,
  sample_entries=2,
  updates_per_iteration=1,
  chunk=4,
)
# Batched vs separate seeds after 6 iterations (5 learner steps each):
# float32 rounding of differently compiled convolutions, grown by training.
RTOL, ATOL = 1e-4, 1e-5
# Batched vs separate seeds: the fraction of sampled actions that must agree.
# A categorical draw differs only where two perturbed logits tie within float
# rounding (none seen in these runs); one such flip changes that
# environment's course, hence a fraction, not equality.
ACTIONS_AGREE = 0.9


class _Protocol(dict):
  name = "test"

  def get(self, key, default=None):
    return dict.get(self, key, default)


PROTOCOL = _Protocol(distribution_mode="easy", num_levels=200)


def _trainer(batched: bool = False, rule_name: str = "actor_critic", **cfg):
  from disco_eval.agents.networks import Agent
  from disco_eval.envs.procgen import ProcgenTask
  from disco_eval.rules import weights
  from disco_eval.rules.registry import build_rule
  from disco_eval.train.host_batched import BatchedHostTrainer
  from disco_eval.train.host_loop import HostTrainer
  from disco_eval.train.loop import TrainConfig
  from disco_eval.train.optim import make_optimizer

  r = weights.resolve_rule(rule_name)
  st = rule_settings(r.manifest, load_suite("procgen"))
  st["agent"] = {**st["agent"], **TINY_AGENT}
  rule = build_rule(r.manifest.kind, st, r.label)
  agent = Agent(st["agent"], rule.output_spec(15), 15, (3, 64, 64))
  kind = BatchedHostTrainer if batched else HostTrainer
  tc = TrainConfig(**{**CFG, **cfg})
  return kind(ProcgenTask("coinrun"), agent, rule, make_optimizer(st["optimizer"]), tc, PROTOCOL), r


def _separate(lag: int, seeds=(0, 1), chunks=(4, 2)):
  tr, r = _trainer(policy_lag=lag)
  states, ms, it = [tr.init(s) for s in seeds], [], 0
  for n in chunks:
    states, m = tr.run_turns(states, r.params, it, n)
    ms.append(m)
    it += n
  tr.close()
  return states, ms


def _batched(lag: int, seeds=(0, 1), chunks=(4, 2)):
  from disco_eval.train.seed_group import SeedGroup

  tr, r = _trainer(batched=True, policy_lag=lag)
  group, ms, it = SeedGroup(tr, seeds), [], 0
  for n in chunks:
    ms.append(group.run_chunk(r.params, it, n))
    it += n
  tr.close()
  return [group.state_of(j) for j in range(len(seeds))], ms


def _same_structure(a, b) -> None:
  """Metrics of one chunk with the same fields, shapes, dtypes and columns."""
  assert a._fields == b._fields and sorted(a.extra) == sorted(b.extra)
  for x, y in zip(a[:-1], b[:-1]):
    assert np.shape(x) == np.shape(y) and np.asarray(x).dtype == np.asarray(y).dtype


def _replayed(seed: int, data, entries: int) -> None:
  """Seed `seed`'s own pool, stepped with the actions of its replay entries
  (`data`, the seed's buffer), gives the entries' observations, rewards and
  episode ends: the environment's contract, one program on both sides."""
  from disco_eval.envs.procgen import ProcgenTask

  pool = ProcgenTask("coinrun").pool(CFG["num_envs"], seed, PROTOCOL)
  try:
    obs, reward, last = pool.reset(), np.zeros(CFG["num_envs"]), np.zeros(CFG["num_envs"])
    for i in range(entries):
      for t in range(CFG["rollout_len"]):
        np.testing.assert_array_equal(obs, data.observations[i][t])
        np.testing.assert_array_equal(reward, data.rewards[i][t])
        np.testing.assert_array_equal(1.0 - np.asarray(last, np.float32), data.discounts[i][t])
        obs, reward, last, _ = pool.step(np.asarray(data.actions[i][t]))
  finally:
    pool.close()


@pytest.mark.slow
@pytest.mark.parametrize("lag", [0, 1])
def test_batched_seeds_equal_separate_seeds(lag):
  pytest.importorskip("envpool")
  separate, ms = _separate(lag)
  batched, mb = _batched(lag)
  iterations = sum(m.active[0].sum() for m in mb)
  for a, b in zip(ms, mb):
    _same_structure(a, b)
    # The schedule does not depend on floats: exact.
    np.testing.assert_array_equal(a.active, b.active)
    np.testing.assert_array_equal(a.learned, b.learned)
  assert np.all(mb[-1].learned[:, 1] == CFG["updates_per_iteration"])
  for j, s in enumerate(separate):
    one = jax.tree.map(np.asarray, batched[j])
    _replayed((0, 1)[j], one.buffer.data, int(iterations))
    agree = np.mean(np.asarray(s.buffer.data.actions) == one.buffer.data.actions)
    assert agree >= ACTIONS_AGREE, f"seed {j}: {agree:.3f} of the actions agree"
    if agree == 1.0:  # the same course: losses and parameters within float rounding
      for a, b in zip(ms, mb):
        np.testing.assert_allclose(a.loss[j], b.loss[j], rtol=RTOL, atol=ATOL)
      for x, y in zip(jax.tree.leaves(s.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(np.asarray(x), y, rtol=RTOL, atol=ATOL)
  # The seeds differ from each other (so the comparison above can fail).
  a, b = (jax.tree.leaves(s.params)[0] for s in separate)
  assert not np.allclose(a, b)


@pytest.mark.slow
def test_lag_zero_is_the_loop_as_it_was():
  """Chunks (policy_lag 0) run iteration after iteration, the same compiled
  programs as ``iteration``: equal bit for bit. (Checked once against the
  code before policy lag existed, same programs: equal bit for bit.)"""
  pytest.importorskip("envpool")
  tr, r = _trainer()
  s, losses = tr.init(0), []
  for it in range(5):
    s, (_, _, _, loss, _) = tr.iteration(s, r.params, it)
    losses.append(float(loss))
  tr.close()  # the same trainer (its compiled programs), fresh pools
  c, chunked = [tr.init(0)], []
  for start, n in ((0, 3), (3, 2)):
    c, m = tr.run_turns(c, r.params, start, n)
    chunked += list(m.loss[0, :n])
  tr.close()
  np.testing.assert_array_equal(chunked, losses)
  for x, y in zip(jax.tree.leaves(s), jax.tree.leaves(c[0])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_lag_one_acts_with_the_previous_parameters_and_records_their_logits():
  pytest.importorskip("envpool")
  tr, r = _trainer(policy_lag=1)
  s, params = tr.init(0), []
  for it in range(4):  # one iteration per chunk: the state is fully learned after each
    (s,), _ = tr.run_turns([s], r.params, it, 1)
    params.append(jax.tree.map(np.asarray, s.params))
    # behaviour_params: the parameters of one iteration earlier
    before = params[-2] if it else jax.tree.map(np.asarray, tr.init(0).params)
    for x, y in zip(jax.tree.leaves(s.behaviour_params), jax.tree.leaves(before)):
      np.testing.assert_array_equal(np.asarray(x), y)
  tr.close()
  data = jax.tree.map(np.asarray, s.buffer.data)
  # Entry 3 was collected with the parameters after iteration 1 (iteration
  # 2's learning ran while it was collected).
  obs = data.observations[3]
  logits = np.asarray(tr.agent.apply(params[1], obs)["logits"])
  np.testing.assert_allclose(data.behaviour_logits[3], logits, rtol=1e-5, atol=1e-5)
  newer = np.asarray(tr.agent.apply(params[2], obs)["logits"])
  assert not np.allclose(data.behaviour_logits[3], newer, rtol=1e-5, atol=1e-5)
  # Chunk boundaries do not change a lag-1 run: the same programs, the same order.
  (c,), _ = _separate(1, seeds=(0,), chunks=(3, 1))
  for x, y in zip(jax.tree.leaves(s), jax.tree.leaves(c)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_batched_run_is_interrupted_and_resumed_per_seed(tmp_path, monkeypatch):
  """A batched sweep (vmap_seeds=1) stopped after its first chunk resumes
  each seed from its own checkpoint, and the records are complete."""
  pytest.importorskip("envpool")
  import os
  import signal

  from disco_eval import store
  from disco_eval.runs import SweepSpec, run_sweep, stop
  from disco_eval.train import host_loop

  real_eval = host_loop.HostTrainer.evaluate
  monkeypatch.setattr(
    host_loop.HostTrainer, "evaluate", lambda self, p, rng, episodes: real_eval(self, p, rng, 4)
  )
  spi = CFG["num_envs"] * CFG["rollout_len"]
  overrides = (*((f"train.{k}", str(v)) for k, v in CFG.items()), ("train.vmap_seeds", "1"))
  spec = SweepSpec(
    suite="procgen",
    rules=("actor_critic",),
    seeds=(0, 1),
    tasks=("coinrun",),
    steps=8 * spi,
    protocol="easy-200",
    out=tmp_path,
    checkpoint_every=100,
    overrides=(*overrides, *((f"agent.{k}", str(v)) for k, v in TINY_AGENT.items())),
  )

  def on_progress(p):
    if p.kind == "chunk" and p.env_steps == 4 * spi:
      os.kill(os.getpid(), signal.SIGINT)

  with stop.handling(), pytest.raises(stop.Interrupted):
    run_sweep(spec, on_progress)
  runs = sorted(tmp_path.glob("procgen/coinrun/actor_critic/seed*"))
  assert len(runs) == 2
  for run in runs:
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    assert store.RunRecord(run).checkpoint_steps() == [4 * spi]
  events = []
  results = run_sweep(spec, events.append)
  assert [r.status for r in results] == ["complete", "complete"], [r.error for r in results]
  assert [e.env_steps for e in events if e.kind == "resume"] == [4 * spi]
  for res in results:
    rows = store.RunRecord(res.path).read_metrics()
    assert [int(r["iteration"]) for r in rows] == list(range(8))
    assert res.summary["seeds_in_program"] == 2


class _CountPool(HostPool):
  """Rewards = the environment's index; every 2nd step ends every episode."""

  observation_shape = (1,)
  supports_force_reset = True

  def __init__(self, num_envs, base):
    self.num_envs, self.base, self.t, self.forced = num_envs, base, 0, None

  def reset(self):
    return np.full((self.num_envs, 1), self.base, np.uint8)

  def step(self, actions):
    self.t += 1
    last = np.full(self.num_envs, self.t % 2 == 0)
    self.episode_infos = [(i, {"n": float(self.base)}) for i in np.flatnonzero(last)]
    reward = self.base + np.arange(self.num_envs, dtype=np.float32) + np.asarray(actions)
    return self.reset(), reward, last, np.zeros(self.num_envs, bool)

  def force_reset(self, mask):
    self.forced = np.asarray(mask)


def test_concat_pool_keeps_each_pool_in_its_slice():
  pools = [_CountPool(3, 10), _CountPool(3, 20)]
  pool = ConcatPool(pools)
  assert pool.num_envs == 6 and pool.supports_force_reset
  assert pool.reset()[:, 0].tolist() == [10] * 3 + [20] * 3
  _, reward, last, _ = pool.step(np.arange(6))
  assert reward.tolist() == [10, 12, 14, 23, 25, 27] and not last.any()
  _, _, last, _ = pool.step(np.zeros(6, int))
  assert last.all()
  assert pool.episode_infos == [(i, {"n": 10.0}) for i in range(3)] + [
    (3 + i, {"n": 20.0}) for i in range(3)
  ]
  pool.force_reset(np.array([1, 0, 0, 0, 0, 1], bool))
  assert pools[0].forced.tolist() == [True, False, False]
  assert pools[1].forced.tolist() == [False, False, True]
  with pytest.raises(ValueError):
    ConcatPool([_CountPool(2, 0), _CountPool(3, 0)])


def test_policy_lag_setting_label_and_refusals():
  from disco_eval.config import validate
  from disco_eval.config.overrides import TRAIN_KEYS
  from disco_eval.config.train import TrainConfig
  from disco_eval.envs.catch import Catch
  from disco_eval.train import seed_group, trainers

  assert "policy_lag" in TRAIN_KEYS and TrainConfig().policy_lag == 0
  with pytest.raises(UserError, match="policy_lag"):
    validate.check_loop_fields(TrainConfig(policy_lag=2))
  config = {
    "protocol": {"name": "easy-200", "env_steps": 1000},
    "env_steps": 1000,
    "train": {"num_envs": 4, "rollout_len": 10, "policy_lag": 1},
  }
  assert labels.protocol_label(config) == "easy-200+policy_lag=1"
  config["train"]["policy_lag"] = 0
  assert labels.protocol_label(config) == "easy-200"
  del config["train"]["policy_lag"]  # records written before the setting
  assert labels.protocol_label(config) == "easy-200"
  with pytest.raises(UserError, match="host-stepped"):
    trainers.make_trainer(Catch(), None, None, None, TrainConfig(policy_lag=1), None)
  run = seed_group.how_seeds_run
  assert run(TrainConfig(vmap_seeds=1), host_stepped=True).vmapped
  assert not run(TrainConfig(vmap_seeds=0), host_stepped=True).vmapped
  with pytest.raises(UserError, match="devices"):
    run(dataclasses.replace(TrainConfig(vmap_seeds=1), devices=2), host_stepped=True)


class _SeedPool(HostPool):
  """A seeded fake pool: random observations, rewards from the actions,
  episodes of different lengths per environment, one episode column."""

  observation_shape = (4,)

  def __init__(self, num_envs, seed):
    self.num_envs, self.seed, self.t = num_envs, seed, 0
    self.rng = np.random.default_rng(seed)

  def reset(self):
    return self.rng.standard_normal((self.num_envs, 4)).astype(np.float32)

  def step(self, actions):
    self.t += 1
    actions = np.asarray(actions)
    last = (self.t + np.arange(self.num_envs) + self.seed) % 3 == 0
    self.episode_infos = [(int(i), {"n": float(actions[i] + 1)}) for i in np.flatnonzero(last)]
    reward = (actions + self.seed).astype(np.float32)
    return self.reset(), reward, last, np.zeros(self.num_envs, bool)


@pytest.mark.slow
@pytest.mark.parametrize("lag", [0, 1])
def test_batched_seeds_keep_each_seeds_episodes_and_columns(lag):
  """Per-seed returns, episode counts and episode columns of a batched run
  are those of the seeds run apart (a small MLP agent on a fake task)."""
  from disco_eval.agents.networks import Agent
  from disco_eval.envs.base import HostTask
  from disco_eval.rules import weights
  from disco_eval.rules.registry import build_rule
  from disco_eval.train.host_batched import BatchedHostTrainer
  from disco_eval.train.host_loop import HostTrainer
  from disco_eval.train.loop import TrainConfig
  from disco_eval.train.optim import make_optimizer
  from disco_eval.train.seed_group import stack

  class Task(HostTask):
    name, num_actions, observation_shape = "fake", 3, (4,)
    observation_dtype = np.float32
    episode_columns = ("n",)

    def pool(self, num_envs, seed, protocol=None, evaluation=False):
      return _SeedPool(num_envs, seed)

  r = weights.resolve_rule("actor_critic")
  st = rule_settings(r.manifest, load_suite("catch"))
  st["agent"] = {**st["agent"], "torso_hidden": [16]}
  rule = build_rule(r.manifest.kind, st, r.label)
  agent = Agent(st["agent"], rule.output_spec(3), 3, (4,))
  cfg = TrainConfig(**{**CFG, "policy_lag": lag})
  args = (Task(), agent, rule, make_optimizer(st["optimizer"]), cfg, None)
  apart, batched = HostTrainer(*args), BatchedHostTrainer(*args)
  a, b = [apart.init(s) for s in (3, 4)], stack([batched.init(s) for s in (3, 4)])
  for start, n in ((0, 3), (3, 2)):
    a, ma = apart.run_turns(a, r.params, start, n)
    b, mb = batched.run_vmapped(b, r.params, start, n)
    _same_structure(ma, mb)
    # Episode ends do not depend on the actions here (the pool's contract):
    # exact, as the schedule of learner steps.
    for field in ("active", "episodes", "learned"):
      np.testing.assert_array_equal(getattr(ma, field), getattr(mb, field))
    # Rewards and the column are sums of sampled actions (see ACTIONS_AGREE).
    for x, y in ((ma.return_sum, mb.return_sum), (ma.extra["n"], mb.extra["n"])):
      assert np.mean(np.isclose(x, y, rtol=RTOL, atol=ATOL)) >= ACTIONS_AGREE, (x, y)
    np.testing.assert_allclose(ma.loss, mb.loss, rtol=RTOL, atol=ATOL)
  # The seeds' episodes differ (the comparison could fail) and the columns count.
  assert not np.array_equal(ma.episodes[0], ma.episodes[1]) or not np.array_equal(
    ma.return_sum[0], ma.return_sum[1]
  )
  assert ma.extra["n"].sum() >= ma.episodes.sum() > 0
  for j in range(2):
    actions = np.asarray(b.buffer.data.actions[j]) == np.asarray(a[j].buffer.data.actions)
    if actions.all():  # the same course: parameters within float rounding
      one = jax.tree.map(lambda x, j=j: np.asarray(x[j]), b.params)
      for x, y in zip(jax.tree.leaves(a[j].params), jax.tree.leaves(one)):
        np.testing.assert_allclose(np.asarray(x), y, rtol=RTOL, atol=ATOL)


def test_concat_pool_of_worker_pools_steps_them_together():
  """Worker pools side by side (the batched Crafter/NetHack pool): each
  slice is its own seed's pool, episode infos carry the global index."""
  from test_workers import make_counting

  from disco_eval.envs.workers import WorkerPool

  def pool(seed):
    kw = dict(num_envs=2, seed=seed, obs_shape=(2,), obs_dtype=np.int32, num_workers=1)
    return WorkerPool(make_counting, {"length": 2}, **kw)

  both = ConcatPool([pool(1), pool(2)])
  try:
    obs = both.reset()
    assert obs[:, 0].tolist() == [100_003, 100_004, 200_006, 200_007]
    _, reward, last, _ = both.step(np.array([1, 2, 3, 4]))
    assert reward.tolist() == [1, 2, 3, 4] and not last.any()
    obs, _, last, _ = both.step(np.ones(4, int))
    assert last.all() and obs[:, 1].tolist() == [2, 2, 2, 2]
    assert [i for i, _ in both.episode_infos] == [0, 1, 2, 3]
    assert all(info == {"steps": 2.0} for _, info in both.episode_infos)
    obs, reward, _, _ = both.step(np.ones(4, int))  # reset steps
    assert obs[:, 1].tolist() == [0, 0, 0, 0] and not reward.any()
  finally:
    both.close()
