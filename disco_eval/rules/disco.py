"""Disco103: the discovered update rule of DiscoRL (Oh et al., Nature 2025).

An independent implementation of the rule's learner-side step from the
published description and checkpoint (``rules/disco103.toml``). The meta-network
reads a trajectory of agent outputs and produces targets for the agent's
policy (``pi_hat``), its predictions ``y`` and ``z`` (``y_hat``, ``z_hat``);
action values are trained towards Retrace targets.

Shapes: T transitions, B trajectories, A actions (any number: all weights over
actions are shared), Y = 600 prediction bins, N = 601 value bins. Actor-side
arrays carry T+1 steps. Parameters are the checkpoint's Haiku dict
``{"lstm/mlp/~/linear_0": {"w", "b"}, ...}``.

Precision: every matrix product of the rule asks for full float32
(``precision=HIGHEST`` on each, and :func:`full_precision` around the meta
step, the value decoding and the loss), whatever XLA's default: on NVIDIA GPUs
that default is TF32 (10-bit mantissa), far outside the 1e-4 bounds of the
reference check (``rules verify``).
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from disco_eval import numerics as nx
from disco_eval.config import schema
from disco_eval.rules.base import AgentOut, OutputSpec, Rollout, UnrollFn

Array = jax.Array
Params = dict[str, dict[str, Array]]

_META = "lstm/~/meta_lstm/~unroll"
HIGHEST = jax.lax.Precision.HIGHEST


def full_precision(fn):
  """`fn` traced under ``jax.default_matmul_precision("float32")``: any matrix
  product it makes without a precision of its own asks for full float32."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.default_matmul_precision("float32"):
      return fn(*args, **kwargs)

  return wrapped


def _matmul(x: Array, w: Array) -> Array:
  """x @ w in full float32 precision."""
  return jnp.matmul(x, w, precision=HIGHEST)


class MetaState(NamedTuple):
  """State the rule carries between learner steps.

  Attributes:
    hidden, cell: [128] meta-LSTM state.
    adv_ema: moments of the advantage (normalises adv and q-v advantages).
    td_ema: moments of the Q TD error (scales it).
  """

  hidden: Array
  cell: Array
  adv_ema: nx.EmaState
  td_ema: nx.EmaState


def initial_meta_state(hidden_size: int = 128) -> MetaState:
  z = jnp.zeros((hidden_size,), jnp.float32)
  return MetaState(z, z, nx.ema_init(), nx.ema_init())


@dataclasses.dataclass(frozen=True)
class RuleConfig:
  """The ``[hyperparams]`` and ``[rule]`` keys of a Disco manifest
  (``rules/disco103.toml``: the defaults live there)."""

  # [hyperparams]
  pi_cost: float
  y_cost: float
  z_cost: float
  aux_policy_cost: float
  value_cost: float
  target_params_coeff: float
  value_fn_td_lambda: float
  discount_factor: float  # recorded; the meta-network's discount is value_discount
  # [rule]
  value_discount: float
  max_abs_value: float
  num_bins: int
  prediction_size: int
  ema_decay: float
  ema_eps: float


class MetaInputs(NamedTuple):
  """One rule step's inputs.

  Attributes:
    actions: [T+1, B] int32.
    rewards: [T, B] reward of each transition.
    is_terminal: [T, B] bool, the episode ended after transition t.
    agent_out: online outputs: logits [T+1,B,A], y [T+1,B,Y], z [T+1,B,A,Y],
      q [T+1,B,A,N], aux_pi [T+1,B,A,A].
    behaviour_logits: [T+1, B, A] logits of the actor.
    target_out: outputs of the target network (logits, y, z, q used).
  """

  actions: Array
  rewards: Array
  is_terminal: Array
  agent_out: AgentOut
  behaviour_logits: Array
  target_out: AgentOut


# ---------------------------------------------------------------------------
# Haiku-compatible layers as pure functions.


def _linear(p: dict[str, Array], x: Array) -> Array:
  return _matmul(x, p["w"]) + p["b"]


def _conv1(p: dict[str, Array], x: Array) -> Array:
  """Kernel-1 Conv1D over the action axis = linear map of channels."""
  return _matmul(x, p["w"][0]) + p["b"]


