"""Craftax-Classic: the adapter, its evaluation, the suite, and cross-checks
of its achievement set and reward scale against Crafter's (the ``crafter``
package: crafter/data.yaml and crafter/env.py)."""

import math
import re
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("craftax")

from disco_eval.config import suites  # noqa: E402
from disco_eval.envs import craftax, registry  # noqa: E402
from disco_eval.envs import crafter as crafter_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_achievements_are_crafters_22():
  crafter = pytest.importorskip("crafter")
  import yaml

  data = yaml.safe_load((Path(crafter.__file__).parent / "data.yaml").read_text())
  names = craftax.achievement_names()
  assert len(names) == 22 and len(set(names)) == 22
  assert set(names) == set(data["achievements"]) == set(crafter_env.ACHIEVEMENTS)


def _random_steps(env, n: int, steps: int, seed: int):
  """Uniformly random play without resets: per step the reward, the change
  in unlocked achievements and in health, and whether the episode is live."""

  @jax.jit
  def play(key):
    k_reset, k_act = jax.random.split(key)
    s, _ = jax.vmap(env.reset)(jax.random.split(k_reset, n))

    def body(c, k):
      s, done = c
      a = jax.random.randint(k, (n,), 0, env.num_actions)
      s2, _, t = jax.vmap(env.transition)(s, a)
      ach = jnp.sum(s2.env.achievements, -1) - jnp.sum(s.env.achievements, -1)
      health = (s2.env.player_health - s.env.player_health).astype(jnp.float32)
      out = (t.reward, ach.astype(jnp.float32), health, ~done)
      return (s2, done | t.terminated | t.truncated), out

    return jax.lax.scan(body, (s, jnp.zeros((n,), bool)), jax.random.split(k_act, steps))[1]

  return [np.asarray(x) for x in jax.device_get(play(jax.random.PRNGKey(seed)))]


@pytest.mark.slow
def test_reward_is_one_per_achievement_and_a_tenth_per_health_point():
  env = craftax.make_classic("symbolic")
  reward, ach, health, live = _random_steps(env, 16, 300, seed=0)
  np.testing.assert_allclose(reward[live], (ach + 0.1 * health)[live], atol=1e-5)
  # Not vacuous: achievements were unlocked and health went both ways.
  assert ach[live].sum() >= 5 and (health[live] > 0).any() and (health[live] < 0).any()


@pytest.mark.slow
def test_crafter_rewards_on_the_same_scale():
  crafter = pytest.importorskip("crafter")
  env = crafter.Env(seed=0)
  env.reset()
  rng = np.random.default_rng(0)
  seen_ach = seen_health = 0
  for _ in range(400):
    before = sum(v > 0 for v in env._player.achievements.values())
    health = env._player.health
    _, reward, done, info = env.step(int(rng.integers(env.action_space.n)))
    new = sum(v > 0 for v in info["achievements"].values()) - before
    d_health = info["inventory"]["health"] - health
    assert reward == pytest.approx(new + 0.1 * d_health, abs=1e-6)
    seen_ach += new
    seen_health += d_health != 0
    if done:
      env.reset()
  assert seen_ach >= 1 and seen_health >= 1


@pytest.mark.slow
def test_tasks_reset_and_step_with_a_world_bank():
  for obs, shape in (("symbolic", (1345,)), ("pixels", (3, 63, 63))):
    env = craftax.make_classic(obs, max_timesteps=5, bank=3)
    assert env.observation_shape == shape and env.num_actions == 17 and env.bank_size == 3
    s, ts = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 4))
    assert ts.observation.shape == (4,) + shape and ts.observation.dtype == jnp.float32
    step = jax.jit(jax.vmap(env.step))
    lasts = []
    for _ in range(6):
      s, ts = step(s, jnp.zeros((4,), jnp.int32))
      lasts.append(np.asarray(ts.last))
    # The 5-step limit ends every episode on step 5, as a truncation.
    assert np.asarray(lasts)[4].all() and not np.asarray(lasts)[:4].any()
    if obs == "pixels":
      assert 1.0 < float(ts.observation.max()) <= 255.0


