"""Agent networks (Flax): a torso, per-state heads and an action model.

The agent produces whatever outputs the rule's :class:`OutputSpec` asks for:

* ``flat`` outputs (e.g. logits [A], y [600]) are linear heads on the torso;
* ``model`` outputs (e.g. z, q, aux_pi) come from a one-step LSTM action
  model: the torso is embedded into an LSTM state (cell = linear(torso),
  hidden = tanh(cell)); one LSTM step per one-hot action, then an MLP per head.
  They have shape [A, *spec].

Torsos are pluggable (``TORSOS``): later suites add conv and NetHack torsos.
Weights follow Haiku's defaults (truncated normal, std 1/sqrt(fan_in); zero
biases); heads use a truncated normal of std ``head_init_std``.
"""

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from disco_eval.agents import by_rank, conv, glyph, impala
from disco_eval.agents.dtypes import torso_dtype
from disco_eval.agents.inits import fan_in_truncated_normal, truncated_normal
from disco_eval.rules.base import OutputSpec

Array = jax.Array


def _dense(
  features: int, name: str | None = None, init=fan_in_truncated_normal, dtype=None
) -> nn.Dense:
  return nn.Dense(features, kernel_init=init, name=name, dtype=dtype)


class MLPTorso(nn.Module):
  """Flatten then MLP; relu between layers, none after the last (Haiku MLP)."""

  hidden: Sequence[int] = (512, 512)
  dtype: Any = jnp.float32  # compute dtype (agents/dtypes.py)

  @nn.compact
  def __call__(self, obs: Array) -> Array:
    x = obs.reshape(obs.shape[0], -1).astype(self.dtype)
    for i, h in enumerate(self.hidden):
      x = _dense(h, name=f"dense_{i}", dtype=self.dtype)(x)
      if i < len(self.hidden) - 1:
        x = nn.relu(x)
    return x.astype(jnp.float32)


def _mlp(agent: dict) -> MLPTorso:
  return MLPTorso(hidden=tuple(agent.get("torso_hidden", (512, 512))), dtype=torso_dtype(agent))


TORSOS: dict[str, Callable[..., nn.Module]] = {
  "mlp": _mlp,
  "flat_or_image": lambda agent: by_rank.from_settings(agent, _mlp),
  "sokoban_conv": lambda agent: conv.from_settings(agent),
  "impala_cnn": lambda agent: impala.from_settings(agent),
  "glyph_net": lambda agent: glyph.from_settings(agent),
}


class LSTMActionModel(nn.Module):
  """One LSTM step per action from an embedding of the torso."""

  spec: dict[str, tuple[int, ...]]
  num_actions: int
  lstm_size: int = 128
  head_hidden: Sequence[int] = (128,)

  @nn.compact
  def __call__(self, torso: Array, actions: Array | None = None) -> dict[str, Array]:
    """Outputs [B, A, *spec] for every action of each of the B states, or,
    given `actions` [B] (int), [B, *spec] for that one action of each state
    (the same function, computed on B rows instead of B*A)."""
    b, a = torso.shape[0], self.num_actions
    cell = _dense(self.lstm_size, name="root")(torso)
    hidden = jnp.tanh(cell)
    if actions is None:
      # LSTM step on one-hot actions, state repeated per action: [B*A, H].
      one_hot = jnp.tile(jnp.eye(a, dtype=torso.dtype), (b, 1))
      h = jnp.repeat(hidden, a, axis=0)
      c = jnp.repeat(cell, a, axis=0)
      lead = (b, a)
    else:
      one_hot = jax.nn.one_hot(actions, a, dtype=torso.dtype)
      h, c, lead = hidden, cell, (b,)
    gates = _dense(4 * self.lstm_size, name="lstm")(jnp.concatenate([one_hot, h], -1))
    i, g, f, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    out = jax.nn.sigmoid(o) * jnp.tanh(c)
    result = {}
    for key in sorted(self.spec):
      shape = self.spec[key]
      x = out
      for j, width in enumerate(self.head_hidden):
        x = nn.relu(_dense(width, name=f"{key}_hidden_{j}")(x))
      x = _dense(math.prod(shape), name=f"{key}_out")(x)
      result[key] = x.reshape(lead + tuple(shape))
    return result