def _mlp2(params: Params, prefix: str, x: Array) -> Array:
  """MLP 600 -> 16 -> relu -> 1 (no activation after the last layer)."""
  h = jax.nn.relu(_linear(params[f"{prefix}/~/linear_0"], x))
  return _linear(params[f"{prefix}/~/linear_1"], h)


def _lstm_step(p: dict[str, Array], x: Array, h: Array, c: Array) -> tuple[Array, Array]:
  """Haiku LSTM: gates [i, g, f, o], forget bias 1."""
  gates = _matmul(jnp.concatenate([x, h], axis=-1), p["w"]) + p["b"]
  i, g, f, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return h, c


def _action_block(p: dict[str, Array], x: Array) -> Array:
  """[.., A, C] -> concat(x, mean over A) -> kernel-1 conv -> relu."""
  mean = jnp.broadcast_to(jnp.mean(x, axis=-2, keepdims=True), x.shape)
  return jax.nn.relu(_conv1(p, jnp.concatenate([x, mean], axis=-1)))


def _action_net(params: Params, prefix: str, x: Array) -> Array:
  """Two action blocks: [T,B,A,9] -> [T,B,A,16] -> [T,B,A,2]."""
  x = _action_block(params[f"{prefix}/conv1_d"], x)
  return _action_block(params[f"{prefix}/conv1_d_1"], x)


def _backward_lstm(p: dict[str, Array], x: Array, reset: Array, hidden_size: int) -> Array:
  """LSTM over t = T-1..0, state zeroed before steps where `reset` holds.

  Args:
    p: LSTM parameters.
    x: [T, B, D] inputs.
    reset: [T, B] bool.
    hidden_size: H.

  Returns:
    [T, B, H] outputs h_t.
  """
  zeros = jnp.zeros(x.shape[1:2] + (hidden_size,), x.dtype)

  def step(carry, xs):
    h, c = carry
    x_t, r_t = xs
    keep = (1.0 - r_t.astype(x.dtype))[:, None]
    h, c = _lstm_step(p, x_t, h * keep, c * keep)
    return (h, c), h

  _, hs = jax.lax.scan(step, (zeros, zeros), (x, reset), reverse=True)
  return hs


# ---------------------------------------------------------------------------
# Values and normalised statistics.


class ValueOuts(NamedTuple):
  q_value: Array  # [T+1, B, A] online Q
  v: Array  # [T+1, B] online V (online pi)
  target_q_value: Array  # [T+1, B, A] target Q
  target_v: Array  # [T+1, B] target V (online pi)
  rho: Array  # [T, B] pi/mu at the taken action
  q_target: Array  # [T, B] Retrace target
  adv: Array  # [T, B]
  normalized_adv: Array  # [T, B]
  qv_adv: Array  # [T+1, B, A]
  normalized_qv_adv: Array  # [T+1, B, A]
  q_td: Array  # [T, B]
  normalized_q_td: Array  # [T, B]


@full_precision
def value_outputs(
  inp: MetaInputs, state: MetaState, cfg: RuleConfig, axis_name: str | None = None
) -> tuple[ValueOuts, nx.EmaState, nx.EmaState]:
  """Decoded values, Retrace targets, advantages and updated EMAs."""
  out, tgt = inp.agent_out, inp.target_out
  actions = inp.actions[:-1]
  pi = jax.nn.softmax(out["logits"])
  q = nx.decode_value(out["q"], cfg.max_abs_value)
  tq = nx.decode_value(tgt["q"], cfg.max_abs_value)
  v = jnp.sum(pi * q, axis=-1)
  tv = jnp.sum(pi * tq, axis=-1)
  rho = jnp.exp(
    nx.log_prob(out["logits"][:-1], actions) - nx.log_prob(inp.behaviour_logits[:-1], actions)
  )
  rho = jax.lax.stop_gradient(rho)
  discounts = cfg.value_discount * (1.0 - inp.is_terminal.astype(jnp.float32))
  c = cfg.value_fn_td_lambda * jnp.minimum(rho, 1.0)
  q_target = nx.retrace(nx.select(tq[:-1], actions), tv, inp.rewards, discounts, c)
  adv = q_target - tv[:-1]
  qv_adv = tq - tv[..., None]
  q_td = q_target - nx.select(q[:-1], actions)
  adv_ema = nx.ema_update(state.adv_ema, adv, cfg.ema_decay, axis_name)
  td_ema = nx.ema_update(state.td_ema, q_td, cfg.ema_decay, axis_name)
  outs = ValueOuts(
    q_value=q,
    v=v,
    target_q_value=tq,
    target_v=tv,
    rho=rho,
    q_target=q_target,
    adv=adv,
    normalized_adv=nx.ema_normalize(adv, adv_ema, cfg.ema_eps),
    qv_adv=qv_adv,
    normalized_qv_adv=nx.ema_normalize(qv_adv, adv_ema, cfg.ema_eps),
    q_td=q_td,
    normalized_q_td=nx.ema_normalize(q_td, td_ema, cfg.ema_eps, subtract_mean=False),
  )
  return jax.lax.stop_gradient(outs), adv_ema, td_ema


