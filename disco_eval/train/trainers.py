"""The trainer for a task, chosen by the task's contract (no backend names).

A :class:`~disco_eval.envs.base.JaxEnv` trains in one compiled program
(:class:`~disco_eval.train.loop.Trainer`); a
:class:`~disco_eval.envs.base.HostTask` steps its pools on the host
(:class:`~disco_eval.train.host_loop.HostTrainer`). Both have the interface
that sweeps use: ``task``, ``agent``, ``init``, ``run_chunk_group``,
``evaluate``, ``vmaps_seeds``, ``stacks_seeds`` and ``close``.
"""

from typing import Any

import optax

from disco_eval.agents.networks import Agent
from disco_eval.envs.base import EnvSpec, HostTask
from disco_eval.rules.base import UpdateRule
from disco_eval.train.host_loop import HostTrainer
from disco_eval.train.loop import TrainConfig, Trainer


def make_trainer(task: EnvSpec, agent: Agent, rule: UpdateRule,
                 optimizer: optax.GradientTransformation, cfg: TrainConfig,
                 protocol: Any) -> Trainer | HostTrainer:
  """The trainer of `task`: host-stepped for a HostTask, else pure JAX
  (`protocol` gives a host task its training and evaluation levels)."""
  if isinstance(task, HostTask):
    return HostTrainer(task, agent, rule, optimizer, cfg, protocol)
  return Trainer(task, agent, rule, optimizer, cfg)
