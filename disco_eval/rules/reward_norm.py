"""Reward normalisation by a running std of the discounted return (OpenAI's ProcGen PPO).

openai/train-procgen@1a2ae21 train_procgen/train.py wraps its environments in
``VecNormalize(venv, ob=False)`` of openai/baselines@9ee399f
(baselines/common/vec_env/vec_normalize.py, running_mean_std.py): gamma 0.99
(the wrapper's default; the PPO discount of 0.999 is not passed to it), clip
10, epsilon 1e-8. At every env step, for the vector of environments::

  ret = ret * gamma + r                    # running discounted return per env
  (mean, var, count) <- update with the batch {ret}   # parallel-variance formula
  r_normalised = clip(r / sqrt(var + eps), -clip, clip)
  ret[done] = 0

with the running statistics starting at mean 0, var 1, count 1e-4 (the
``RunningMeanStd`` default). Only the variance divides the reward (it is not
centred).

Here the same recursion runs over the T transitions of a learner batch, in
the rule's state, so that the rule stays a pure function. A batch's B
trajectories must be the same B environment streams, in the same order, from
batch to batch: true of PPO's on-policy loop (a replay buffer of one entry,
learned from once). Two differences from the wrapper, both at episode
boundaries: a transition the batch masks out (the reset step a host pool
inserts after an episode's last step, reward 0) neither updates the
statistics nor the running return, and the statistics of one env step are
those of its valid transitions only. The statistics are float32, and are kept
per device in data-parallel training (as baselines keeps them per MPI worker).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from disco_eval.errors import UserError

Array = jax.Array
# The running returns live in a fixed-size vector (the state's shape may not
# depend on the batch); a batch uses its first B entries.
MAX_TRAJECTORIES = 4096
INITIAL_COUNT = 1e-4  # baselines RunningMeanStd(epsilon=1e-4)


class RewardNormState(NamedTuple):
  ret: Array  # [MAX_TRAJECTORIES] running discounted return of each trajectory column
  mean: Array  # [] running mean of the returns seen
  var: Array  # [] running (population) variance of the returns seen
  count: Array  # [] number of returns seen, from INITIAL_COUNT


def init() -> RewardNormState:
  """Fresh statistics: mean 0, var 1, count 1e-4, every return 0."""
  return RewardNormState(
    ret=jnp.zeros((MAX_TRAJECTORIES,), jnp.float32),
    mean=jnp.zeros((), jnp.float32),
    var=jnp.ones((), jnp.float32),
    count=jnp.full((), INITIAL_COUNT, jnp.float32),
  )


def update_moments(
  mean: Array, var: Array, count: Array, batch_mean: Array, batch_var: Array, batch_count: Array
) -> tuple[Array, Array, Array]:
  """Running (mean, var, count) merged with a batch's moments (Chan et al.'s
  parallel formula, as baselines' update_mean_var_count_from_moments)."""
  delta = batch_mean - mean
  total = count + batch_count
  new_mean = mean + delta * batch_count / total
  m2 = var * count + batch_var * batch_count + jnp.square(delta) * count * batch_count / total
  return new_mean, m2 / total, total


def _step(state: RewardNormState, r: Array, valid: Array, done: Array, gamma, clip, eps):
  """One env step of B environments: rewards r, valid and done masks [B]."""
  ret = jnp.where(valid, state.ret * gamma + r, state.ret)
  n = jnp.sum(valid.astype(jnp.float32))
  safe_n = jnp.maximum(n, 1.0)
  batch_mean = jnp.sum(jnp.where(valid, ret, 0.0)) / safe_n
  batch_var = jnp.sum(jnp.where(valid, jnp.square(ret - batch_mean), 0.0)) / safe_n
  mean, var, count = update_moments(state.mean, state.var, state.count, batch_mean, batch_var, n)
  keep = n > 0
  mean = jnp.where(keep, mean, state.mean)
  var = jnp.where(keep, var, state.var)
  count = jnp.where(keep, count, state.count)
  normed = jnp.where(valid, jnp.clip(r / jnp.sqrt(var + eps), -clip, clip), 0.0)
  ret = jnp.where(valid & done, 0.0, ret)
  return RewardNormState(ret, mean, var, count), normed


def normalize(
  state: RewardNormState,
  rewards: Array,
  valid: Array,
  terminal: Array,
  gamma: float,
  clip: float,
  eps: float,
) -> tuple[Array, RewardNormState]:
  """Normalised rewards [T, B] and the new state.

  Args:
    state: the running statistics (:func:`init`).
    rewards: [T, B] reward of each transition.
    valid: [T, B] 1 where the transition is real (the batch's loss mask).
    terminal: [T, B] True where the episode ended after the transition.
    gamma, clip, eps: the wrapper's discount, clip and epsilon.

  Masked-out transitions get reward 0 (they carry no loss).
  """
  b = rewards.shape[1]
  if b > MAX_TRAJECTORIES:
    raise UserError(
      f"rule.reward_norm keeps at most {MAX_TRAJECTORIES} trajectories per batch, got {b}; "
      "use fewer environments (--set train.num_envs=...)"
    )
  inner = RewardNormState(state.ret[:b], state.mean, state.var, state.count)

  def body(carry, x):
    r, v, d = x
    return _step(carry, r, v, d, gamma, clip, eps)

  xs = (rewards.astype(jnp.float32), valid.astype(bool), terminal.astype(bool))
  inner, normed = jax.lax.scan(body, inner, xs)
  ret = state.ret.at[:b].set(inner.ret)
  return normed, RewardNormState(ret, inner.mean, inner.var, inner.count)
