"""MLP probes: what the agent's outputs say about the future (the paper's Fig. 4c and
Extended Data Fig. 2; Methods, "Analysis details").

A probe is an MLP with hidden layers of 128, 64 and 32 units (ReLU; the first layer 256
units for high-dimensional inputs: more than :data:`HIGH_DIM` features), trained to predict
a quantity of the future from one of the agent's outputs at step t, and scored on held-out
data by five-fold cross-validation (the spread is the standard deviation over the folds).

Inputs (per step): ``y`` (the 600 logits), ``z`` (the A x 600 logits, flattened), ``policy``
(the A action probabilities), ``value`` (the scalar V = sum_a pi(a) Q(a)); each feature is
standardised with its training fold's mean and deviation.

Targets:
* ``future_large_reward``: whether a reward >= `threshold` arrives within the next `horizon`
  steps of the same episode (a classification: accuracy, with the majority-class rate
  beside it, as the classes are unbalanced);
* ``future_policy_entropy``: the mean policy entropy over the next `horizon` steps of the
  same episode (a regression: R^2 on the held-out fold).

Steps whose horizon runs past the collected data, or (for the entropy) with no later step
in their episode, are dropped. Training (our choice, the paper gives no optimiser
settings): Adam, learning rate 1e-3, minibatches of 256, `train_steps` steps, binary
cross-entropy or squared error (targets standardised); the five folds train as one vmapped
program.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

HIDDEN = (128, 64, 32)
HIGH_DIM_FIRST = 256
HIGH_DIM = 100  # inputs with more features than this get a first layer of 256
FOLDS = 5
INPUTS = ("y", "z", "policy", "value")
TARGETS = ("future_large_reward", "future_policy_entropy")


class Score(NamedTuple):
  """One probe's cross-validated score.

  Attributes:
    input, target: what was probed.
    metric: "accuracy" or "r2".
    mean, std: over the folds.
    folds: the per-fold scores.
    baseline: the majority-class rate (accuracy), 0 for R^2.
    samples: examples used.
    features: input width.
  """

  input: str
  target: str
  metric: str
  mean: float
  std: float
  folds: tuple[float, ...]
  baseline: float
  samples: int
  features: int


def hidden_sizes(features: int) -> tuple[int, ...]:
  """The probe's hidden layers for an input of `features` features."""
  return ((HIGH_DIM_FIRST,) + HIDDEN[1:]) if features > HIGH_DIM else HIDDEN


def init_mlp(key, sizes: tuple[int, ...]) -> list[tuple[jax.Array, jax.Array]]:
  """He-initialised layers of widths `sizes` (input first, output last)."""
  layers = []
  for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    w = jax.random.normal(jax.random.fold_in(key, i), (n_in, n_out)) * jnp.sqrt(2.0 / n_in)
    layers.append((w, jnp.zeros((n_out,))))
  return layers


def mlp(layers, x: jax.Array) -> jax.Array:
  """[N, F] -> [N] (ReLU between layers, none after the last)."""
  for w, b in layers[:-1]:
    x = jax.nn.relu(x @ w + b)
  w, b = layers[-1]
  return (x @ w + b)[:, 0]


