"""One episode of a trained agent: rewards, policy entropy and its predictions over time
(the paper's Fig. 4a: y and z change sharply ahead of rewards and of policy changes).

Row t of a trace is the agent's state at step t of the episode: its policy entropy, value
and statistics of its predictions, the action it sampled and the reward that action
brought (``reward`` = r_{t+1}, the episode's last row holding the final reward).
"""

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval import numerics as nx
from disco_eval.rules.base import Rollout

COLUMNS = (
  "t",
  "action",
  "reward",
  "policy_entropy",
  "value",
  "y_entropy",
  "y_max_prob",
  "y_change",
  "z_entropy",
  "z_change",
)


def _entropy(logits: np.ndarray) -> np.ndarray:
  """Entropy (nats) of softmax(logits) over the last axis."""
  logp = np.asarray(jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1))
  return -np.sum(np.exp(logp) * logp, axis=-1)


def _probs(logits: np.ndarray) -> np.ndarray:
  return np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1))


def first_episode(rollout: Rollout) -> int:
  """Steps of the first episode of environment 0 (the index of its last step); a
  ValueError when it did not end within the rollout."""
  ends = np.nonzero(np.asarray(rollout.discounts)[1:, 0] == 0)[0]
  if ends.size == 0:
    raise ValueError("no episode ended")
  return int(ends[0]) + 1


def value(agent_out: dict, max_abs_value: float) -> np.ndarray:
  """V = sum_a pi(a) Q(a) of the agent's outputs [..., A], Q decoded from its 601 bins."""
  q = nx.decode_value(jnp.asarray(agent_out["q"]), max_abs_value)
  pi = jax.nn.softmax(jnp.asarray(agent_out["logits"]))
  return np.asarray(jnp.sum(pi * q, axis=-1))


def trace(rollout: Rollout, agent_out: dict, max_abs_value: float) -> dict[str, np.ndarray]:
  """The columns (:data:`COLUMNS`) of the first episode of environment 0.

  Args:
    rollout: actor steps [S, E] (the trainer's layout).
    agent_out: the agent's outputs on its observations, [S, E, ...].
    max_abs_value: the rule's value support (300 for Disco103).
  """
  n = first_episode(rollout)
  actions = np.asarray(rollout.actions)[:n, 0]
  out = {k: np.asarray(v)[:n, 0] for k, v in agent_out.items()}
  y = _probs(out["y"])
  z_taken = out["z"][np.arange(n), actions]  # [n, Y]
  z = _probs(z_taken)
  change = lambda p: np.concatenate([[0.0], 0.5 * np.abs(np.diff(p, axis=0)).sum(-1)])  # noqa: E731
  return {
    "t": np.arange(n),
    "action": actions,
    "reward": np.asarray(rollout.rewards)[1 : n + 1, 0],
    "policy_entropy": _entropy(out["logits"]),
    "value": value(out, max_abs_value),
    "y_entropy": _entropy(out["y"]),
    "y_max_prob": y.max(-1),
    "y_change": change(y),
    "z_entropy": _entropy(z_taken),
    "z_change": change(z),
  }