# ---------------------------------------------------------------------------
# Meta-network inputs.


def _embeddings(params: Params, inp: MetaInputs) -> dict[str, tuple[Array, ...]]:
  """y- and z-embeddings of online and target predictions, for both nets.

  The main network ("lstm") and the meta-LSTM each have their own y-net and
  z-net (MLPs 600 -> 16 -> relu -> 1 on softmax probabilities). Their first
  layers are applied as one matrix product so that each softmax is read once.

  Returns:
    prefix -> (ynet(y) [T+1,B], ynet(y_tgt) [T+1,B], znet(z) [T+1,B,A],
    znet(z_tgt) [T+1,B,A]).
  """
  prefixes = ("lstm", _META)

  def both(kind, logits):
    first = [params[f"{p}/{kind}/~/linear_0"] for p in prefixes]
    w = jnp.concatenate([f["w"] for f in first], axis=-1)
    b = jnp.concatenate([f["b"] for f in first], axis=-1)
    hidden = jax.nn.relu(_matmul(jax.nn.softmax(logits), w) + b)
    width = first[0]["w"].shape[-1]
    return [
      _linear(params[f"{p}/{kind}/~/linear_1"], hidden[..., i * width : (i + 1) * width])[..., 0]
      for i, p in enumerate(prefixes)
    ]

  y_on, y_tg = both("mlp", inp.agent_out["y"]), both("mlp", inp.target_out["y"])
  z_on, z_tg = both("mlp_1", inp.agent_out["z"]), both("mlp_1", inp.target_out["z"])
  return {p: (y_on[i], y_tg[i], z_on[i], z_tg[i]) for i, p in enumerate(prefixes)}


def _trajectory_features(
  params: Params, prefix: str, inp: MetaInputs, vals: ValueOuts, embeddings: tuple[Array, ...]
) -> tuple[Array, Array]:
  """The 27 per-step features and the action embedding.

  ``prefix`` selects the main network's action net ("lstm") or the
  meta-LSTM's own copy; ``embeddings`` are that network's y/z embeddings
  (see :func:`_embeddings`).

  Returns:
    features [T, B, 27] and action embedding [T, B, A, 2].
  """
  out, tgt = inp.agent_out, inp.target_out
  actions = inp.actions[:-1]
  pi = jax.nn.softmax(out["logits"])
  mu = jax.nn.softmax(inp.behaviour_logits)
  pi_t = jax.nn.softmax(tgt["logits"])
  num_actions = pi.shape[-1]
  y_on, y_tg, z_on, z_tg = embeddings  # [T+1,B], [T+1,B,A]
  sel = lambda x: nx.select(x[:-1], actions)  # [T+1,B,A] -> [T,B]
  pair = lambda x: jnp.stack([x[:-1], x[1:]], axis=-1)  # [T+1,B] -> [T,B,2]
  one_hot = jax.nn.one_hot(actions, num_actions, dtype=jnp.float32)

  per_action = jnp.stack(
    [
      pi[:-1],
      mu[:-1],
      pi_t[:-1],
      z_on[:-1],
      z_tg[:-1],
      nx.signed_log(vals.target_q_value[:-1]),
      nx.signed_log(vals.qv_adv[:-1]),
      vals.normalized_qv_adv[:-1],
      one_hot,
    ],
    axis=-1,
  )  # [T, B, A, 9]
  emb = _action_net(params, f"{prefix}/sequential", per_action)  # [T,B,A,2]

  columns = [
    sel(pi)[..., None],
    sel(mu)[..., None],
    nx.signed_log(inp.rewards)[..., None],
    (1.0 - inp.is_terminal.astype(jnp.float32))[..., None],
    pair(nx.signed_log(vals.v)),
    nx.signed_log(vals.adv)[..., None],
    vals.normalized_adv[..., None],
    sel(pi_t)[..., None],
    pair(y_on),
    pair(y_tg),
    sel(z_on)[..., None],
    pair(jnp.sum(pi * z_on, axis=-1)),
    pair(jnp.max(z_on, axis=-1)),
    sel(z_tg)[..., None],
    pair(jnp.sum(pi * z_tg, axis=-1)),
    pair(jnp.max(z_tg, axis=-1)),
    jnp.mean(emb, axis=2),
    nx.select(emb, actions),
  ]
  return jnp.concatenate(columns, axis=-1), emb


