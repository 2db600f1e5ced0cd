"""Data-parallel training over a ``jax.sharding.Mesh``: what ``lstm_jax.fit(..., mesh=)`` uses.

The scheme (single program, multiple data, compiled by XLA's SPMD partitioner):

- every batch is split along its batch dimension over ONE mesh axis, the batch
  axis (:func:`resolve_batch_axis`: ``batch_axis=`` when given, else ``"batch"``,
  else ``"data"``, else the mesh's only axis); every other axis is replicated over;
- parameters and optimizer state are replicated; the mean loss over the batch
  makes XLA insert the all-reduce of the gradients, so every device applies the
  same update: no ``pmap``, no hand-written ``psum`` of gradients;
- the data set is either replicated (every process passes all of it; each device
  gathers its rows of each batch) or, with ``process_local=True``, split by rows
  over the batch axis, each process passing only its own samples
  (:class:`ProcessShares`): each step, every device picks the rows of the batch
  it holds and a reduce-scatter over the batch axis hands each device its part of
  the batch, so the batches, and their order, are those of one process holding
  the processes' samples concatenated in process order.

The mesh's axis types (``jax.make_mesh`` gives ``Explicit`` axes by default) do not
matter: :class:`DataParallel` rebuilds it with ``Auto`` axes over the same devices,
as the sharding constraints inside ``fit``'s program need.

Several processes: :func:`lstm_jax.train.distributed.initialize_distributed` first,
then the same ``fit`` call in every process (see the documentation's guide
"Data-parallel and several processes", ``docs/guides/data-parallel.md``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from lstm_jax.train.distributed import initialize_distributed

BATCH_AXIS = "batch"
# The axis names fit looks for, in order, when batch_axis=None.
AXIS_PREFERENCE = (BATCH_AXIS, "data")

__all__ = [
    "AXIS_PREFERENCE",
    "BATCH_AXIS",
    "DataParallel",
    "ProcessShares",
    "auto_mesh",
    "batch_mesh",
    "check_divisible",
    "check_host_data",
    "data_digest",
    "initialize_distributed",
    "resolve_batch_axis",
]

PyTree = Any


def batch_mesh(devices: Sequence[Any] | None = None, axis_name: str = BATCH_AXIS) -> Mesh:
    """A 1-D mesh named ``axis_name`` over ``devices`` (default: ``jax.devices()``,
    every device of every process once ``jax.distributed`` is initialized)."""
    if not isinstance(axis_name, str):
        raise TypeError(f"batch_mesh: expected an axis_name (str), got {axis_name!r}")
    if isinstance(devices, (str, bytes)):
        raise TypeError(f"batch_mesh: expected a sequence of jax devices, got {devices!r}")
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("batch_mesh: expected at least one device, got none")
    odd = [d for d in devices if not isinstance(d, jax.Device)]
    if odd:
        raise TypeError(
            f"batch_mesh: expected jax devices (e.g. jax.devices()), got {type(odd[0]).__name__} "
            f"{odd[0]!r}"
        )
    return Mesh(np.array(devices), (axis_name,), axis_types=(AxisType.Auto,))


def resolve_batch_axis(mesh: Any, batch_axis: str | None = None) -> str:
    """The mesh axis batches split over: ``batch_axis`` when given, else ``"batch"``,
    else ``"data"``, else the mesh's only axis."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh: expected a jax.sharding.Mesh (e.g. lstm_jax.train.parallel.batch_mesh() or "
            f"jax.make_mesh((n,), ('{BATCH_AXIS}',))), got {type(mesh).__name__}"
        )
    names = tuple(mesh.axis_names)
    if mesh.devices.size == 0:
        raise ValueError(f"mesh: expected at least one device, got an empty mesh of axes {names}")
    if batch_axis is not None:
        if not isinstance(batch_axis, str):
            raise TypeError(f"batch_axis: expected None or an axis name (str), got {batch_axis!r}")
        if batch_axis not in names:
            raise ValueError(
                f"batch_axis: expected one of the mesh's axes {names}, got {batch_axis!r}"
            )
        return batch_axis
    for name in AXIS_PREFERENCE:
        if name in names:
            return name
    if len(names) == 1:
        if not isinstance(names[0], str):
            raise TypeError(
                f"mesh: expected axis names that are str (as jax.make_mesh's), got {names[0]!r}"
            )
        return names[0]
    raise ValueError(
        f"mesh: expected an axis named {' or '.join(map(repr, AXIS_PREFERENCE))} to shard "
        f"the batch over, or a 1-D mesh, got axes {names}; pass batch_axis= to choose one"
    )


