"""The trainer for a task, chosen by the task's contract (no backend names).

A :class:`~disco_eval.envs.base.JaxEnv` trains in one compiled program
(:class:`~disco_eval.train.loop.Trainer`); a
:class:`~disco_eval.envs.base.HostTask` steps its pools on the host
(:class:`~disco_eval.train.host_loop.HostTrainer`, or, with seeds batched,
:class:`~disco_eval.train.host_batched.BatchedHostTrainer`). All have the interface
that sweeps use: ``task``, ``agent``, ``init``, ``run_chunk_group``,
``evaluate``, ``vmaps_seeds``, ``stacks_seeds`` and ``close``.
"""

from typing import Any, Protocol

import jax
import optax

from disco_eval.agents.networks import Agent
from disco_eval.envs.base import EnvSpec, HostTask
from disco_eval.errors import UserError
from disco_eval.rules.base import UpdateRule
from disco_eval.train.host_batched import BatchedHostTrainer
from disco_eval.train.host_loop import HostTrainer
from disco_eval.train.loop import TrainConfig, Trainer


class RunTrainer(Protocol):
  """What a sweep uses of a trainer (both trainers have it).

  Attributes:
    task: the env or host task trained on.
    agent: the agent network (``agent.apply`` for evaluations).
    vmaps_seeds: seeds share one vmapped program.
    stacks_seeds: ``run_chunk_group`` takes the seeds' states stacked on a
      leading axis (True) or as a list (False).
    dispatches_ahead: (optional, default False) ``run_chunk_group`` returns
      before its chunk has run (stacked states only), so a sweep dispatches
      the next chunk before writing the previous chunk's records.
  """

  task: EnvSpec
  agent: Agent
  vmaps_seeds: bool
  stacks_seeds: bool

  def init(self, seed: int) -> Any:
    """A fresh training state of one seed."""

  def run_chunk_group(
    self, states: Any, rule_params: Any, start: int, count: int
  ) -> tuple[Any, Any]:
    """Iterations [start, start + count) of the seeds' states; returns the new
    states and metrics [S, chunk] (``return_sum``, ``episodes``, ``learned``,
    ``loss``, ``active``)."""

  def evaluate(self, params: Any, rng: Any, episodes: int) -> tuple[Any, dict]:
    """Returns [episodes] of fresh episodes with `params`, and extra figures."""

  def close(self) -> None:
    """Releases what the trainer holds (host pools)."""


def batches_host_seeds(cfg: TrainConfig) -> bool:
  """Whether a host task's seeds train together (``BatchedHostTrainer``):
  ``train.vmap_seeds`` 1, or -1 (auto) on an accelerator, on one device.
  Batching changes float rounding only (the vmapped program is compiled
  differently), not what a seed computes; the run summary records it
  (``seeds_in_program``)."""
  if cfg.vmap_seeds == 1 and cfg.devices > 1:
    raise UserError(
      "train.vmap_seeds=1 batches host-stepped seeds on one device; "
      "set train.devices=1 or train.vmap_seeds=0"
    )
  if cfg.vmap_seeds >= 0:
    return bool(cfg.vmap_seeds)
  return cfg.devices == 1 and jax.default_backend() != "cpu"


def make_trainer(
  task: EnvSpec,
  agent: Agent,
  rule: UpdateRule,
  optimizer: optax.GradientTransformation,
  cfg: TrainConfig,
  protocol: Any,
) -> RunTrainer:
  """The trainer of `task`: host-stepped for a HostTask (seeds batched or
  taking turns: :func:`batches_host_seeds`), else pure JAX (`protocol` gives
  a host task its training and evaluation levels)."""
  if isinstance(task, HostTask):
    if cfg.policy_lag and cfg.devices > 1:
      raise UserError("train.policy_lag=1 runs on one device; set train.devices=1")
    kind = BatchedHostTrainer if batches_host_seeds(cfg) else HostTrainer
    return kind(task, agent, rule, optimizer, cfg, protocol)
  if cfg.policy_lag:
    raise UserError(
      f"train.policy_lag applies to host-stepped suites only ('{task.name}' trains "
      "in one compiled program); drop --set train.policy_lag"
    )
  return Trainer(task, agent, rule, optimizer, cfg)
