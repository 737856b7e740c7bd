"""One code path for 1 device, N devices and N hosts: a 1-D mesh with axis 'data'.

State is replicated (PartitionSpec()), batches are sharded along their first axis
(PartitionSpec('data')), and `jax.jit` with these NamedShardings lets XLA insert the
gradient all-reduces. Each process feeds its own slice of the global batch.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


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
  """Place a pytree (e.g. a fresh or restored state) replicated on every device of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def jit_step(step: Callable, mesh: Mesh, donate: bool = True) -> Callable:
  """jit a (state, batch, rng) -> (state, metrics) step for `mesh`."""
  rep = replicated(mesh)
  return jax.jit(step, in_shardings=(rep, data_sharded(mesh), rep), out_shardings=(rep, rep),
                 donate_argnums=(0,) if donate else ())
