"""One code path for 1 device, N devices and N hosts: a 1-D mesh with axis 'data'.

State is replicated (PartitionSpec()), batches are sharded along their first axis
(PartitionSpec('data')), and `jax.jit` with these NamedShardings lets XLA insert the
gradient all-reduces. Each process feeds its own slice of the global batch.

Several processes (hosts) join with `initialize_distributed` before anything else uses
jax; then every array the step touches is global (the state, the key, the batch), only
the primary process writes files (`is_primary`), and `to_host` reads a replicated global
array from this process's own copy.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(coordinator: str = "", num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process run (`jax.distributed.initialize`). With no coordinator given,
  jax reads the cluster's environment (SLURM, Open MPI, TPU pods, JAX_COORDINATOR_ADDRESS)."""
  jax.distributed.initialize(coordinator_address=coordinator or None, num_processes=num_processes,
                             process_id=process_id)


def is_primary() -> bool:
  """True in the process that writes logs, samples, configs and reports (process 0)."""
  return jax.process_index() == 0


def sync(name: str) -> None:
  """A barrier across processes (nothing with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def to_host(tree):
  """numpy copies of a pytree of replicated (or single-process) arrays, in every process."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if not x.is_fully_replicated:
        raise ValueError("to_host needs replicated arrays; this one is sharded over processes")
      x = x.addressable_data(0)
    return np.asarray(x)
  return jax.tree.map(one, tree)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_divisible(global_batch: int, mesh: Mesh) -> None:
  if global_batch % mesh.size:
    raise ValueError(f"global batch {global_batch} does not divide over {mesh.size} devices; "
                     f"use a train.batch_size that is a multiple of {mesh.size}")


def host_to_global(batch, mesh: Mesh):
  """Host-local numpy batch (this process's rows) -> global jax.Arrays sharded on 'data'."""
  sharding = data_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh: Mesh):
  """Place a pytree (e.g. a fresh or restored state, a key) replicated on every device of
  `mesh`. Every process must pass the same values (they come from the same seed)."""
  if jax.process_count() == 1:
    return jax.device_put(tree, replicated(mesh))
  sharding = replicated(mesh)
  def one(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      data = np.asarray(jax.random.key_data(x))
      impl = jax.random.key_impl(x)
      return jax.random.wrap_key_data(jax.make_array_from_callback(data.shape, sharding, lambda i: data[i]), impl=impl)
    data = np.asarray(x)
    return jax.make_array_from_callback(data.shape, sharding, lambda i: data[i])
  return jax.tree.map(one, tree)


def jit_step(step: Callable, mesh: Mesh, donate: bool = True) -> Callable:
  """jit a (state, batch, rng) -> (state, metrics) step for `mesh`."""
  rep = replicated(mesh)
  return jax.jit(step, in_shardings=(rep, data_sharded(mesh), rep), out_shardings=(rep, rep),
                 donate_argnums=(0,) if donate else ())