@pytest.mark.slow
def test_evaluation_reports_return_and_the_crafter_score():
  env = craftax.make_classic("symbolic", max_timesteps=40)

  def uniform(params, obs):
    return {"logits": jnp.zeros(obs.shape[:1] + (17,), jnp.float32)}

  returns, extra = craftax.evaluate_env(env, uniform, None, jax.random.PRNGKey(0), 8)
  assert returns.shape == (8,) and np.isfinite(returns).all()
  rates = [extra[f"ach_{n}"] for n in craftax.achievement_names()]
  assert all(0.0 <= r <= 100.0 for r in rates)
  assert extra["crafter_score"] == pytest.approx(crafter_env.crafter_score(rates))
  assert 0.0 <= extra["crafter_score"] <= 100.0 and extra["mean_length"] <= 40


def test_suite_manifest_says_craftax_classic_not_crafter():
  m = suites.load_suite("craftax-classic")
  assert {"1m", "1b"} <= set(m.protocols) and m.protocol().name == "1m"
  assert m.protocols["1m"].get("env_steps") == 1_000_000
  assert m.protocols["1b"].get("env_steps") == 1_000_000_000
  for p in m.protocols.values():
    assert "Craftax-Classic (not Crafter)" in p.description
    assert p.get("reported_beside") == ["crafter_score"]
    for key in p.settings:
      if key not in ("sources", "metric_description"):
        assert key in p.sources, f"{p.name}: no source for {key}"
  (row,) = m.raw["published"]
  assert row["score"] == pytest.approx(16.86, abs=0.01) and row["env_steps"] == 100_000_000
  assert row["protocol"] == "100m" and row["metric"] == "return"
  assert registry.jax_family("craftax-classic-pixels").own_evaluation


@pytest.fixture
def small_suite(tmp_path, monkeypatch):
  """The shipped suite with a 4-world bank, 60-step episodes and a small
  evaluation (through DISCO_EVAL_MANIFESTS)."""
  root = tmp_path / "manifests"
  (root / "suites").mkdir(parents=True)
  (root / "rules").symlink_to(ROOT / "rules")
  text = (ROOT / "suites" / "craftax-classic.toml").read_text()
  text = re.sub(r"^bank = 1024$", "bank = 4\nmax_timesteps = 60", text, flags=re.M)
  text = re.sub(
    r"^eval_episodes = 128$", "eval_episodes = 8\neval_max_timesteps = 60", text, flags=re.M
  )
  (root / "suites" / "craftax-classic.toml").write_text(text)
  shutil.copy(ROOT / "suites" / "minatar.toml", root / "suites")
  monkeypatch.setenv("DISCO_EVAL_MANIFESTS", str(root))
  return tmp_path / "out"


# Both tasks with PPO, and Disco103 on the symbolic one (the rule's program does not depend on
# the observation beyond the torso, which the PPO runs cover).
@pytest.mark.slow
@pytest.mark.parametrize(
  "rule, task",
  [
    ("ppo", "craftax-classic-symbolic"),
    ("ppo", "craftax-classic-pixels"),
    ("disco103", "craftax-classic-symbolic"),
  ],
)
def test_tiny_run_of_every_task(small_suite, rule, task):
  from test_minatar import tiny_run

  extra = [("agent.torso_hidden", "[32]"), ("agent.impala_channels", "[4]")]
  extra += [("agent.impala_hidden", "32")]
  for r in tiny_run(small_suite, "craftax-classic", rule, task, 600, extra):
    s = r.summary
    assert s["task"] == task and s["eval_episodes"] == 8 and math.isfinite(s["score"])
    assert 0.0 <= s["crafter_score"] <= 100.0
    assert s["normalized_score"] == pytest.approx(s["score"] / 22.0)


def test_flat_or_image_torso_serves_both_observations():
  from disco_eval.agents.networks import Agent
  from disco_eval.rules.base import OutputSpec

  settings = {"torso": "flat_or_image", "torso_hidden": [16], "impala_channels": [4]}
  settings["impala_hidden"] = 8
  spec = OutputSpec(flat={"logits": (17,)}, model={})
  for shape, layer in (((1345,), "dense_0"), ((3, 63, 63), "stack_0_conv")):
    agent = Agent(settings, spec, 17, shape)
    params = agent.init(jax.random.PRNGKey(0))
    names = str(jax.tree_util.tree_structure(params))
    assert layer in names
    out = agent.apply(params, jnp.zeros((2,) + shape))
    assert out["logits"].shape == (2, 17)
