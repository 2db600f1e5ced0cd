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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lstm_jax.common.resume import check_fingerprint

PyTree = Any


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

    def latest(self, like: PyTree) -> tuple[int, PyTree, list[float]] | None:
        """The latest complete checkpoint as (epoch, state shaped as ``like``, losses),
        or None when there is none. Raises ``ValueError`` for another run's checkpoint."""
        epoch = self.manager.latest_step()
        if epoch is None:
            return None
        try:
            restored = self.manager.restore(
                epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
            meta = restored.meta
            saved = meta["fingerprint"]
        except Exception as error:  # another program's Orbax checkpoint, or none at all
            raise ValueError(
                f"checkpoint_dir {self.directory!r}: step {epoch} is not a checkpoint of "
                f"lstm_jax.fit (no readable 'meta' item with a fingerprint); pass another "
                f"checkpoint_dir"
            ) from error
        check_fingerprint(saved, self.fingerprint, self.directory)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        restored = self.manager.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )
        return int(meta["epoch"]), restored.state, [float(v) for v in meta["losses"]]

    def save(self, epoch: int, state: PyTree, losses: np.ndarray) -> None:
        """Save ``state`` after ``epoch`` epochs, with this call's losses so far."""
        meta = {
            "epoch": int(epoch),
            "losses": [float(v) for v in np.asarray(losses, np.float64)],
            "fingerprint": self.fingerprint,
        }
        self.manager.save(
            int(epoch),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        if jax.process_count() > 1:
            self.manager.wait_until_finished()

    def close(self, *, wait: bool = True) -> None:
        """Wait for the last save to be complete; ``wait=False`` (a process was lost)
        abandons a save in flight: its temporary directory is removed at the next start."""
        if wait:
            self.manager.wait_until_finished()
            self.manager.close()


def key_data(rng: jax.Array | None) -> jax.Array | None:
    """A key's raw data (typed keys cannot be saved as they are)."""
    if rng is None:
        return None
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng)
    return rng
