"""Data parallelism over the local devices JAX sees (``--devices N``).

One run may spread its environments and its learner batch over N devices.
The trainers keep ONE jitted program and tell XLA how its arrays are laid out
over a 1-D device mesh whose axis is named ``data`` (GSPMD):

* the environment axis E of the environment state, the running returns and
  the replay buffer ([capacity, T+1, E, ...]) is split in N equal blocks;
* the learner batch [T+1, B, ...] is split along B after sampling;
* parameters, optimiser and rule state, keys and counters are replicated.

The one piece written per device is the agent's network on the learner
batch (``split_unroll``): it flattens [T+1, B] into one axis, which cannot
stay split along B, so XLA would gather the whole batch on every device.
Mapped with ``shard_map`` (parameters replicated, B split), each device runs
the network on its own trajectories; the gradient of the replicated
parameters is summed over devices by ``shard_map``'s own transpose. The
network treats each state alone, so this is the same function.

XLA then runs each device's share of the actor and of the learner and adds
the communication the program's semantics require: the all-reduce of the
gradient, of the loss's masked sums and of every statistic a rule takes over
the batch (Disco103's advantage/TD moving moments and the meta-LSTM's pooled
input, actor-critic's EMAs, PPO's advantage normalisation), a reshuffle of
the sampled batch (the buffer is split by environment, the batch by
trajectory), and a gather where PPO draws minibatches across devices.

Why not ``pmap``/``shard_map`` with the rules' ``axis_name`` (what DiscoRL's
reference does): there every device takes means over its own shard, so the
masked loss, PPO's minibatches and normalisation, the random draws of the
actor and the order of the batch would all change with N unless each were
rewritten by hand. Here the program's meaning does not depend on N: a run on
N devices learns what the run on one device learns, up to the order of float
reductions, and every rule statistic is global, i.e. the average of the
devices' statistics (equal shares), without a rule knowing about devices.
Random draws agree too: a jitted program's random values do not depend on
how its arrays are split (with JAX's default ``threefry_partitionable`` keys
each device draws its own share). The rules' ``axis_name`` stays for callers
that map a rule over an axis themselves.

With ``devices = 1`` nothing here is used: the programs are those of a run
without this module.
"""

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from disco_eval.errors import UserError

AXIS = "data"


def make_mesh(n: int) -> Mesh | None:
  """A 1-D mesh over the first `n` local devices; None for one device.

  Raises UserError when JAX sees fewer than `n` devices.
  """
  if n < 1:
    raise UserError(f"--devices must be at least 1, got {n}")
  if n == 1:
    return None
  local = jax.local_devices()
  if n > len(local):
    platform = local[0].platform
    hint = (
      f"; on the CPU, XLA_FLAGS=--xla_force_host_platform_device_count={n} simulates {n} devices"
      if platform == "cpu"
      else ""
    )
    raise UserError(
      f"--devices {n}: JAX sees {len(local)} {platform} device(s); pass "
      f"--devices {len(local)} or fewer{hint}"
    )
  return Mesh(np.array(local[:n]), (AXIS,))


def check_divisible(num_envs: int, devices: int) -> None:
  """Raises UserError unless `devices` splits `num_envs` (and so the learner
  batch, ``sample_entries * num_envs`` trajectories) into equal shares."""
  if num_envs % devices:
    raise UserError(
      f"train.num_envs={num_envs} is not divisible by --devices {devices} "
      "(each device runs an equal share of the environments and of the "
      "learner batch); set --set train.num_envs to a multiple of "
      f"{devices} or pick --devices dividing {num_envs}"
    )


def check_unroll_sizes(sizes: dict[str, int], devices: int) -> None:
  """Raises UserError unless each number of trajectories the network is run
  on in one piece (``sizes``: the setting that makes it -> the number)
  splits over `devices`."""
  for setting, n in sizes.items():
    if n % devices:
      raise UserError(
        f"the learner runs the agent on {n} trajectories at a time "
        f"({setting}), which --devices {devices} cannot split evenly; "
        f"change {setting} so that it is a multiple of {devices}"
      )


def spec(ndim: int, axis: int | None) -> PartitionSpec:
  """Splits dimension `axis` of an `ndim`-dimensional array over the mesh
  (None: replicated)."""
  if axis is None:
    return PartitionSpec()
  return PartitionSpec(*([None] * axis + [AXIS] + [None] * (ndim - axis - 1)))


def shardings(tree: Any, mesh: Mesh, axis: int | None) -> Any:
  """NamedShardings for every leaf of `tree`, split along `axis`."""
  return jax.tree.map(lambda x: NamedSharding(mesh, spec(np.ndim(x), axis)), tree)


def put(tree: Any, mesh: Mesh, axis: int | None) -> Any:
  """Places `tree` on the mesh, split along `axis` (None: replicated).
  Leaves already laid out so are returned as they are."""
  return jax.device_put(tree, shardings(tree, mesh, axis))


def constrain(tree: Any, mesh: Mesh, axis: int | None) -> Any:
  """Inside a jitted function: asks XLA to lay `tree` out split along `axis`
  (None: replicated). Under ``vmap`` the mapped axis is left whole."""
  return jax.lax.with_sharding_constraint(tree, shardings(tree, mesh, axis))


def split_unroll(unroll: Callable[[Any, Any], Any], mesh: Mesh) -> Callable[[Any, Any], Any]:
  """``unroll(params, observations [T+1, B, ...]) -> outputs [T+1, B, ...]``
  run by each device on its block of B (params replicated). B must be a
  multiple of the mesh's size."""
  batch = PartitionSpec(None, AXIS)
  return jax.shard_map(unroll, mesh=mesh, in_specs=(PartitionSpec(), batch), out_specs=batch)