class AgentNet(nn.Module):
  """Torso + flat heads + (optional) action model, for a batch [B, ...]."""

  torso: nn.Module
  spec: OutputSpec
  num_actions: int
  head_init_std: float = 1e-2
  model_lstm_size: int = 128
  model_head_hidden: Sequence[int] = (128,)

  @nn.compact
  def __call__(self, obs: Array, with_model: bool = True):
    """Outputs {name: [B, ...]}; without `with_model`, (the flat heads'
    outputs, the torso's embedding [B, E]) and no action model."""
    emb = self.torso(obs)
    out = {}
    for key in sorted(self.spec.flat):
      shape = self.spec.flat[key]
      x = _dense(math.prod(shape), name=f"head_{key}", init=truncated_normal(self.head_init_std))(
        emb
      )
      out[key] = x.reshape((obs.shape[0],) + tuple(shape))
    if not with_model:
      return out, emb
    if self.spec.model:
      out.update(
        LSTMActionModel(
          self.spec.model,
          self.num_actions,
          self.model_lstm_size,
          tuple(self.model_head_hidden),
          name="model",
        )(emb)
      )
    return out


class Agent:
  """Pure init/apply functions of an agent network.

  ``apply(params, obs)`` accepts any leading dims: obs [..., *obs_shape] ->
  outputs [..., *spec]. ``apply`` is ``model(params, body(params, obs)[1])``
  merged with ``body``'s flat outputs: the learner splits it there to
  differentiate the action model at the taken actions only.
  """

  def __init__(
    self,
    agent_settings: dict[str, Any],
    spec: OutputSpec,
    num_actions: int,
    obs_shape: tuple[int, ...],
  ):
    torso_name = agent_settings.get("torso", "mlp")
    if torso_name not in TORSOS:
      raise ValueError(f"unknown torso '{torso_name}'; known: {sorted(TORSOS)}")
    self.obs_shape = tuple(obs_shape)
    self.spec = spec
    lstm_size = int(agent_settings.get("model_lstm_size", 128))
    head_hidden = tuple(agent_settings.get("model_head_hidden", (128,)))
    self.net = AgentNet(
      torso=TORSOS[torso_name](agent_settings),
      spec=spec,
      num_actions=num_actions,
      head_init_std=float(agent_settings.get("head_init_std", 1e-2)),
      model_lstm_size=lstm_size,
      model_head_hidden=head_hidden,
    )
    # The same module as AgentNet's "model", applied on its own parameters.
    self.model_net = LSTMActionModel(spec.model, num_actions, lstm_size, head_hidden)

  def init(self, rng: Array) -> Any:
    dummy = jnp.zeros((1,) + self.obs_shape, jnp.float32)
    return self.net.init(rng, dummy)

  def apply(self, params: Any, obs: Array) -> dict[str, Array]:
    lead = obs.shape[: obs.ndim - len(self.obs_shape)]
    flat = obs.reshape((-1,) + self.obs_shape)
    out = self.net.apply(params, flat)
    return jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), out)

  @property
  def has_model(self) -> bool:
    """Whether the agent has an action model (the spec's ``model`` outputs)."""
    return bool(self.spec.model)

  def body(self, params: Any, obs: Array) -> tuple[dict[str, Array], Array]:
    """The torso and flat heads: obs [..., *obs_shape] -> (flat outputs
    [..., *spec], torso embedding [..., E])."""
    lead = obs.shape[: obs.ndim - len(self.obs_shape)]
    flat = obs.reshape((-1,) + self.obs_shape)
    out = self.net.apply(params, flat, with_model=False)
    return jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), out)

  def model(self, params: Any, emb: Array, actions: Array | None = None) -> dict[str, Array]:
    """The action model on embeddings [..., E]: outputs [..., A, *spec] for
    every action or, given `actions` [...] (int), [..., *spec] at those."""
    lead = emb.shape[:-1]
    flat = emb.reshape((-1, emb.shape[-1]))
    acts = None if actions is None else actions.reshape(-1)
    out = self.model_net.apply({"params": params["params"]["model"]}, flat, acts)
    return jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), out)
