"""Memory checked before training: each unit's projected memory against the machine's.

``run`` calls :func:`check_plan` once the sweep is planned, before any record
is opened. For each unit (one rule, one task, the seeds trained together):

* pure-JAX trainers: the device memory of the compiled chunk program (XLA's
  memory analysis: arguments + outputs + temporaries - aliased buffers; every
  seed's state when seeds take turns), as ``plan`` reports it;
* host-stepped trainers (ProcGen, Crafter, NetHack): the training state of
  every seed (replay buffer, parameters, optimiser and rule state, sized from
  the config by ``jax.eval_shape``) plus the compiled learner step's own
  buffers (its batch, outputs and temporaries; XLA's memory analysis of the
  step compiled for abstract inputs, never run, as ``bench --cost`` does),
  on the device; on the host, the rollout each seed collects and its pool's
  observation buffers.

Nothing trains: programs are compiled, never run. A projection is kept in
``$DISCO_EVAL_HOME/cache/memory/`` under a hash of everything it depends on
(the run config, the seeds, jax's version, the device), so the same unit is
compiled for it once per machine.

Available: the host's ``MemAvailable`` (``/proc/meminfo``); the device's
allocator limit less what it holds (``memory_stats``) on a GPU or TPU. On the
CPU the device *is* the host: host and device needs add up against the
host's memory. A unit that does not fit is refused in one line naming what
fits better and ``--no-memory-check``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from disco_eval import paths
from disco_eval.config import suites
from disco_eval.errors import UserError
from disco_eval.runs.parts import build_parts
from disco_eval.runs.plan import Plan, run_config
from disco_eval.runs.spec import SweepSpec, Unit
from disco_eval.train.trainers import make_trainer

CACHE_FOLDER = "memory"
CACHE_VERSION = 1


def _bytes(tree: Any) -> int:
  return int(sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _gb(n: float) -> str:
  return f"{n / 1e9:.1f} GB"


def available() -> dict[str, Any]:
  """{"host": bytes available, "device": bytes or None (the CPU: the host's),
  "device_name": words}."""
  host = None
  try:
    for line in Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemAvailable:"):
        host = int(line.split()[1]) * 1024
  except OSError:
    pass
  if host is None:
    host = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  dev = jax.devices()[0]
  device = None
  if dev.platform != "cpu":
    stats = dev.memory_stats() or {}
    if "bytes_limit" in stats:
      device = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  return {"host": host, "device": device, "device_name": f"{dev.device_kind} ({dev.platform})"}


def _learner_bytes(trainer, one, rule_params) -> int:
  """The host loop's learner update (a sample of the replay buffer, frames
  stacked as the learner stacks them, one learner step) compiled for abstract
  inputs, never run: its outputs and temporaries (the state it reads, the
  buffer included, is counted apart)."""
  key = jax.ShapeDtypeStruct((2,), np.uint32)
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(np.shape(x), np.result_type(x)), rule_params
  )
  update = jax.jit(trainer.learner.update_once)
  carry = (one.params, one.opt_state, one.rule_state)
  a = update.lower(carry, abstract, one.buffer, key).compile().memory_analysis()
  if a is None:
    return 0
  return int(a.output_size_in_bytes + a.temp_size_in_bytes)


def project_unit(config, suite, rule, unit: Unit) -> dict[str, int]:
  """{"host": bytes, "device": bytes} one unit needs (see the module doc)."""
  env, rule_obj, agent, opt = build_parts(suite, unit.task, rule, config.settings, config.train)
  trainer = make_trainer(env, agent, rule_obj, opt, config.train, config.protocol)
  seeds = len(unit.seeds)
  try:
    one = jax.eval_shape(lambda: trainer.init(0))
    if suite.backend == "jax":
      device = trainer.chunk_device_bytes(one, rule.params, seeds)
      return {"host": 0, "device": int(device or 0)}
    learner = _learner_bytes(trainer, one, rule.params)
    scale = seeds if getattr(trainer, "vmaps_seeds", False) else 1
    entry = _bytes(one.buffer.data) // max(1, config.train.buffer_capacity)
    obs = math.prod(env.observation_shape) * np.dtype(env.observation_dtype).itemsize
    host = seeds * (2 * entry + 2 * config.train.num_envs * obs)
    return {"host": int(host), "device": int(seeds * _bytes(one) + scale * learner)}
  finally:
    trainer.close()


def _cache_key(config, unit: Unit) -> str:
  dev = jax.devices()[0]
  text = json.dumps(
    [CACHE_VERSION, config.to_json(), len(unit.seeds), jax.__version__, dev.device_kind],
    sort_keys=True,
    default=str,
  )
  return hashlib.sha256(text.encode()).hexdigest()


def cached_projection(config, suite, rule, unit: Unit) -> dict[str, int]:
  """:func:`project_unit`, read from the cache when this machine projected it before."""
  path = paths.home() / "cache" / CACHE_FOLDER / f"{_cache_key(config, unit)}.json"
  try:
    found = json.loads(path.read_text())
    return {"host": int(found["host"]), "device": int(found["device"])}
  except (OSError, ValueError, KeyError, TypeError):
    pass
  need = project_unit(config, suite, rule, unit)
  try:
    from disco_eval.store import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(need).encode())
  except (OSError, UserError):
    pass  # a cache that cannot be written costs a compile next time, nothing more
  return need


def _fixes(spec: SweepSpec, suite, unit: Unit) -> str:
  """What fits better: the suite's small-batch protocol, fewer seeds per unit,
  fewer environments."""
  protocol = spec.protocol or suite.default_protocol
  fixes = []
  if "+" not in protocol:
    fixes += [f"--protocol {protocol}+{name}" for name in suite.overrides if "small" in name]
  if len(unit.seeds) > 1:
    fixes.append("--seeds-per-unit 1")
  fixes.append("a smaller --set train.num_envs=N")
  return ", ".join(fixes)


def check_plan(spec: SweepSpec, plan: Plan) -> None:
  """Refuses, in one line, a sweep with a unit whose projected memory exceeds
  what this machine has (module doc); returns when every unit fits."""
  suite = suites.load_suite(spec.suite)
  have = available()
  for unit in plan.units:
    rule = plan.rules[unit.rule_index]
    config = run_config(spec, suite, unit.task, rule, unit.overrides)
    need = cached_projection(config, suite, rule, unit)
    if have["device"] is None:  # the CPU: one memory
      pairs = [("memory", need["host"] + need["device"], have["host"], "host RAM available")]
    else:
      pairs = [
        ("host memory", need["host"], have["host"], "host RAM available"),
        ("device memory", need["device"], have["device"], f"free on {have['device_name']}"),
      ]
    for what, needed, has, where in pairs:
      if needed > has:
        raise UserError(
          f"{unit.label} on {spec.suite}/{unit.task} x{len(unit.seeds)} seed(s) needs about "
          f"{_gb(needed)} of {what} (projected: XLA's memory analysis of its compiled "
          f"programs) but this machine has {_gb(has)} {where}; try "
          f"{_fixes(spec, suite, unit)}, or pass --no-memory-check to train anyway"
        )
