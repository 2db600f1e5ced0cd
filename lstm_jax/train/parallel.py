"""Data-parallel training over a ``jax.sharding.Mesh``: what ``lstm_jax.fit(..., mesh=)`` uses.

The scheme (single program, multiple data, compiled by XLA's SPMD partitioner):

- every batch is split along its batch dimension over the mesh axis named
  :data:`BATCH_AXIS` (``"batch"``): ``PartitionSpec(None, "batch", None)`` for a
  time-major (T, B, I) batch, ``("batch", None, None)`` for (B, T, I), ``("batch",)``
  for targets and labels;
- parameters, optimizer state and the in-memory data set are replicated (each
  device gathers its own rows of each batch);
- the mean loss over the batch makes XLA insert the all-reduce of the gradients,
  so every device applies the same update: no ``pmap``, no hand-written ``psum``.

The mesh may have other axes too (everything is replicated over them); its axis
types (``jax.make_mesh`` gives ``Explicit`` axes by default) do not matter:
:func:`auto_mesh` rebuilds it with ``Auto`` axes over the same devices, as
sharding constraints inside ``fit``'s program need.

Several hosts: call :func:`initialize_distributed` (``jax.distributed.initialize``)
in every process before anything else touches JAX, then build the mesh over all
processes' devices with :func:`batch_mesh` and call ``fit`` with the same data
and arguments in every process; see the README, "Data-parallel training".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def batch_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh named :data:`BATCH_AXIS` over ``devices`` (default: ``jax.devices()``,
    every device of every process once ``jax.distributed`` is initialized)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("batch_mesh: expected at least one device, got none")
    return Mesh(np.array(devices), (BATCH_AXIS,), axis_types=(AxisType.Auto,))


def check_mesh(mesh: Any) -> int:
    """The number of batch shards of ``mesh`` (the size of its :data:`BATCH_AXIS` axis)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh: expected a jax.sharding.Mesh (e.g. lstm_jax.train.parallel.batch_mesh() or "
            f"jax.make_mesh((n,), ('{BATCH_AXIS}',))), got {type(mesh).__name__}"
        )
    if BATCH_AXIS not in mesh.axis_names:
        raise ValueError(
            f"mesh: expected an axis named '{BATCH_AXIS}' to shard the batch over, "
            f"got axes {mesh.axis_names}"
        )
    return int(mesh.shape[BATCH_AXIS])


def check_divisible(n: int, batch_size: int, shards: int) -> None:
    """Every batch of an epoch (the full ones of ``batch_size`` and the remainder of
    ``n % batch_size``) must split evenly over ``shards`` devices."""
    sizes = {batch_size} | ({n % batch_size} if n % batch_size else set())
    bad = sorted(s for s in sizes if s % shards)
    if bad:
        what = "batch_size" if bad[0] == batch_size else "the last (remainder) batch"
        raise ValueError(
            f"data-parallel fit: {what} of {bad[0]} samples does not divide among the mesh's "
            f"{shards} devices on axis '{BATCH_AXIS}' (N={n}, batch_size={batch_size}); "
            f"use a batch_size that is a multiple of {shards} and an N whose remainder "
            f"N % batch_size is too (e.g. 0)"
        )


def auto_mesh(mesh: Mesh) -> Mesh:
    """``mesh`` with every axis of type ``Auto`` (same devices, names and shape)."""
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int, batch_dim: int) -> NamedSharding:
    """Split dimension ``batch_dim`` of an ``ndim``-D array over :data:`BATCH_AXIS`."""
    spec = [None] * ndim
    spec[batch_dim] = BATCH_AXIS
    return NamedSharding(mesh, PartitionSpec(*spec))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put every array of ``tree`` on every device of ``mesh`` (the same value in every
    process: ``jax.device_put`` checks that across hosts)."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(x: jax.Array, mesh: Mesh, batch_dim: int) -> jax.Array:
    """Inside a jitted program: constrain ``x`` to be split along ``batch_dim``."""
    return jax.lax.with_sharding_constraint(x, batch_sharding(mesh, x.ndim, batch_dim))


def initialize_distributed() -> None:
    """``jax.distributed.initialize`` from the environment, for a run over several hosts.

    Reads ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0),
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` when set; otherwise JAX detects
    the cluster itself (SLURM, Open MPI, Kubernetes, Cloud TPU). Call it once per
    process, before any other JAX call.
    """
    kwargs: dict[str, Any] = {}
    for key, name in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        value = os.environ.get(name)
        if value is not None:
            try:
                kwargs[key] = int(value)
            except ValueError as error:
                raise ValueError(f"{name} must be an integer, got {value!r}") from error
    jax.distributed.initialize(**kwargs)
