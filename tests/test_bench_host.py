"""Host-stepped suites: grouped (overlapped) ProcGen stepping is exact, and
`disco-eval bench` measures them (numbers are not asserted: they belong in docs)."""

import jax
import numpy as np
import pytest

pytest.importorskip("envpool")

from disco_eval import bench                                    # noqa: E402
from disco_eval.config import resolve, suites                   # noqa: E402
from disco_eval.envs import procgen                             # noqa: E402
from disco_eval.rules import weights                            # noqa: E402
from disco_eval.runs.parts import build_parts                   # noqa: E402
from disco_eval.train import host_loop                          # noqa: E402
from disco_eval.train.loop import TrainConfig                   # noqa: E402

TINY = {"agent.impala_channels": "[8, 8, 8]", "agent.impala_hidden": "64"}
# Starpilot's random episodes are short: episode ends and rewards within a few
# hundred steps of 8 environments.
GAME, E = "starpilot", 8


def _play(pool, actions):
  """Steps `pool` with actions [T, E]; returns obs [T+1, E, ...], reward, last, truncated [T, E]."""
  out = [[pool.reset()], [], [], []]
  for a in actions:
    for seq, x in zip(out, pool.step(a)):
      seq.append(x)
  return tuple(np.stack(seq) for seq in out)


def _play_grouped(pool, actions):
  """As `_play`, in the overlapped actor's order: per step and group g, the
  group in flight (the other one) is received, then g is sent."""
  obs = pool.reset()
  t_len = len(actions)
  out = (np.zeros((t_len + 1,) + obs.shape, obs.dtype), np.zeros((t_len, E), np.float32),
         np.zeros((t_len, E), bool), np.zeros((t_len, E), bool))
  out[0][0] = obs
  in_flight = None                              # (group, step)

  def receive():
    g, t = in_flight
    for i, part in enumerate(pool.recv()):
      out[i][t + 1 if i == 0 else t, pool.group_rows[g]] = part

  for t, a in enumerate(actions):
    for g, rows in enumerate(pool.group_rows):
      if in_flight is not None:
        receive()
      pool.send(g, a[rows])
      in_flight = (g, t)
  receive()
  return out


