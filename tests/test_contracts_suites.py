"""The environment contracts, checked for every task of every suite.

The tasks are those of the suite manifests in ``suites/`` (one TOML per
suite), so a new suite or task is checked here as soon as its manifest
exists. Pure-JAX environments (backend "jax"): ``reset(key)`` and
``step(state, action)`` under ``jit(vmap(...))``, shapes and dtypes, and a
state and time step that keep their layout from step to step. Host-stepped
tasks: declared spaces, a pool of 2 environments (training and evaluation),
reset/step shapes and dtypes. Episodes must end within a bounded number of
random steps where that is cheap to play (``EPISODE_STEP_CAPS``: one line per
suite; a suite without a line is not played to an episode end).

All environments are built by :func:`make_task`, the one place to adapt when
the env contracts change.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disco_eval.config import suites
from disco_eval.envs import boxoban, registry
from disco_eval.errors import UserError

# Random steps within which every environment of a pool ends an episode: a
# bound the environment guarantees, or one far above what random play needs.
# The host loop stops as soon as every environment has ended one.
EPISODE_STEP_CAPS = {
  "catch": 8,  # episodes are rows - 1 = 7 steps long
  "sokoban": 121,  # 120-step timeout
  "procgen": 1001,  # ProcGen's 1000-step time limit (fast: EnvPool, 2 environments)
  "crafter": 1000,  # random play dies after ~130-220 steps (measured), long before 10,000
  # nethack: not seedable, episodes of random play run for thousands of steps
}
NUM_ENVS = 2


def _tasks(host: bool) -> list:
  return [
    pytest.param(s.name, t, id=f"{s.name}-{t}")
    for s in suites.list_suites()
    for t in s.tasks
    if (s.backend != "jax") == host
  ]


JAX_TASKS, HOST_TASKS = _tasks(host=False), _tasks(host=True)


def make_task(suite_name: str, task: str, shared_dir: Path):
  """(suite manifest, environment) of `task`: a pure-JAX env for backend
  "jax", else a host task (whose ``pool(...)`` makes host-stepped pools).

  Skips when the backend's package or the suite's data is missing.
  """
  suite = suites.load_suite(suite_name)
  if suite.name == "sokoban":  # its levels come from the cache: fill it
    if not (shared_dir / "boxoban" / "unfiltered").is_dir():
      pytest.skip("shared Boxoban levels are missing")
    boxoban.pull(shared_dir / "boxoban")
  try:
    return suite, registry.make(suite, task)
  except UserError as e:
    if "cannot import" in str(e):
      pytest.skip(str(e))
    raise


def random_actions(num_actions: int, steps: int, seed: int = 0) -> np.ndarray:
  """int32 [steps, NUM_ENVS] uniform actions."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, num_actions, (steps, NUM_ENVS)).astype(np.int32)


def layout(tree) -> list:
  """Structure, shapes and dtypes of a pytree."""
  return [jax.tree_util.tree_structure(tree)] + [
    (np.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)
  ]


# --- every task: manifests and spaces ---------------------------------------------


def test_every_suite_has_tasks_and_a_default_protocol():
  names = [s.name for s in suites.list_suites()]
  assert {"catch", "procgen", "crafter", "nethack", "sokoban"} <= set(names)
  for s in suites.list_suites():
    assert s.tasks and len(set(s.tasks)) == len(s.tasks), s.name
    assert s.protocol() is s.protocols[s.default_protocol], s.name
  assert len(JAX_TASKS) + len(HOST_TASKS) == sum(len(s.tasks) for s in suites.list_suites())


def _check_spaces(env) -> None:
  assert isinstance(env.num_actions, int) and env.num_actions >= 2
  shape = tuple(env.observation_shape)
  assert shape and all(isinstance(n, int) and n > 0 for n in shape)


# --- pure-JAX environments ----------------------------------------------------------


def _check_time_step(ts, shape) -> None:
  """ts.observation [E, *shape] float32, reward [E] float32, last [E] bool."""
  assert ts.observation.shape == (NUM_ENVS,) + shape and ts.observation.dtype == jnp.float32
  assert ts.reward.shape == (NUM_ENVS,) and ts.reward.dtype == jnp.float32
  assert ts.last.shape == (NUM_ENVS,) and ts.last.dtype == jnp.bool_
  assert np.all(np.isfinite(np.asarray(ts.observation)))
  assert np.all(np.isfinite(np.asarray(ts.reward)))


