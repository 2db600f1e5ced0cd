"""A checkpoint directory's space and writability (numpy only; both backends).

- :func:`check_writable`: before training, create the directory and a probe file in
  it (then remove it): a directory that cannot be written is refused up front with
  :class:`~lstm_jax.common.errors.CheckpointWriteError`, not after the first epochs.
- :func:`free_bytes` and :func:`nbytes`: the figures a failed save reports.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np

from lstm_jax.common.errors import CheckpointWriteError

__all__ = ["check_writable", "free_bytes", "nbytes"]


def free_bytes(directory: str | os.PathLike[str]) -> int | None:
    """Bytes free to this user on ``directory``'s filesystem (None when unknown)."""
    path = os.fspath(directory)
    while path and not os.path.exists(path):  # a directory not made yet: its parent's
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    try:
        return int(shutil.disk_usage(path or ".").free)
    except OSError:
        return None


def nbytes(leaves: Iterable[Any]) -> int:
    """Total bytes of arrays (anything with ``nbytes``, or convertible by numpy)."""
    total = 0
    for leaf in leaves:
        if leaf is None:
            continue
        size = getattr(leaf, "nbytes", None)
        total += int(size) if size is not None else int(np.asarray(leaf).nbytes)
    return total


def check_writable(directory: str | os.PathLike[str]) -> None:
    """Create ``directory`` when missing and write, then remove, a probe file in it.

    Raises:
        CheckpointWriteError: the directory cannot be created or written (read-only,
            no permission, no space left); raised before anything is trained.
    """
    path = os.fspath(directory)
    probe = os.path.join(path, f".lstm_jax-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"lstm_jax write probe\n")
            f.flush()
            os.fsync(f.fileno())
        os.remove(probe)
    except OSError as error:
        if os.path.exists(probe):
            try:
                os.remove(probe)
            except OSError:
                pass
        raise CheckpointWriteError(
            directory=path,
            writing="a probe file, before training",
            needed=21,
            free=free_bytes(path),
            last_complete=None,
            cause=error,
            before_training=True,
        ) from error