def _loss(layers, x, y, weight, classify: bool):
  pred = mlp(layers, x)
  per = optax.sigmoid_binary_cross_entropy(pred, y) if classify else (pred - y) ** 2
  return jnp.sum(per * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def _fit_fold(key, x, y, train, classify: bool, steps: int, batch: int, lr: float):
  """Trains one probe on the rows where `train` holds; returns its predictions [N]."""
  n, f = x.shape
  w = train.astype(x.dtype)
  mean = jnp.sum(x * w[:, None], 0) / jnp.sum(w)
  std = jnp.sqrt(jnp.sum((x - mean) ** 2 * w[:, None], 0) / jnp.sum(w)) + 1e-6
  xs = (x - mean) / std
  if not classify:
    y_mean = jnp.sum(y * w) / jnp.sum(w)
    y_std = jnp.sqrt(jnp.sum((y - y_mean) ** 2 * w) / jnp.sum(w)) + 1e-6
    ys = (y - y_mean) / y_std
  else:
    ys = y
  layers = init_mlp(key, (f,) + hidden_sizes(f) + (1,))
  opt = optax.adam(lr)
  probs = w / jnp.sum(w)

  def step(carry, k):
    layers, opt_state = carry
    idx = jax.random.choice(k, n, (batch,), p=probs)
    grads = jax.grad(_loss)(layers, xs[idx], ys[idx], jnp.ones((batch,)), classify)
    updates, opt_state = opt.update(grads, opt_state, layers)
    return (optax.apply_updates(layers, updates), opt_state), None

  keys = jax.random.split(jax.random.fold_in(key, 99), steps)
  (layers, _), _ = jax.lax.scan(step, (layers, opt.init(layers)), keys)
  pred = mlp(layers, xs)
  return pred if classify else pred * y_std + y_mean


def fold_ids(n: int, seed: int) -> np.ndarray:
  """[n] fold of each example (a seeded permutation cut into FOLDS parts)."""
  order = np.random.default_rng(seed).permutation(n)
  ids = np.empty(n, np.int64)
  ids[order] = np.arange(n) % FOLDS
  return ids


def cross_validate(
  x: np.ndarray,
  y: np.ndarray,
  classify: bool,
  seed: int = 0,
  steps: int = 1000,
  batch: int = 256,
  lr: float = 1e-3,
) -> tuple[np.ndarray, float]:
  """Five-fold scores ([FOLDS]: accuracy or R^2) and the baseline (majority rate or 0)."""
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  ids = fold_ids(x.shape[0], seed)
  trains = jnp.asarray(np.stack([ids != f for f in range(FOLDS)]))
  keys = jax.random.split(jax.random.PRNGKey(seed), FOLDS)
  fit = jax.jit(
    jax.vmap(lambda k, tr: _fit_fold(k, x, y, tr, classify, steps, batch, lr), in_axes=(0, 0))
  )
  preds = np.asarray(fit(keys, trains))  # [FOLDS, N]
  yn = np.asarray(y)
  scores = []
  for f in range(FOLDS):
    test = ids == f
    p, t = preds[f][test], yn[test]
    if classify:
      scores.append(float(np.mean((p > 0) == (t > 0.5))))
    else:
      ss = float(np.sum((t - t.mean()) ** 2))
      scores.append(1.0 - float(np.sum((t - p) ** 2)) / ss if ss > 0 else float("nan"))
  base = float(max(np.mean(yn > 0.5), 1 - np.mean(yn > 0.5))) if classify else 0.0
  return np.asarray(scores), base


def future_targets(
  rewards: np.ndarray, discounts: np.ndarray, entropy: np.ndarray, horizon: int, threshold: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Per step t of a rollout [S, E]: {target: (values [S, E], valid [S, E] bool)}.

  `rewards[t]` arrived with step t and `discounts[t]` is 0 where step t ended an episode
  (the trainer's layout): the reward of acting at t is rewards[t+1], and the episode of t
  goes on to t+1 while discounts[t+1] is 1.
  """
  s, _ = rewards.shape
  large = np.zeros(rewards.shape, bool)
  ent_sum = np.zeros(rewards.shape)
  ent_n = np.zeros(rewards.shape)
  valid = np.zeros(rewards.shape, bool)
  for t in range(s):
    alive = np.ones(rewards.shape[1], bool)  # step t+j-1 -> t+j stays in t's episode
    if t + horizon >= s:
      continue
    valid[t] = True
    for j in range(1, horizon + 1):
      large[t] |= alive & (rewards[t + j] >= threshold)
      alive = alive & (discounts[t + j] > 0)
      ent_sum[t] += np.where(alive, entropy[t + j], 0.0)
      ent_n[t] += alive
  entropy_mean = np.where(ent_n > 0, ent_sum / np.maximum(ent_n, 1), 0.0)
  return {
    "future_large_reward": (large.astype(np.float32), valid),
    "future_policy_entropy": (entropy_mean, valid & (ent_n > 0)),
  }


def probe_table(
  features: dict[str, np.ndarray],
  targets: dict[str, tuple[np.ndarray, np.ndarray]],
  seed: int = 0,
  steps: int = 1000,
) -> list[Score]:
  """Every (input, target) probe.

  Args:
    features: {input: [S, E, F]}.
    targets: as :func:`future_targets` returns.
    seed: of the folds and the probes' initialisation.
    steps: training steps per probe.
  """
  scores = []
  for target in TARGETS:
    values, valid = targets[target]
    classify = target == "future_large_reward"
    mask = valid.reshape(-1)
    y = values.reshape(-1)[mask]
    for name in INPUTS:
      x = features[name].reshape(mask.shape[0], -1)[mask]
      folds, base = cross_validate(x, y, classify, seed, steps)
      scores.append(
        Score(
          name,
          target,
          "accuracy" if classify else "r2",
          float(np.mean(folds)),
          float(np.std(folds)),
          tuple(float(f) for f in folds),
          base,
          int(y.shape[0]),
          int(x.shape[1]),
        )
      )
  return scores