# ---------------------------------------------------------------------------
# The rule step.


class MetaOut(NamedTuple):
  """Targets of one rule step (all without gradient)."""

  pi_hat: Array  # [T, B, A] policy target logits
  y_hat: Array  # [T, B, Y]
  z_hat: Array  # [T, B, Y] target for z at the taken action
  meta_input_emb: Array  # [T, B, 1]
  values: ValueOuts


@full_precision
def meta_step(
  params: Params,
  state: MetaState,
  inp: MetaInputs,
  cfg: RuleConfig,
  axis_name: str | None = None,
  with_debug: bool = False,
  differentiable: bool = False,
) -> tuple[MetaOut, MetaState, dict[str, Array]]:
  """One application of the Disco103 meta-network.

  Args:
    params: checkpoint parameters.
    state: meta-state before the step.
    inp: the step's inputs (see :class:`MetaInputs`).
    cfg: rule settings.
    axis_name: pmap/shard axis over which batch statistics are averaged.
    with_debug: also return intermediates (for verification).
    differentiable: let gradients flow from the targets to `inp` (for analysing the rule,
      e.g. the sensitivity of the targets to the predictions, disco_eval.analysis.inside);
      the values, advantages and their statistics stay constants. The learner never sets it.

  Returns:
    targets, the new meta-state, and a dict of intermediates (empty unless
    `with_debug`).
  """
  if not differentiable:
    inp = jax.lax.stop_gradient(inp)
  vals, adv_ema, td_ema = value_outputs(inp, state, cfg, axis_name)
  embeddings = _embeddings(params, inp)
  x_in, emb = _trajectory_features(params, "lstm", inp, vals, embeddings["lstm"])
  hidden_size = params["lstm/lstm/linear"]["w"].shape[1] // 4
  lstm_out = _backward_lstm(params["lstm/lstm/linear"], x_in, inp.is_terminal, hidden_size)
  gate = _linear(params["lstm/linear"], state.hidden)  # [H]
  x = lstm_out * gate  # [T, B, H]
  meta_input_emb = _linear(params["lstm/linear_1"], x)
  y_hat = _linear(params["lstm/linear_2"], x)
  z_hat = _linear(params["lstm/linear_3"], x)
  num_actions = emb.shape[2]
  w = jnp.concatenate(
    [jnp.broadcast_to(x[:, :, None, :], x.shape[:2] + (num_actions,) + x.shape[2:]), emb], axis=-1
  )  # [T, B, A, H+2]
  w = _action_block(params["lstm/sequential_1/conv1_d"], w)  # [T, B, A, 16]
  pi_hat = _linear(params["lstm/linear_4"], w)[..., 0]  # [T, B, A]

  # Meta-LSTM: one step on the pooled embedding of the same kind of inputs.
  m_in, m_emb = _trajectory_features(params, _META, inp, vals, embeddings[_META])
  y_hat_emb = _mlp2(params, f"{_META}/mlp", jax.nn.softmax(y_hat))
  embed_in = jnp.concatenate([m_in, meta_input_emb, y_hat_emb], axis=-1)
  embed = _linear(params[f"{_META}/mlp_2/~/linear_0"], embed_in)  # [T,B,16]
  pooled = jnp.mean(embed, axis=(0, 1))
  if axis_name is not None:
    pooled = jax.lax.pmean(pooled, axis_name)
  hidden, cell = _lstm_step(params[f"{_META}/lstm/linear"], pooled, state.hidden, state.cell)

  out = MetaOut(pi_hat, y_hat, z_hat, meta_input_emb, vals)
  new_state = MetaState(hidden, cell, adv_ema, td_ema)
  debug = {}
  if with_debug:
    debug = {
      "trajectory_input": x_in,
      "policy_emb": emb,
      "lstm_out": lstm_out,
      "interaction_gate": gate,
      "lstm_out_after_interaction": x,
      "meta_lstm_trajectory_input": m_in,
      "meta_lstm_policy_emb": m_emb,
      "meta_lstm_embed_in": embed_in,
      "meta_lstm_embed": embed,
      "meta_lstm_input": pooled,
      "v_scalar": vals.v,
      "target_v_scalar": vals.target_v,
      "target_q_value": vals.target_q_value,
      "rho": vals.rho,
    }
  return (out if differentiable else jax.lax.stop_gradient(out)), new_state, debug


