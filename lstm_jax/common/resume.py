"""What both backends' ``fit`` share to save and resume a run (numpy only).

- :func:`chunks`: the epochs a run trains between two saves. A resumed run trains
  the same chunks as an uninterrupted one, so both compute the same thing.
- :func:`digest` and :func:`describe`: a run's fingerprint, the facts a checkpoint
  must match before a run resumes from it (model, parameter and optimizer-state
  shapes, loss, data shapes and contents, batch size, order, options).
- :func:`check_fingerprint`: refuse a checkpoint of another run with an error that
  names what differs.
- :data:`logger`: resuming is announced at INFO (``resumed from epoch 8 of 120``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from lstm_jax.common.data import check_positive_int

logger = logging.getLogger("lstm_jax.train")

KEEP_CHECKPOINTS = 3


def chunks(start: int, end: int, every: int | None) -> list[tuple[int, int]]:
    """Epoch ranges [a, b) from ``start`` to ``end`` in steps of ``every`` (None: one chunk).

    The boundaries are ``start + k * every``: the same for a run and its resumption
    from any boundary.
    """
    if start >= end:
        return []
    if every is None or every >= end - start:
        return [(start, end)]
    return [(a, min(a + every, end)) for a in range(start, end, every)]


def check_checkpointing(
    checkpoint_dir: Any, checkpoint_every: Any, keep: Any
) -> tuple[str | None, int | None, int]:
    """``checkpoint_dir`` (a path or None), ``checkpoint_every`` (epochs between saves;
    defaults to 1 with a directory) and ``keep`` (how many checkpoints stay)."""
    keep = check_positive_int("keep_checkpoints", keep)
    if checkpoint_dir is None:
        if checkpoint_every is not None:
            raise ValueError("checkpoint_every: expected a checkpoint_dir to save into, got None")
        return None, None, keep
    if not isinstance(checkpoint_dir, str) and not hasattr(checkpoint_dir, "__fspath__"):
        raise TypeError(
            f"checkpoint_dir: expected a path (str or os.PathLike), got "
            f"{type(checkpoint_dir).__name__}"
        )
    if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
        raise ValueError(
            f"checkpoint_dir: expected a directory (created when missing), got the file "
            f"'{os.fspath(checkpoint_dir)}'"
        )
    every = (
        1 if checkpoint_every is None else check_positive_int("checkpoint_every", checkpoint_every)
    )
    return str(checkpoint_dir), every, keep


def digest(*arrays: Any) -> str:
    """sha256 of arrays' dtypes, shapes and bytes (None entries count as absent)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype}:{a.shape}:".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def describe(value: Any) -> str:
    """A repr stable across processes: memory addresses (``at 0x7f..``) removed."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def check_fingerprint(saved: Mapping[str, Any], current: Mapping[str, Any], directory: str) -> None:
    """Raise ``ValueError`` naming the first entry (in ``current``'s order) where ``saved``
    and ``current`` differ."""
    for key in [*current, *(k for k in saved if k not in current)]:
        if saved.get(key) != current.get(key):
            there, here = _short(saved.get(key)), _short(current.get(key))
            raise ValueError(
                f"checkpoint_dir {directory!r}: holds a checkpoint of another run ({key} "
                f"differs: {there} in the checkpoint, {here} in this call); refusing to resume "
                f"from it. Pass another checkpoint_dir, or remove that one to start afresh"
                f"{_HINTS.get(key, '')}"
            )


# What to do when one entry differs, where the general advice is not enough.
_HINTS = {
    "start_step": (
        ". (A TrainState continued from that run's result starts another run: to go on "
        "in this directory, call fit with the run's first state and the total epochs; it "
        "resumes from the latest checkpoint.)"
    ),
}


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resumed_message(epoch: int, end: int, start: int, directory: str) -> str:
    """The INFO line of a resumption, epochs counted within this call."""
    return f"resumed from epoch {epoch - start} of {end - start} (checkpoint in {directory})"
