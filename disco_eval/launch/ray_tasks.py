"""The Ray launcher: one Ray task per unit.

The driver joins the cluster at ``--ray-address`` (else starts a local Ray
instance), submits every unit as a task asking for ``--gpus-per-unit`` GPUs
(default: 1 if the cluster has GPUs, else 0) and ``--cpus-per-unit`` CPUs
(default 1), and forwards the workers' progress events through a Ray queue to
the driver's display. Ray's own task retries are off: the driver retries
(:func:`disco_eval.launch.driver.collect`), so that a retry is counted and
shown, whether the runs failed or the worker died.
"""

import logging
import os
from typing import Callable

import ray
from ray.util.queue import Empty, Queue

from disco_eval.errors import UserError
from disco_eval.launch import base, driver
from disco_eval.runs import Progress, SweepSpec

WAIT_S = 0.3  # seconds between looks at the tasks and the progress queue


def _run_unit(spec, unit, queue) -> base.Outcome:
  """The Ray task: runs one unit, its progress events into `queue`."""

  def forward(event):
    try:
      queue.put_nowait(event)
    except Exception:  # noqa: BLE001 - a lost display event must not stop a run
      pass

  return driver.work(spec, unit, forward)


class RayBackend:
  """Units as Ray tasks (see the module docstring)."""

  def __init__(
    self, spec: SweepSpec, options: base.LaunchOptions, on_progress: Callable[[Progress], None]
  ):
    self.spec, self.on_progress = spec, on_progress
    self.refs: dict = {}  # ObjectRef -> key
    self.queue = None
    self.started = not ray.is_initialized()
    if self.started:
      self._connect(options.ray_address)
    try:
      gpus = options.gpus_per_unit
      if gpus is None:
        # A data-parallel run (--devices N) needs its N GPUs on one node.
        gpus = options.devices if ray.cluster_resources().get("GPU", 0) >= 1 else 0
      env = {k: os.environ[k] for k in base.FORWARDED_ENV if k in os.environ}
      self.task = ray.remote(_run_unit).options(
        num_cpus=options.cpus_per_unit or 1,
        num_gpus=gpus,
        max_retries=0,
        runtime_env={"env_vars": env} if env else None,
      )
      # The queue is an actor; it takes no CPU from the units.
      self.queue = Queue(actor_options={"num_cpus": 0})
    except BaseException:
      self.close()
      raise

  @staticmethod
  def _connect(address: str | None) -> None:
    kwargs = {"address": address, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
      kwargs["include_dashboard"] = False
    try:
      ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
      where = f"the Ray cluster at '{address}'" if address else "a local Ray instance"
      raise UserError(
        f"cannot start or join {where} ({base.one_line(e)}); check "
        "--ray-address (HOST:6379, or 'auto' on a node of the cluster)"
      ) from None

  def __enter__(self):
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    if self.queue is not None:
      self.queue.shutdown()
      self.queue = None
    if self.started and ray.is_initialized():
      ray.shutdown()

  def submit(self, units) -> None:
    for key, unit in units:
      self.refs[self.task.remote(self.spec, unit, self.queue)] = key

  def wait(self) -> list[tuple[int, base.Outcome]]:
    ready, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=WAIT_S)
    self._forward()  # a task's events are queued before it returns
    ended = []
    for ref in ready:
      key = self.refs.pop(ref)
      try:
        outcome = ray.get(ref)
      except ray.exceptions.RayError as e:  # it raised, its worker or node died
        outcome = base.Outcome(crash=base.one_line(e))
      ended.append((key, outcome))
    return ended

  def _forward(self) -> None:
    count = self.queue.size()
    if not count:
      return
    try:
      events = self.queue.get_nowait_batch(count)
    except Empty:
      return
    for event in events:
      self.on_progress(event)

  def cancel(self) -> None:
    for ref in self.refs:
      ray.cancel(ref)
    self.refs.clear()

  def interrupted(self) -> None:
    return None  # the driver's tasks end with it; re-running resumes them