# The action model's outputs: per state and action ([T+1, B, A, ...]).
MODEL_KEYS = ("z", "aux_pi", "q")


def taken_outputs(agent_out: AgentOut, actions: Array) -> AgentOut:
  """`agent_out` with each action-model output [T+1, B, A, ...] replaced by
  its value at the taken action [T+1, B, ...] (actions [T+1, B])."""
  return {k: nx.select(v, actions) if k in MODEL_KEYS else v for k, v in agent_out.items()}


def agent_loss(
  agent_out: AgentOut, targets: MetaOut, actions: Array, is_terminal: Array, cfg: RuleConfig
) -> tuple[Array, Array, dict[str, Array]]:
  """Disco103's agent loss per step, from outputs for every action: the loss
  of :func:`agent_loss_taken` on their values at the taken actions.

  Args:
    agent_out: online outputs over T+1 steps (gradient flows through them).
    targets: the rule step's targets (constants).
    actions: [T+1, B].
    is_terminal: [T, B].
    cfg: costs.

  Returns:
    loss_per_step [T, B] (policy, y, z, auxiliary-policy KLs), the value loss
    per step [T, B] (already times value_cost), and logs.
  """
  return agent_loss_taken(taken_outputs(agent_out, actions), targets, actions, is_terminal, cfg)


@full_precision
def agent_loss_taken(
  out: AgentOut, targets: MetaOut, actions: Array, is_terminal: Array, cfg: RuleConfig
) -> tuple[Array, Array, dict[str, Array]]:
  """Disco103's agent loss per step; it reads the action model's outputs
  only at the taken actions.

  Args:
    out: online outputs over T+1 steps: logits [T+1, B, A], y [T+1, B, Y]
      and the action model's at the taken action: z [T+1, B, Y], aux_pi
      [T+1, B, A], q [T+1, B, N] (gradient flows through them).
    targets, actions, is_terminal, cfg: as :func:`agent_loss`.

  Returns:
    As :func:`agent_loss`.
  """
  a = actions[:-1]
  logits = out["logits"][:-1]
  z_a = out["z"][:-1]
  pi_kl = nx.categorical_kl(targets.pi_hat, logits)
  y_kl = nx.categorical_kl(targets.y_hat, out["y"][:-1])
  z_kl = nx.categorical_kl(targets.z_hat, z_a)
  aux_target = jax.lax.stop_gradient(out["logits"][1:])
  aux_kl = nx.categorical_kl(aux_target, out["aux_pi"][:-1])
  aux_kl = aux_kl * (1.0 - is_terminal.astype(jnp.float32))
  loss = cfg.pi_cost * pi_kl + cfg.y_cost * y_kl + cfg.z_cost * z_kl + cfg.aux_policy_cost * aux_kl

  q_logits_a = out["q"][:-1]  # [T, B, N]
  # The value target h(Q + q_td) nearly cancels (Q and q_td reach thousands
  # where G is ~0): use the very Q that formed q_td rather than decoding the
  # logits again, whose float32 rounding may differ by a few ulps.
  q_a = nx.select(targets.values.q_value[:-1], a)
  value_target = q_a + targets.values.q_td
  value_loss = cfg.value_cost * nx.categorical_value_loss(
    q_logits_a, value_target, cfg.max_abs_value
  )
  logs = {
    "pi_kl": jnp.mean(pi_kl),
    "y_kl": jnp.mean(y_kl),
    "z_kl": jnp.mean(z_kl),
    "aux_kl": jnp.mean(aux_kl),
    "q_loss": jnp.mean(value_loss) / cfg.value_cost,
    "entropy": jnp.mean(nx.entropy(logits)),
    "q_target": jnp.mean(targets.values.q_target),
  }
  return loss, value_loss, logs