def check_divisible(n: int, batch_size: int, shards: int, axis: str = BATCH_AXIS) -> None:
    """Every batch of an epoch (the full ones of ``batch_size`` and the remainder of
    ``n % batch_size``) must split evenly over ``shards`` devices."""
    full = {batch_size} if n >= batch_size else set()  # none: the one batch is all n samples
    sizes = full | ({n % batch_size} if n % batch_size else set())
    bad = sorted(s for s in sizes if s % shards)
    if bad:
        what = "batch_size" if bad[0] == batch_size else "the last (remainder) batch"
        what = "the one batch (N < batch_size)" if n < batch_size else what
        raise ValueError(
            f"data-parallel fit: {what} of {bad[0]} samples does not divide among the mesh's "
            f"{shards} devices on axis '{axis}' (N={n}, batch_size={batch_size}); "
            f"use a batch_size that is a multiple of {shards} and an N whose remainder "
            f"N % batch_size is too (e.g. 0)"
        )


def check_host_data(**named: Any) -> None:
    """Each data array (``xs=``, ``ys=``, ...) is this process's own: not a global
    ``jax.Array`` spread over several processes' devices, which ``fit`` cannot read."""
    for name, array in named.items():
        if getattr(array, "is_fully_addressable", True) is False:
            raise ValueError(
                f"{name}: expected this process's data (a numpy array, or a jax.Array on "
                f"its own devices), got a jax.Array of global shape {tuple(array.shape)} "
                f"spread over the devices of several processes; pass every process the "
                f"whole data set, or only its own samples with process_local=True (for "
                f"example the rows of its {name}.addressable_shards)"
            )


def auto_mesh(mesh: Mesh) -> Mesh:
    """``mesh`` with every axis of type ``Auto`` (same devices, names and shape)."""
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def _allgather_bytes(payload: bytes) -> list[bytes]:
    """Every process's ``payload`` (up to 4 KiB), in process order."""
    if jax.process_count() == 1:
        return [payload]
    if len(payload) > 4096:
        raise ValueError(f"_allgather_bytes: expected at most 4096 bytes, got {len(payload)}")
    buffer = np.zeros(4100, np.uint8)
    buffer[:4] = np.frombuffer(np.uint32(len(payload)).tobytes(), np.uint8)
    buffer[4 : 4 + len(payload)] = np.frombuffer(payload, np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(buffer)).reshape(-1, buffer.size)
    return [row[4 : 4 + int(row[:4].view(np.uint32)[0])].tobytes() for row in rows]


def _allgather_text(text: str) -> list[str]:
    return [b.decode() for b in _allgather_bytes(text.encode())]


def _leaf_digest(leaf: Any) -> bytes:
    if jnp.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    value = np.ascontiguousarray(np.asarray(leaf))
    return hashlib.sha256(f"{value.dtype}{value.shape}".encode() + value.tobytes()).digest()


def check_same_everywhere(named: dict[str, PyTree]) -> None:
    """Every process passed the same values (host values; arrays already spread over
    the processes are skipped): a clear error naming the first one that differs."""
    if jax.process_count() == 1:
        return
    local = [
        (name + jax.tree_util.keystr(path), _leaf_digest(leaf))
        for name, tree in named.items()
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if not (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable)
    ]
    mine = hashlib.sha256(b"".join(d for _, d in local)).digest()
    if len(set(_allgather_bytes(mine))) == 1:
        return
    for where, d in local:
        digests = _allgather_bytes(d)
        if len(set(digests)) > 1:
            differ = [p for p, other in enumerate(digests) if other != digests[0]]
            raise ValueError(
                f"fit: every process must pass the same {', '.join(named)}; {where} "
                f"differs between process 0 and process(es) {differ} (to give each "
                f"process only its own samples, pass process_local=True)"
            )
    raise ValueError(f"fit: every process must pass the same {', '.join(named)}")


