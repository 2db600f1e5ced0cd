"""``fit``'s checkpoints: Orbax's ``CheckpointManager``, one step directory per saved epoch.

Each checkpoint ``<checkpoint_dir>/<epoch>/`` holds two items:

- ``state``: the run's arrays (``StandardSave``): ``params``, ``opt_state``,
  ``step`` (global step) and ``rng`` (the dropout key's data, when there is one);
- ``meta``: JSON: the epoch, this call's per-epoch losses so far, and the run's
  fingerprint (:mod:`lstm_jax.common.resume`), compared before anything is restored.

Orbax writes each checkpoint into a temporary directory and renames it when it is
complete, so a process killed at any moment (also during a save) leaves the last
complete checkpoint as the latest one; leftover temporary directories are removed
when the manager opens (``cleanup_tmp_directories``). The last ``keep`` checkpoints
are kept (``max_to_keep``). Saving is asynchronous in one process: training goes
on while the arrays are written; ``close`` waits for the last save. With several
processes each save is waited for: Orbax completes a save in a barrier of all
processes, on a thread Python's exit joins, so a save still in flight when a peer
dies would hold the survivor until JAX's own heartbeat aborts it (instead of
``fit``'s ``WorkerLost`` and exit status 75).

A run stopped by SIGTERM or Ctrl-C between two epochs' saves writes the checkpoint
of that step into ``<checkpoint_dir>/stopped/<global step>/`` (the same two items;
``meta`` also gives the batch within the epoch, the epoch's loss so far and, for a
stateful run, the model's carry): :meth:`Checkpoints.latest` resumes from it when it
is ahead of the latest epoch's, and it is removed once an epoch's save passes it.

A save that fails (a full disk, a directory gone read-only) raises
:class:`~lstm_jax.common.errors.CheckpointWriteError` with the space it needed and
the space free; its temporary directory is removed, earlier checkpoints stay.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lstm_jax.common.disk import free_bytes, nbytes
from lstm_jax.common.errors import CheckpointWriteError
from lstm_jax.common.resume import check_fingerprint

PyTree = Any

# Where a stop (SIGTERM, Ctrl-C) between two epochs' saves puts its checkpoint.
STOPPED = "stopped"
_TMP_MARKER = ".orbax-checkpoint-tmp"
# A failed save's writers outlive the error orbax reports: its other commit threads and
# TensorStore's own I/O threads finish their writes (recreating directories they write
# into) for a moment after the first one failed.
_QUIET_S = 0.5
_REMOVAL_LIMIT_S = 30.0


class Found(NamedTuple):
    """A checkpoint to resume from.

    Attributes:
        epoch: epochs completed (counted from the run's first epoch, as saved).
        unit: batches done within the next epoch (0 at an epoch's end).
        state: the saved arrays, shaped as asked.
        losses: this call's per-epoch losses of the completed epochs.
        total: the next epoch's loss so far (0 at an epoch's end).
    """

    epoch: int
    unit: int
    state: PyTree
    losses: list[float]
    total: float


def _normalized(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """As it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(fingerprint))