# ---------------------------------------------------------------------------
# The rule object the trainer uses.


class DiscoState(NamedTuple):
  meta: MetaState
  target_params: Any


@dataclasses.dataclass(frozen=True)
class DiscoRule:
  """Disco103 through the trainer's rule interface (see rules/base.py)."""

  cfg: RuleConfig
  meta_hidden: int = 128
  name: str = "disco103"
  behaviour_logits = None  # acts from the agent's logits (rules.base.UpdateRule)
  minibatch_transitions = False  # minibatches of whole trajectories (rules.base.UpdateRule)
  num_epochs: int = 1
  num_minibatches: int = 1
  axis_name: str | None = None

  def output_spec(self, num_actions: int) -> OutputSpec:
    return OutputSpec(
      flat={"logits": (num_actions,), "y": (self.cfg.prediction_size,)},
      model={"z": (self.cfg.prediction_size,), "aux_pi": (num_actions,), "q": (self.cfg.num_bins,)},
    )

  def init_state(self, rng: Array, agent_params: Any) -> DiscoState:
    del rng
    return DiscoState(initial_meta_state(self.meta_hidden), agent_params)

  def targets(
    self,
    rule_params: Params,
    state: DiscoState,
    batch: Rollout,
    agent_out: AgentOut,
    agent_params: Any,
    unroll_fn: UnrollFn,
  ) -> tuple[MetaOut, DiscoState, dict[str, Array]]:
    target_out = unroll_fn(state.target_params, batch.observations)
    inp = MetaInputs(
      actions=batch.actions,
      rewards=batch.transition_rewards,
      is_terminal=batch.is_terminal,
      agent_out=agent_out,
      behaviour_logits=batch.behaviour_logits,
      target_out=target_out,
    )
    out, meta, _ = meta_step(rule_params, state.meta, inp, self.cfg, self.axis_name)
    coeff = self.cfg.target_params_coeff
    target_params = jax.tree.map(
      lambda t, p: coeff * t + (1.0 - coeff) * p, state.target_params, agent_params
    )
    logs = {"adv": jnp.mean(out.values.adv), "q_value": jnp.mean(out.values.q_value)}
    return out, DiscoState(meta, target_params), logs

  def loss(
    self, agent_out: AgentOut, targets: MetaOut, batch: Rollout
  ) -> tuple[Array, dict[str, Array]]:
    return self.loss_taken(taken_outputs(agent_out, batch.actions), targets, batch)

  def loss_taken(
    self, agent_out: AgentOut, targets: MetaOut, batch: Rollout
  ) -> tuple[Array, dict[str, Array]]:
    """:meth:`loss` from the action model's outputs at the taken actions
    only (see ``UpdateRule``): the learner then differentiates the action
    model for the taken action alone."""
    loss, value_loss, logs = agent_loss_taken(
      agent_out, targets, batch.actions, batch.is_terminal, self.cfg
    )
    return loss + value_loss, logs


def from_settings(
  settings: dict[str, dict[str, Any]], name: str = "disco103", axis_name: str | None = None
) -> DiscoRule:
  """Builds the rule from a manifest's settings tables ([hyperparams], [rule])."""
  cfg = schema.from_tables(RuleConfig, settings, f"rule '{name}'")
  return DiscoRule(cfg=cfg, name=name, axis_name=axis_name)