def test_grouped_pool_steps_exactly_as_the_synchronous_pool():
  actions = np.random.default_rng(0).integers(0, procgen.NUM_ACTIONS, (300, E))
  runs = []
  for seed, groups in ((3, 1), (3, 1), (3, 2), (4, 1)):
    pool = procgen.ProcgenPool(GAME, "easy", E, seed, num_levels=200, groups=groups)
    try:
      runs.append(_play(pool, actions) if groups == 1 else _play_grouped(pool, actions))
      if groups == 2:
        assert sorted(np.concatenate(pool.group_rows).tolist()) == list(range(E))
        assert [len(r) for r in pool.group_rows] == [E // 2, E // 2]
    finally:
      pool.close()
  sync, again, grouped, other_seed = runs
  obs, reward, last, _ = sync
  assert last.sum() >= 3 and np.count_nonzero(reward) >= 3    # episodes end, rewards come
  for a, b, c in zip(sync, again, grouped):
    np.testing.assert_array_equal(a, b)        # EnvPool's ProcGen is deterministic ...
    np.testing.assert_array_equal(a, c)        # ... and grouped stepping changes nothing
  assert not np.array_equal(obs, other_seed[0])  # (the comparison can fail)


def test_grouped_pool_step_and_misuse():
  pool = procgen.ProcgenPool(GAME, "easy", 4, 0, num_levels=200, groups=2)
  try:
    obs = pool.reset()
    o, r, last, _ = pool.step(np.zeros(4, np.int32))    # groups one after the other
    assert o.shape == obs.shape == (4, 3, 64, 64) and r.shape == last.shape == (4,)
    with pytest.raises(RuntimeError, match="no group in flight"):
      pool.recv()
    pool.send(0, np.zeros(2, np.int32))
    with pytest.raises(RuntimeError, match="still in flight"):
      pool.send(1, np.zeros(2, np.int32))
    assert pool.recv()[0].shape == (2, 3, 64, 64)
  finally:
    pool.close()
  with pytest.raises(ValueError, match="do not split"):
    procgen.ProcgenPool(GAME, "easy", 5, 0, groups=2)


def _parts():
  suite = suites.load_suite("procgen")
  rule = weights.resolve_rule("actor_critic")
  settings = resolve.rule_settings(rule.manifest, suite, TINY)
  task, rule_obj, agent, opt = build_parts(suite, GAME, rule, settings)
  return suite.protocol("easy-200"), rule, task, rule_obj, agent, opt


def test_overlapped_iterations_store_the_same_rollouts():
  proto, rule, task, rule_obj, agent, opt = _parts()
  cfg = TrainConfig(num_envs=E, rollout_len=40, buffer_capacity=4, min_buffer=2,
                    sample_entries=1, updates_per_iteration=1, chunk=3)
  results = {}
  for overlap in (False, True):
    tr = host_loop.HostTrainer(task, agent, rule_obj, opt, cfg, proto, overlap=overlap)
    try:
      state, outs = tr.init(0), []
      for it in range(3):                       # the first learns nothing, the others do
        state, (ret, eps, learned, loss, _) = tr.iteration(state, rule.params, it)
        outs.append((ret, eps, learned, float(loss)))
      assert tr._actors[0].grouped is overlap
      results[overlap] = (jax.tree.map(np.asarray, state.buffer.data), outs,
                          jax.tree.map(np.asarray, state.params))
    finally:
      tr.close()
  (buf_s, outs_s, params_s), (buf_o, outs_o, params_o) = results[False], results[True]
  for a, b in zip(jax.tree.leaves(buf_s), jax.tree.leaves(buf_o)):
    np.testing.assert_array_equal(a, b)
  assert outs_s == outs_o
  assert sum(o[1] for o in outs_s) >= 1 and outs_s[1][2] == 1   # episodes ended; learned
  assert (buf_s.discounts == 0).any() and (buf_s.rewards != 0).any()
  for a, b in zip(jax.tree.leaves(params_s), jax.tree.leaves(params_o)):
    np.testing.assert_array_equal(a, b)


def test_overlap_setting(monkeypatch):
  proto, _, task, rule_obj, agent, opt = _parts()
  cfg = TrainConfig(num_envs=4, rollout_len=5)
  monkeypatch.delenv(host_loop.OVERLAP_ENV, raising=False)
  assert not host_loop.HostTrainer(task, agent, rule_obj, opt, cfg, proto).overlaps
  monkeypatch.setenv(host_loop.OVERLAP_ENV, "1")
  assert host_loop.HostTrainer(task, agent, rule_obj, opt, cfg, proto).overlaps
  monkeypatch.setenv(host_loop.OVERLAP_ENV, "0")
  assert not host_loop.HostTrainer(task, agent, rule_obj, opt, cfg, proto).overlaps
  monkeypatch.setenv(host_loop.OVERLAP_ENV, "1")
  odd = TrainConfig(num_envs=3, rollout_len=5)    # no even split: synchronous
  assert not host_loop.HostTrainer(task, agent, rule_obj, opt, odd, proto).overlaps


@pytest.mark.slow
def test_bench_on_procgen_reports_every_measurement(monkeypatch):
  monkeypatch.delenv(host_loop.OVERLAP_ENV, raising=False)
  res = bench.run_bench(
      "procgen", "actor_critic", seeds=2, task="coinrun", repeats=1,
      overrides=(("train.num_envs", "4"), ("train.rollout_len", "8"), *TINY.items()))
  assert res["suite"] == "procgen" and res["backend"] == "envpool" and res["envpool"]
  assert res["env_steps_per_s"] > 0 and res["train_steps_per_s"] > 0
  assert set(res["modes"]) == {"sync", "overlapped"} and res["overlap_supported"]
  for name, m in res["modes"].items():
    assert m["overlapped"] is (name == "overlapped")
    assert m["train_steps_per_s"] > 0 and m["actor_steps_per_s"] > m["train_steps_per_s"]
    split = m["split_per_iteration"]
    assert set(split) == {"env_s", "policy_s", "host_s", "learner_s"}
    assert split["env_s"] > 0 and split["policy_s"] > 0 and split["learner_s"] > 0
  assert 0 < res["train_over_env_ratio"] < res["actor_over_env_ratio"]
  assert res["learner"]["step_s"] > 0 and 0 < res["learner"]["rule_share"]
  assert set(res["scaling"]) == {"taking_turns"} and res["seeds"] == 2
  assert res["scaling"]["taking_turns"]["steps_per_s"] > 0
  rows = dict(bench.report_rows(res))
  assert "envpool" in rows["versions"] and "DISCO_EVAL_OVERLAP=0" in rows[
      "actor overlap (env steps beside inference)"]
  assert res["overlap_default"] is False and res["train_steps_per_s"] == (
      res["modes"]["sync"]["train_steps_per_s"])