def describe_tree(tree: PyTree) -> list[list[str]]:
    """[key path, dtype, shape] of every leaf: a tree's layout, for a fingerprint."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return [
        [jax.tree_util.keystr(path), str(np.dtype(leaf.dtype)), str(tuple(np.shape(leaf)))]
        for path, leaf in leaves
    ]


class Checkpoints:
    """The checkpoints of one run in ``directory``.

    Arguments:
        directory: where the step directories go (created if missing).
        fingerprint: JSON-able facts a checkpoint must match to be resumed from.
        keep: how many of the latest checkpoints to keep.
    """

    def __init__(self, directory: str, fingerprint: dict[str, Any], keep: int) -> None:
        self.directory = str(Path(directory).expanduser().resolve())
        self.fingerprint = _normalized(fingerprint)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, cleanup_tmp_directories=True, create=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._options = options
        self._stopped: ocp.CheckpointManager | None = None
        self._pending: tuple[str, int] | None = None  # (what, bytes) of a save in flight

    def _stopped_manager(self) -> ocp.CheckpointManager:
        if self._stopped is None:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=1, cleanup_tmp_directories=True, create=True
            )
            self._stopped = ocp.CheckpointManager(Path(self.directory) / STOPPED, options=options)
        return self._stopped

    def _meta(self, manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
        """``manager``'s checkpoint ``step``'s meta, its fingerprint checked."""
        try:
            restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = restored.meta
            saved = meta["fingerprint"]
        except Exception as error:  # another program's Orbax checkpoint, or none at all
            raise ValueError(
                f"checkpoint_dir {self.directory!r}: step {step} is not a checkpoint of "
                f"lstm_jax.fit (no readable 'meta' item with a fingerprint); pass another "
                f"checkpoint_dir"
            ) from error
        check_fingerprint(saved, self.fingerprint, self.directory)
        return dict(meta)

    @staticmethod
    def _state(manager: ocp.CheckpointManager, step: int, like: PyTree) -> PyTree:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        restored = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )
        return restored.state

    def latest(self, like: PyTree, stopped_like: PyTree | None = None) -> Found | None:
        """The latest complete checkpoint, or None when there is none: an epoch's
        (state shaped as ``like``) or, when it is ahead, a stop's (shaped as
        ``stopped_like``: ``like`` plus the model's carry of a stateful run). Raises
        ``ValueError`` for another run's checkpoint."""
        found = None
        epoch = self.manager.latest_step()
        if epoch is not None:
            meta = self._meta(self.manager, epoch)
            state = self._state(self.manager, epoch, like)
            losses = [float(v) for v in meta["losses"]]
            found = Found(int(meta["epoch"]), 0, state, losses, 0.0)
        if not (Path(self.directory) / STOPPED).is_dir():
            return found
        stopped = self._stopped_manager()
        step = stopped.latest_step()
        if step is None:
            return found
        meta = self._meta(stopped, step)
        position = (int(meta["epoch"]), int(meta["unit"]))
        if found is not None and position <= (found.epoch, 0):
            self._drop_stopped()  # an epoch's save passed it
            return found
        state = self._state(stopped, step, stopped_like if stopped_like is not None else like)
        losses = [float(v) for v in meta["losses"]]
        return Found(position[0], position[1], state, losses, float(meta["total"]))

    def _drop_stopped(self) -> None:
        if self._stopped is not None:
            self._stopped.close()
            self._stopped = None
        shutil.rmtree(Path(self.directory) / STOPPED, ignore_errors=True)

    def last_complete(self) -> str | None:
        """The path of the last complete epoch checkpoint (None when there is none)."""
        self.manager.reload()
        step = self.manager.latest_step()
        return None if step is None else str(Path(self.directory) / str(step))

    def save(self, epoch: int, state: PyTree, losses: np.ndarray) -> None:
        """Save ``state`` after ``epoch`` epochs, with this call's losses so far.

        Raises:
            CheckpointWriteError: this save, or the one before still in flight, failed.
        """
        meta = {
            "epoch": int(epoch),
            "losses": [float(v) for v in np.asarray(losses, np.float64)],
            "fingerprint": self.fingerprint,
        }
        self._write(self.manager, int(epoch), state, meta, f"the checkpoint of epoch {epoch}")
        if self._stopped is not None or (Path(self.directory) / STOPPED).is_dir():
            self.finish()  # the stop's checkpoint goes only once this one is complete
            self._drop_stopped()

    def save_stopped(
        self, step: int, epoch: int, unit: int, state: PyTree, losses: np.ndarray, total: float
    ) -> str:
        """Save a stop's checkpoint: ``state`` at global ``step``, ``unit`` batches into
        the epoch after ``epoch``, ``total`` its loss so far. Waits until it is
        complete; returns its path."""
        meta = {
            "epoch": int(epoch),
            "unit": int(unit),
            "total": float(total),
            "losses": [float(v) for v in np.asarray(losses, np.float64)],
            "fingerprint": self.fingerprint,
        }
        what = f"the checkpoint of the stop at step {step} (epoch {epoch}, batch {unit})"
        self.finish()
        self._write(self._stopped_manager(), int(step), state, meta, what)
        self.finish()
        return str(Path(self.directory) / STOPPED / str(int(step)))

    def _write(
        self,
        manager: ocp.CheckpointManager,
        step: int,
        state: PyTree,
        meta: dict[str, Any],
        what: str,
    ) -> None:
        self.finish()  # the save before: raises here when it failed
        self._pending = (what, nbytes(jax.tree.leaves(state)) + len(json.dumps(meta)))
        try:
            manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
            if jax.process_count() > 1:
                manager.wait_until_finished()
        except Exception as error:
            raise self._failed(error) from error
        if jax.process_count() > 1:
            self._pending = None

    def finish(self) -> None:
        """Wait for the save in flight; raise :class:`CheckpointWriteError` if it failed."""
        managers = [self.manager] + ([self._stopped] if self._stopped is not None else [])
        try:
            for manager in managers:
                manager.wait_until_finished()
        except Exception as error:
            raise self._failed(error) from error
        self._pending = None

    def _failed(self, error: BaseException) -> CheckpointWriteError:
        """Remove the half-written step and describe the failure."""
        what, needed = self._pending or ("a checkpoint", 0)
        self._pending = None
        free_then = free_bytes(self.directory)  # the half-written step still there
        remove_half_written(Path(self.directory))
        return CheckpointWriteError(
            directory=self.directory,
            writing=what,
            needed=needed,
            free=free_then,
            free_after_cleanup=free_bytes(self.directory),
            last_complete=self.last_complete(),
            cause=error,
        )

    def close(self, *, wait: bool = True) -> None:
        """Wait for the last save to be complete (raising
        :class:`CheckpointWriteError` if it failed); ``wait=False`` (a process was
        lost, or the run is failing already) abandons a save in flight: its
        temporary directory is removed at the next start."""
        if wait:
            try:
                self.finish()
            finally:
                self.manager.close()
                if self._stopped is not None:
                    self._stopped.close()


def _half_written(directory: Path) -> list[Path]:
    """The temporary directories of unfinished saves under ``directory``."""
    roots = (directory, directory / STOPPED)
    return [found for root in roots if root.is_dir() for found in root.glob(f"*{_TMP_MARKER}*")]


def remove_half_written(directory: Path) -> None:
    """Remove a failed save's temporary directories, again whenever one reappears,
    until none has for ``_QUIET_S`` seconds (or ``_REMOVAL_LIMIT_S`` have passed)."""
    began = quiet_since = time.monotonic()
    while time.monotonic() - began < _REMOVAL_LIMIT_S:
        leftovers = _half_written(directory)
        for leftover in leftovers:
            shutil.rmtree(leftover, ignore_errors=True)
        now = time.monotonic()
        if leftovers:
            quiet_since = now
        elif now - quiet_since >= _QUIET_S:
            return
        time.sleep(0.02)


def key_data(rng: jax.Array | None) -> jax.Array | None:
    """A key's raw data (typed keys cannot be saved as they are)."""
    if rng is None:
        return None
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng)
    return rng