@pytest.mark.parametrize("suite_name,task", JAX_TASKS)
def test_jax_env_reset_and_step(suite_name, task, shared_dir):
  _, env = make_task(suite_name, task, shared_dir)
  _check_spaces(env)
  shape = tuple(env.observation_shape)
  keys = jax.random.split(jax.random.PRNGKey(0), NUM_ENVS)
  state, ts = jax.jit(jax.vmap(env.reset))(keys)
  _check_time_step(ts, shape)
  assert not np.any(np.asarray(ts.last)) and np.all(np.asarray(ts.reward) == 0)
  step = jax.jit(jax.vmap(env.step))
  for actions in random_actions(env.num_actions, 3):
    new_state, new_ts = step(state, jnp.asarray(actions))
    _check_time_step(new_ts, shape)
    # A scan carries (state, time step): both keep their layout.
    assert layout(new_state) == layout(state) and layout(new_ts) == layout(ts)
    state, ts = new_state, new_ts


@pytest.mark.parametrize("suite_name,task", JAX_TASKS)
def test_jax_env_episodes_end(suite_name, task, shared_dir):
  if suite_name not in EPISODE_STEP_CAPS:
    pytest.skip(f"no episode step cap for suite '{suite_name}'")
  _, env = make_task(suite_name, task, shared_dir)
  actions = jnp.asarray(random_actions(env.num_actions, EPISODE_STEP_CAPS[suite_name]))
  state, _ = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(1), NUM_ENVS))

  def body(s, a):
    s, ts = jax.vmap(env.step)(s, a)
    return s, (ts.reward, ts.last)

  _, (rewards, lasts) = jax.jit(lambda s, a: jax.lax.scan(body, s, a))(state, actions)
  assert np.all(np.asarray(lasts).any(axis=0)), "an episode did not end within the cap"
  assert np.all(np.isfinite(np.asarray(rewards)))


# --- host-stepped tasks and their pools ---------------------------------------------


def _check_host_step(out, task) -> None:
  """(obs [E, *shape] observation_dtype, reward [E] float32, last [E] bool,
  truncated [E] bool, truncated only where last)."""
  obs, reward, last, truncated = out
  assert obs.shape == (NUM_ENVS,) + tuple(task.observation_shape)
  assert obs.dtype == np.dtype(task.observation_dtype)
  assert reward.shape == (NUM_ENVS,) and reward.dtype == np.float32
  assert np.all(np.isfinite(reward))
  assert last.shape == truncated.shape == (NUM_ENVS,)
  assert last.dtype == truncated.dtype == np.bool_
  assert not np.any(truncated & ~last)


@pytest.mark.parametrize("suite_name,task", HOST_TASKS)
def test_host_pools_reset_and_step(suite_name, task, shared_dir):
  suite, host_task = make_task(suite_name, task, shared_dir)
  _check_spaces(host_task)
  assert np.issubdtype(np.dtype(host_task.observation_dtype), np.number)
  assert all(isinstance(c, str) for c in host_task.episode_columns)
  for seed, evaluation in ((0, False), (1, True)):
    pool = host_task.pool(NUM_ENVS, seed, suite.protocol(), evaluation=evaluation)
    try:
      assert pool.num_envs == NUM_ENVS
      obs = pool.reset()
      assert obs.shape == (NUM_ENVS,) + tuple(host_task.observation_shape)
      assert obs.dtype == np.dtype(host_task.observation_dtype)
      for actions in random_actions(host_task.num_actions, 5, seed):
        _check_host_step(pool.step(actions), host_task)
    finally:
      pool.close()


@pytest.mark.parametrize("suite_name,task", HOST_TASKS)
def test_host_pool_episodes_end(suite_name, task, shared_dir):
  if suite_name not in EPISODE_STEP_CAPS:
    pytest.skip(f"no episode step cap for suite '{suite_name}'")
  suite, host_task = make_task(suite_name, task, shared_dir)
  columns = tuple(host_task.episode_columns)
  pool = host_task.pool(NUM_ENVS, 0, suite.protocol())
  ended = np.zeros(NUM_ENVS, bool)
  try:
    pool.reset()
    for actions in random_actions(host_task.num_actions, EPISODE_STEP_CAPS[suite_name]):
      out = pool.step(actions)
      _check_host_step(out, host_task)
      last = out[2]
      if columns and last.any():
        # Tasks with episode columns report each ended episode's figures.
        infos = dict(pool.episode_infos)
        assert set(np.flatnonzero(last)) <= set(infos)
        for info in infos.values():
          assert set(columns) <= set(info) and all(np.isfinite(float(info[c])) for c in columns)
      ended |= last
      if ended.all():
        break
  finally:
    pool.close()
  assert ended.all(), "an episode did not end within the cap"
