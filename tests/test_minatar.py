"""MinAtar through gymnax: the adapter, the suite, and cross-checks against
the original ``minatar`` package (Young & Tian 2019).

Deterministic games (Breakout after its one random draw at reset, and
SpaceInvaders, which draws nothing) must give the same observations, rewards
and episode ends for the same actions. The other games draw from their own
generators, so only the statistics of a uniformly random policy can agree:
the mean episode return and length over many episodes, within five standard
errors of the difference (fixed seeds, so the test cannot flake).
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("gymnax")

from disco_eval.config import suites  # noqa: E402
from disco_eval.envs import minatar, registry  # noqa: E402

ORIGINAL = {
  "minatar-asterix": "asterix",
  "minatar-breakout": "breakout",
  "minatar-freeway": "freeway",
  "minatar-seaquest": "seaquest",
  "minatar-space_invaders": "space_invaders",
}
CHANNELS = {
  "minatar-asterix": 4,
  "minatar-breakout": 4,
  "minatar-freeway": 7,
  "minatar-seaquest": 10,
  "minatar-space_invaders": 6,
}


def _original(task: str, seed: int):
  from minatar import Environment

  env = Environment(ORIGINAL[task], sticky_action_prob=0.0, difficulty_ramping=True)
  env.seed(seed)
  env.reset()
  return env


@pytest.mark.parametrize("task", sorted(minatar.GAMES))
def test_every_game_resets_and_steps_as_the_contract_says(task):
  env = registry.make(suites.load_suite("minatar"), task)
  assert env.observation_shape == (10, 10, CHANNELS[task])
  assert env.num_actions == len(_original(task, 0).minimal_action_set())
  s, ts = jax.jit(env.reset)(jax.random.PRNGKey(0))
  assert ts.observation.dtype == jnp.float32 and ts.observation.shape == env.observation_shape
  assert set(np.unique(np.asarray(ts.observation))) <= {0.0, 1.0}
  step = jax.jit(jax.vmap(env.step))
  states, _ = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(1), 8))
  states, ts = step(states, jnp.zeros((8,), jnp.int32))
  assert ts.reward.shape == (8,) and ts.last.dtype == jnp.bool_


def test_minimal_action_sets_match_the_original_package():
  import gymnax

  for task, game in minatar.GAMES.items():
    env, _ = gymnax.make(game)
    assert list(np.asarray(env.action_set)) == list(_original(task, 0).minimal_action_set()), task


def _play_same_actions(task: str, env, state, original, actions) -> int:
  """Steps both with `actions`; asserts equal observations, rewards and ends.
  Returns the number of steps played."""
  step = jax.jit(env.transition)
  s = minatar_state(env, state)
  minimal = original.minimal_action_set()
  for i, a in enumerate(actions):
    s, obs, t = step(s, jnp.asarray(a, jnp.int32))
    reward, terminal = original.act(minimal[a])
    assert float(t.reward) == float(reward), f"{task} step {i}: reward"
    assert bool(t.terminated) == bool(terminal), f"{task} step {i}: terminal"
    if terminal:
      return i + 1
    np.testing.assert_array_equal(
      np.asarray(obs), original.state().astype(np.float32), f"{task} {i}"
    )
  return len(actions)


def minatar_state(env, state):
  from disco_eval.envs.gymnax_env import GymnaxState

  return GymnaxState(state, jax.random.PRNGKey(0))


@pytest.mark.slow
def test_breakout_matches_the_original_step_by_step():
  env = minatar.make_game("minatar-breakout", max_steps=100_000)
  played = []
  for seed in range(8):  # one episode each (random play: a few to a few dozen steps)
    original = _original("minatar-breakout", seed)
    o = original.env
    _, state = env.env.reset_env(jax.random.PRNGKey(seed), env.params)
    # Breakout's one random draw (the side the ball starts from), taken from the original.
    state = state.replace(
      ball_x=jnp.asarray(o.ball_x), ball_dir=jnp.asarray(o.ball_dir), last_x=jnp.asarray(o.last_x)
    )
    np.testing.assert_array_equal(np.asarray(env.env.get_obs(state)), o.state())
    actions = np.random.default_rng(seed).integers(0, env.num_actions, 3000)
    played.append(_play_same_actions("minatar-breakout", env, state, original, actions))
  assert sum(played) > 60 and max(played) > 15, played  # real play, not first-step ends


@pytest.mark.parametrize("seed", [0, 1])
def test_space_invaders_matches_the_original_step_by_step(seed):
  env = minatar.make_game("minatar-space_invaders", max_steps=100_000)
  original = _original("minatar-space_invaders", seed)
  obs, state = env.env.reset_env(jax.random.PRNGKey(seed), env.params)
  np.testing.assert_array_equal(np.asarray(obs), original.state())
  actions = np.random.default_rng(seed).integers(0, env.num_actions, 2000)
  played = _play_same_actions("minatar-space_invaders", env, state, original, actions)
  assert played > 20


def _gymnax_random_episodes(env, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns and lengths of `n` uniformly random episodes (pure JAX)."""

  @jax.jit
  def play(key):
    k_reset, k_act = jax.random.split(key)
    s, _ = jax.vmap(env.reset)(jax.random.split(k_reset, n))

    def cond(c):
      return ~jnp.all(c[3])

    def body(c):
      s, ret, length, done, key = c
      key, sub = jax.random.split(key)
      a = jax.random.randint(sub, (n,), 0, env.num_actions)
      s, _, t = jax.vmap(env.transition)(s, a)
      live = ~done
      ret = ret + jnp.where(live, t.reward, 0.0)
      length = length + live.astype(jnp.int32)
      return s, ret, length, done | t.terminated | t.truncated, key

    z = jnp.zeros((n,), jnp.float32)
    out = jax.lax.while_loop(cond, body, (s, z, jnp.zeros((n,), jnp.int32), z > 0, k_act))
    return out[1], out[2]

  ret, length = jax.device_get(play(jax.random.PRNGKey(seed)))
  return np.asarray(ret, np.float64), np.asarray(length, np.float64)


