"""The trainers' contract (:class:`RunTrainer`) and the trainer for a task,
chosen by the task's contract (no backend names).

A :class:`~disco_eval.envs.base.JaxEnv` trains in one compiled program
(:class:`~disco_eval.train.loop.Trainer`); a
:class:`~disco_eval.envs.base.HostTask` steps its pools on the host
(:class:`~disco_eval.train.host_loop.HostTrainer`, or, with seeds vmapped,
:class:`~disco_eval.train.host_batched.BatchedHostTrainer`). Whether seeds
run vmapped is decided once, by :func:`disco_eval.train.seed_group.how_seeds_run`;
sweeps hold the seeds' states in a :class:`~disco_eval.train.seed_group.SeedGroup`.
"""

from typing import Any, Protocol

import optax

from disco_eval.agents.networks import Agent
from disco_eval.envs.base import EnvSpec, HostTask
from disco_eval.errors import UserError
from disco_eval.rules.base import UpdateRule
from disco_eval.train.host_batched import BatchedHostTrainer
from disco_eval.train.host_loop import HostTrainer
from disco_eval.train.loop import TrainConfig, Trainer
from disco_eval.train.seed_group import how_seeds_run


class RunTrainer(Protocol):
  """What sweeps, plans and benches use of a trainer (every trainer has all
  of it; nothing else is read, and nothing is probed).

  Attributes:
    task: the env or host task trained on.
    agent: the agent network (``agent.apply`` for evaluations).
    rule: the update rule (its acting policy for evaluations).
    vmaps_seeds: the seeds of a group run in one vmapped program
      (:meth:`run_vmapped`), else they take turns (:meth:`run_turns`);
      decided by :func:`~disco_eval.train.seed_group.how_seeds_run`.
    dispatches_ahead: a chunk's call returns before the chunk has run, so a
      sweep dispatches the next chunk before writing the previous chunk's
      records (same rule).
  """

  task: EnvSpec
  agent: Agent
  rule: UpdateRule
  vmaps_seeds: bool
  dispatches_ahead: bool

  def init(self, seed: int) -> Any:
    """A fresh training state of one seed (what its checkpoint holds)."""

  def run_turns(self, states: list, rule_params: Any, start: int, count: int) -> tuple[list, Any]:
    """Iterations [start, start + count) of each seed's state in `states`,
    one seed after another through one program compiled once; returns the
    new states (the old ones are donated) and metrics [S, chunk]
    (``active``, ``return_sum``, ``episodes``, ``learned``, ``loss``,
    ``extra``; rows past `count` inactive). Used when not ``vmaps_seeds``."""

  def run_vmapped(self, states: Any, rule_params: Any, start: int, count: int) -> tuple[Any, Any]:
    """As :meth:`run_turns` for states stacked on a leading axis [S, ...], in
    one vmapped program; returns the new stacked states and metrics
    [S, chunk]. Used when ``vmaps_seeds``."""

  def chunk_device_bytes(self, one: Any, rule_params: Any, seeds: int) -> int | None:
    """Device memory of the compiled chunk program for `seeds` seeds (`one`:
    a seed's state as ShapeDtypeStructs), or None where not known."""

  def evaluate(self, params: Any, rng: Any, episodes: int) -> tuple[Any, dict]:
    """Returns [episodes] of fresh episodes with `params`, and extra figures."""

  def close(self) -> None:
    """Releases what the trainer holds (host pools)."""


def make_trainer(
  task: EnvSpec,
  agent: Agent,
  rule: UpdateRule,
  optimizer: optax.GradientTransformation,
  cfg: TrainConfig,
  protocol: Any,
) -> RunTrainer:
  """The trainer of `task`: host-stepped for a HostTask (seeds vmapped or
  taking turns: :func:`~disco_eval.train.seed_group.how_seeds_run`), else
  pure JAX (`protocol` gives a host task its training and evaluation levels)."""
  if isinstance(task, HostTask):
    if cfg.policy_lag and cfg.devices > 1:
      raise UserError("train.policy_lag=1 runs on one device; set train.devices=1")
    kind = BatchedHostTrainer if how_seeds_run(cfg, host_stepped=True).vmapped else HostTrainer
    return kind(task, agent, rule, optimizer, cfg, protocol)
  if cfg.policy_lag:
    raise UserError(
      f"train.policy_lag applies to host-stepped suites only ('{task.name}' trains "
      "in one compiled program); drop --set train.policy_lag"
    )
  return Trainer(task, agent, rule, optimizer, cfg)