@dataclasses.dataclass(frozen=True)
class ProcessShares:
    """Where each process's own samples (``process_local=True``) sit in the global data.

    The global data set is the processes' samples concatenated in process order
    (process 0's first). It is stored as a (shards * rows, ...) array split by rows
    over the batch axis: axis position ``s`` holds rows ``s*rows : (s+1)*rows``, each
    process's samples filling its own positions in order, zero-padded.

    Attributes:
        counts: samples of each process.
        positions: each process's batch-axis positions (sorted), from the mesh.
        rows: rows per position (the largest process's samples per position).
    """

    counts: tuple[int, ...]
    positions: tuple[tuple[int, ...], ...]
    rows: int

    @property
    def samples(self) -> int:
        return sum(self.counts)

    def global_rows(self) -> np.ndarray:
        """(N,) int32: the stored row of each global sample."""
        out = []
        for count, positions in zip(self.counts, self.positions, strict=True):
            local = np.arange(count)
            out.append(np.asarray(positions)[local // self.rows] * self.rows + local % self.rows)
        return np.concatenate(out).astype(np.int32)


def _process_positions(mesh: Mesh, axis: str) -> tuple[tuple[int, ...], ...]:
    dim = mesh.axis_names.index(axis)
    owners: dict[int, set[int]] = {}
    for index, device in np.ndenumerate(mesh.devices):
        owners.setdefault(index[dim], set()).add(device.process_index)
    shared = {s: sorted(p) for s, p in owners.items() if len(p) > 1}
    if shared:
        s, procs = next(iter(shared.items()))
        raise ValueError(
            f"process_local=True: position {s} of the mesh's axis '{axis}' has devices of "
            f"processes {procs}; each position must belong to one process (put each "
            f"process's devices in its own slice of '{axis}', e.g. jax.make_mesh over "
            f"jax.devices() in process order)"
        )
    positions = tuple(
        tuple(sorted(s for s, p in owners.items() if process in p))
        for process in range(jax.process_count())
    )
    missing = [p for p, pos in enumerate(positions) if not pos]
    if missing:
        raise ValueError(
            f"process_local=True: process(es) {missing} have no device on the mesh's axis "
            f"'{axis}'; every process's samples must have a place"
        )
    return positions


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """How ``fit`` spreads a run over a mesh: a static argument of the compiled run.

    Attributes:
        mesh: the mesh, every axis ``Auto``.
        axis: the batch axis.
        shares: None: the data set is replicated; else where each process's own
            samples sit (``process_local=True``).
        given: the mesh as the caller passed it (its own axis types), which the
            results are handed back on (:meth:`hand_back`); None: ``mesh``.
    """

    mesh: Mesh
    axis: str
    shares: ProcessShares | None = None
    given: Mesh | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def over(
        cls, mesh: Any, batch_axis: str | None, process_local: bool, local_samples: int
    ) -> DataParallel:
        """Check ``mesh``/``batch_axis``; with ``process_local``, gather every process's
        sample count (``local_samples`` here) and check the mesh can hold them."""
        axis = resolve_batch_axis(mesh, batch_axis)
        given, mesh = mesh, auto_mesh(mesh)
        if not process_local:
            return cls(mesh, axis, given=given)
        positions = _process_positions(mesh, axis)
        counts = tuple(int(c) for c in _allgather_text(str(int(local_samples))))
        rows = max(math.ceil(c / len(p)) for c, p in zip(counts, positions, strict=True))
        return cls(mesh, axis, ProcessShares(counts, positions, max(rows, 1)), given)

    @property
    def shards(self) -> int:
        return int(self.mesh.shape[self.axis])

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def rows_sharding(self, ndim: int) -> NamedSharding:
        """Dimension 0 of an ``ndim``-D array split over the batch axis."""
        return NamedSharding(self.mesh, PartitionSpec(self.axis, *([None] * (ndim - 1))))

    # -- placing host values ------------------------------------------------------------

    def replicate(self, tree: PyTree) -> PyTree:
        """Every array of ``tree`` on every device of the mesh. With several processes each
        must pass the same values (:func:`check_same_everywhere` says which differs)."""
        sharding = self.replicated()
        if jax.process_count() == 1:
            return jax.device_put(tree, sharding)
        return jax.tree.map(lambda leaf: _global_replica(leaf, sharding), tree)

    def hand_back(self, tree: PyTree) -> PyTree:
        """``tree`` (replicated over ``mesh``) replicated over the caller's mesh, so that
        it is used as is under that mesh's ``jax.set_mesh`` (``Explicit`` axes too)."""
        if self.given is None or self.given is self.mesh:  # an Auto mesh: already there
            return tree
        return jax.device_put(tree, NamedSharding(self.given, PartitionSpec()))

    def place_data(self, arrays: Sequence[Any]) -> tuple[Any, ...]:
        """The data set's per-sample arrays (N, ...) on the mesh: replicated, or with
        ``shares`` each process's own rows at its positions (:class:`ProcessShares`)."""
        if self.shares is None:
            return tuple(self.replicate(tuple(arrays)))
        return tuple(None if a is None else self._place_rows(np.asarray(a)) for a in arrays)

    def _process_shares(self) -> ProcessShares:
        """``shares``, for the process-local paths that only run when it is set."""
        if self.shares is None:
            raise RuntimeError("process-local rows asked for without ProcessShares")
        return self.shares

    def _place_rows(self, local: np.ndarray) -> jax.Array:
        shares = self._process_shares()
        positions = shares.positions[jax.process_index()]
        rows = shares.rows
        mine = len(local)
        padded = np.zeros((len(positions) * rows, *local.shape[1:]), local.dtype)
        padded[:mine] = local

        def block(index: Any) -> np.ndarray:
            start = index[0].start or 0
            j = positions.index(start // rows)
            return padded[j * rows : (j + 1) * rows][(slice(None), *index[1:])]

        shape = (self.shards * rows, *local.shape[1:])
        return jax.make_array_from_callback(shape, self.rows_sharding(local.ndim), block)

    def global_order(self, orders: np.ndarray) -> np.ndarray:
        """(E, N) global sample indices -> the stored rows to read them from."""
        if self.shares is None:
            return orders
        return self.shares.global_rows()[orders]

    def under_mesh(self, run: Callable[..., Any]) -> Callable[..., Any]:
        """``run`` called with this (``Auto``) mesh as JAX's context mesh, whatever the
        caller set (``jax.set_mesh`` of an ``Explicit`` mesh or of other devices): the
        compiled run's sharding constraints are over this mesh."""

        def call(*args: Any, **kwargs: Any) -> Any:
            with jax.set_mesh(self.mesh):
                return run(*args, **kwargs)

        return call

    # -- inside the compiled run --------------------------------------------------------

    def take(self, arrays: Sequence[jax.Array | None], index: jax.Array) -> tuple:
        """Inside a jitted program: the rows ``index`` (B,) of each (N, ...) array, each
        result (B, ...) split over the batch axis."""
        if self.shares is None:
            return tuple(
                None
                if a is None
                else lax.with_sharding_constraint(a[index], self.rows_sharding(a.ndim))
                for a in arrays
            )
        present = [a for a in arrays if a is not None]
        picked = iter(self._gather_rows(index, present))
        return tuple(None if a is None else next(picked) for a in arrays)

    def _gather_rows(self, index: jax.Array, arrays: list[jax.Array]) -> tuple:
        """Rows split over the batch axis: each device selects the rows of ``index`` it
        holds (zeros elsewhere); ONE reduce-scatter of all arrays' bytes side by side
        sums them (one nonzero term each, so exactly) and leaves each device its
        B / shards rows. One collective per step, not one per array: each costs a
        round trip between processes."""
        rows = self._process_shares().rows
        axis = self.axis

        def local(index: jax.Array, *blocks: jax.Array) -> tuple:
            pick = index - lax.axis_index(axis) * rows
            held = (pick >= 0) & (pick < rows)
            pick = jnp.clip(pick, 0, rows - 1)
            chosen = []
            for b in blocks:
                mask = held.reshape(held.shape + (1,) * (b.ndim - 1))
                chosen.append(jnp.where(mask, b[pick], jnp.zeros((), b.dtype)))
            packed = jnp.concatenate([_row_bytes(c) for c in chosen], axis=1)
            mine = lax.psum_scatter(packed, axis, scatter_dimension=0, tiled=True)
            widths = np.cumsum([_row_bytes_width(c) for c in chosen])[:-1]
            parts = jnp.split(mine, widths, axis=1)
            return tuple(_from_row_bytes(p, c) for p, c in zip(parts, chosen, strict=True))

        specs = tuple(PartitionSpec(axis) for _ in arrays)
        gather = jax.shard_map(
            local, mesh=self.mesh, in_specs=(PartitionSpec(), *specs), out_specs=specs
        )
        return gather(index, *arrays)

    def keep_replicated(self, tree: PyTree) -> PyTree:
        """Inside a jitted program: ``tree`` replicated over the mesh."""
        return lax.with_sharding_constraint(tree, self.replicated())


def _row_bytes_width(block: jax.Array) -> int:
    """Bytes per row of a (B, ...) block."""
    return int(np.prod(block.shape[1:], dtype=np.int64)) * np.dtype(block.dtype).itemsize


def _row_bytes(block: jax.Array) -> jax.Array:
    """A (B, ...) block of any dtype as its raw bytes, (B, bytes per row) uint8."""
    if block.dtype == jnp.bool_:
        block = block.astype(jnp.uint8)
    raw = lax.bitcast_convert_type(block, jnp.uint8)
    return raw.reshape(block.shape[0], -1)


def _from_row_bytes(raw: jax.Array, like: jax.Array) -> jax.Array:
    """The inverse of :func:`_row_bytes`: (R, bytes per row) uint8 -> (R, ...) of
    ``like``'s dtype and row shape."""
    itemsize = np.dtype(like.dtype).itemsize
    shape = (raw.shape[0], *like.shape[1:]) + ((itemsize,) if itemsize > 1 else ())
    if like.dtype == jnp.bool_:
        return raw.reshape(shape) != 0
    return lax.bitcast_convert_type(raw.reshape(shape), like.dtype)


def _global_replica(leaf: Any, sharding: NamedSharding) -> Any:
    """One host value (or an array already spread over the processes) as a replicated
    global array. ``jax.device_put`` would compare every value across processes,
    which fails for NaN (NaN != NaN) and moves whole data sets; fit checks digests
    instead (:func:`check_same_everywhere`)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return jax.device_put(leaf, sharding)
    if jnp.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
        data = _global_replica(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    value = np.asarray(leaf)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def data_digest(
    digest: Callable[..., str], arrays: Sequence[Any], mesh: DataParallel | None = None
) -> str:
    """``digest(*arrays)`` of the data set as placed by :meth:`DataParallel.place_data`,
    whatever the mesh: of the host values for arrays every process holds whole, else
    (``process_local``) of this process's own samples, without the padding the mesh's
    shape adds, so one process's digest is the replicated run's; several processes'
    are combined in process order (the same string in every process)."""
    if mesh is None or mesh.shares is None:
        return digest(*arrays)
    count = mesh.shares.counts[jax.process_index()]
    local = [
        None if a is None else np.concatenate([np.asarray(s.data) for s in _own_shards(a)])[:count]
        for a in arrays
    ]
    if jax.process_count() == 1:
        return digest(*local)
    return hashlib.sha256("".join(_allgather_text(digest(*local))).encode()).hexdigest()


def _own_shards(array: jax.Array) -> list[Any]:
    """This process's distinct row blocks of ``array``, in row order."""
    seen: dict[int, Any] = {}
    for shard in array.addressable_shards:
        seen.setdefault(shard.index[0].start or 0, shard)
    return [seen[k] for k in sorted(seen)]