def _original_random_episodes(task: str, n: int, seed: int, limit: int):
  original = _original(task, seed)
  rng = np.random.default_rng(seed)
  minimal = original.minimal_action_set()
  rets, lens = [], []
  for _ in range(n):
    original.reset()
    ret, steps, terminal = 0.0, 0, False
    while not terminal and steps < limit:
      r, terminal = original.act(minimal[rng.integers(len(minimal))])
      ret, steps = ret + r, steps + 1
    rets.append(ret)
    lens.append(steps)
  return np.asarray(rets), np.asarray(lens, np.float64)


def _agree(a: np.ndarray, b: np.ndarray, what: str) -> None:
  se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
  assert abs(a.mean() - b.mean()) <= 5 * se + 1e-9, (
    f"{what}: gymnax {a.mean():.3f} vs original {b.mean():.3f} (se {se:.3f})"
  )


@pytest.mark.slow
@pytest.mark.parametrize(
  "task,episodes",
  [("minatar-asterix", 300), ("minatar-seaquest", 300), ("minatar-freeway", 40)],
)
def test_random_policy_statistics_match_the_original(task, episodes):
  env = minatar.make_game(task)
  limit = int(env.params.max_steps_in_episode)
  g_ret, g_len = _gymnax_random_episodes(env, episodes, seed=0)
  o_ret, o_len = _original_random_episodes(task, episodes, seed=0, limit=limit)
  _agree(g_ret, o_ret, f"{task} return")
  _agree(g_len, o_len, f"{task} length")
  assert g_ret.mean() > 0 or task == "minatar-seaquest"  # the statistic is not trivially 0 = 0


def test_suite_manifest_protocol_and_published_rows():
  m = suites.load_suite("minatar")
  p = m.protocol()
  assert p.name == "10m" and p.get("env_steps") == 10_000_000 and p.get("metric") == "return"
  for key in p.settings:
    if key not in ("sources", "metric_description"):
      assert key in p.sources, f"no source for {key}"
  published = {r["task"]: r for r in m.raw["published"]}
  assert published["minatar-breakout"]["score"] == pytest.approx(69.9, abs=0.01)
  assert published["minatar-asterix"]["score"] == pytest.approx(17.0, abs=0.02)
  assert published["minatar-freeway"]["score"] == pytest.approx(61.8, abs=0.03)
  assert published["minatar-space_invaders"]["score"] == pytest.approx(180.9, abs=0.03)
  for row in published.values():
    assert "published" in row["rule"] and row["env_steps"] == 10_000_000
    assert row["metric"] == "return" and "baseline_scores.yaml" in row["citation"]
    # Normalised, DiscoGen's PPO is 1.0 by construction.
    assert m.normalize(row["task"], row["score"]) == pytest.approx(1.0)


WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "rules" / "disco_103.npz"
TINY = (
  ("train.num_envs", "8"),
  ("train.rollout_len", "10"),
  ("train.buffer_capacity", "8"),
  ("train.min_buffer", "2"),
  ("train.sample_entries", "2"),
  ("train.chunk", "4"),
  ("agent.model_lstm_size", "32"),
  ("agent.model_head_hidden", "[32]"),
)


def tiny_run(tmp_path, suite: str, rule: str, task: str, steps: int, extra=()) -> list:
  """Two seeds of `rule` on `task` for `steps` env steps with a tiny loop
  and net; returns the run results (shared with tests/test_craftax.py)."""
  from disco_eval.runs import SweepSpec, run_sweep

  if rule == "disco103":
    if not WEIGHTS.is_file():
      pytest.skip(f"{WEIGHTS} is missing")
    rule = str(WEIGHTS)
  spec = SweepSpec(
    suite=suite,
    rules=(rule,),
    seeds=(0, 1),
    steps=steps,
    out=tmp_path,
    tasks=(task,),
    overrides=TINY + tuple(extra),
  )
  results = run_sweep(spec)
  assert [r.status for r in results] == ["complete", "complete"], [r.error for r in results]
  return results


# Every game once (with PPO, the cheapest rule to compile), and Disco103 on one game: the rule
# is the same program on every game, so one game shows it runs the suite (CI time).
@pytest.mark.slow
@pytest.mark.parametrize(
  "rule, task",
  [("ppo", game) for game in sorted(minatar.GAMES)] + [("disco103", "minatar-breakout")],
)
def test_tiny_run_of_every_game(tmp_path, rule, task):
  extra = (("agent.conv_channels", "[8]"), ("agent.conv_hidden", "32"))
  for r in tiny_run(tmp_path, "minatar", rule, task, 2000, extra):
    assert r.summary["task"] == task and r.summary["metric"] == "return"
    assert np.isfinite(r.summary["score"]) and r.summary["score"] >= 0.0
    assert np.isfinite(r.summary["normalized_score"])
    assert r.summary["eval_episodes"] == 128


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["impala", "actor_critic"])
def test_tiny_run_of_the_other_rules(tmp_path, rule):
  extra = (("agent.conv_channels", "[8]"), ("agent.conv_hidden", "32"))
  for r in tiny_run(tmp_path, "minatar", rule, "minatar-breakout", 2000, extra):
    assert np.isfinite(r.summary["score"]) and r.summary["score"] >= 0.0
