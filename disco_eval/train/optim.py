"""The reference optimiser: Adam whose denominator carries no (meta-)gradient,
updates clipped elementwise, decoupled weight decay, then scaled by the
(scheduled) learning rate.

Units. DiscoRL's Extended Data Table 6 states the schedule in environment
steps (warm-up 1e6 env steps, horizon 2e8 env steps); optax counts optimiser
updates (learner steps). One learner step happens per
``TrainConfig.env_steps_per_learner_step`` env steps (env steps per iteration
over learner steps per iteration), so a schedule point of ``E`` env steps is
learner step ``E / env_steps_per_learner_step``, rounded to the nearest
integer (at least 1 for a non-zero warm-up, so a warm-up is never dropped).
The learner makes no step before the replay holds ``min_buffer`` entries, so
the schedule, which counts learner steps, starts when learning starts: the
env steps collected before that (a few iterations) are not counted. A
rule that makes several optimiser updates per learner step (PPO's epochs and
minibatches) advances the schedule once per update; the manifests that set a
schedule (Disco103, IMPALA) make one.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from disco_eval.config.train import OptimizerSettings


def scale_by_adam_sg_denom(
  b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
  """Adam's rescaling with ``stop_gradient`` on the second-moment term.

  Identical to Adam in value; under a meta-gradient only the first moment
  carries gradient, as in DiscoRL's reference optimiser.
  """

  def init_fn(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return optax.ScaleByAdamState(
      count=jnp.zeros([], jnp.int32), mu=zeros, nu=jax.tree.map(jnp.zeros_like, params)
    )

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    new = jax.tree.map(lambda m, v: m / (jnp.sqrt(jax.lax.stop_gradient(v)) + eps), mu_hat, nu_hat)
    return new, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def learner_steps(env_steps: float, env_steps_per_learner_step: float) -> int:
  """The learner step at which the actors have taken `env_steps` env steps
  (rounded to the nearest step; at least 1 when `env_steps` > 0).

  Args:
    env_steps: a point of a schedule stated in env steps (>= 0).
    env_steps_per_learner_step: env steps per learner step (> 0), as
      ``TrainConfig.env_steps_per_learner_step``.
  """
  if env_steps <= 0:
    return 0
  return max(1, int(round(env_steps / env_steps_per_learner_step)))


def learning_rate_schedule(
  opt: OptimizerSettings, env_steps_per_learner_step: float = 1.0, budget_env_steps: int = 0
) -> Callable[[Any], Any]:
  """The learning rate as a function of the learner-step count (a scalar
  int array; returns a scalar float).

  ``constant``: ``learning_rate`` throughout. ``cosine``: linear warm-up from
  0 to ``learning_rate`` over ``lr_warmup_env_steps``, then cosine decay to
  ``lr_end`` at ``lr_horizon_env_steps`` (0: `budget_env_steps`), constant
  after; the same function as ``optax.warmup_cosine_decay_schedule(0,
  learning_rate, warmup, horizon, lr_end)``, whose ``decay_steps`` counts the
  warm-up in. Env steps become learner steps by :func:`learner_steps`.

  Args:
    opt: the optimiser's settings.
    env_steps_per_learner_step: env steps per learner step (> 0).
    budget_env_steps: the run's env steps (used when the horizon is 0).
  """
  if opt.lr_schedule == "constant":
    return optax.constant_schedule(opt.learning_rate)
  horizon_env = opt.lr_horizon_env_steps or budget_env_steps
  warmup = learner_steps(opt.lr_warmup_env_steps, env_steps_per_learner_step)
  horizon = max(learner_steps(horizon_env, env_steps_per_learner_step), warmup + 1)
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=opt.learning_rate,
    warmup_steps=warmup,
    decay_steps=horizon,
    end_value=opt.lr_end,
  )


def make_optimizer(
  settings: dict[str, Any], env_steps_per_learner_step: float = 1.0, budget_env_steps: int = 0
) -> optax.GradientTransformation:
  """From a manifest's ``[optimizer]`` table (its keys and their defaults:
  :class:`disco_eval.config.train.OptimizerSettings`): optional global-norm
  clipping of the gradient (``max_grad_norm``, e.g. PPO's 0.5), Adam,
  elementwise clipping of the update (``max_abs_update``; 0 turns it off),
  decoupled weight decay (``weight_decay``), learning rate (``lr_schedule``).

  Weight decay is decoupled as in optax.adamw (Loshchilov and Hutter 2019,
  "Decoupled weight decay regularization", ICLR): ``weight_decay * params``
  is added to the clipped Adam direction, after the clipping (so it is never
  clipped), and the sum is scaled by the scheduled learning rate. A constant
  schedule without decay builds the same transformation, with the same
  state, as before the schedule and the decay existed (stored optimiser
  states stay readable).

  Args:
    settings: the ``[optimizer]`` table as resolved.
    env_steps_per_learner_step: the loop's env steps per learner step
      (``TrainConfig.env_steps_per_learner_step``), converting the schedule's
      env steps into learner steps; unused by a constant schedule.
    budget_env_steps: the run's env steps (``TrainConfig.budget_env_steps``),
      the cosine horizon when ``lr_horizon_env_steps`` is 0.
  """
  opt = OptimizerSettings.from_table(settings)
  parts = []
  if opt.max_grad_norm > 0:
    parts.append(optax.clip_by_global_norm(opt.max_grad_norm))
  parts.append(scale_by_adam_sg_denom(opt.b1, opt.b2, opt.eps))
  if opt.max_abs_update > 0:
    parts.append(optax.clip(opt.max_abs_update))
  if opt.weight_decay > 0:
    parts.append(optax.add_decayed_weights(opt.weight_decay))
  if opt.lr_schedule == "constant":
    parts.append(optax.scale(-opt.learning_rate))
  else:
    schedule = learning_rate_schedule(opt, env_steps_per_learner_step, budget_env_steps)
    parts.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*parts)
