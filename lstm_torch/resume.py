"""``lstm_torch.fit``'s checkpoints: one file per saved epoch, written atomically.

A checkpoint ``<checkpoint_dir>/epoch_00000008.pt`` holds what the run needs to go
on exactly as if it had not stopped: the model's and the optimizer's
``state_dict``, torch's CPU random state (dropout masks), the epoch, this call's
per-epoch losses so far and the run's fingerprint (:mod:`lstm_jax.common.resume`),
which must match before anything is loaded.

Why ``torch.save`` and not safetensors: an optimizer's ``state_dict`` is nested
(``state`` per parameter index, ``param_groups`` with Python numbers and lists);
safetensors stores only a flat mapping of tensors, so it would need a hand-written
flattening of every optimizer's layout. ``torch.save`` writes the nested dict as
it is, and ``torch.load(weights_only=True)`` reads it back without unpickling
arbitrary objects. Atomicity comes from the file system: the file is written
under a temporary name in the same directory, flushed and fsync'ed, then renamed
with ``os.replace`` (atomic on POSIX and Windows), so a process killed at any
moment leaves either the complete new file or none; temporary leftovers are
removed when the next run opens the directory. The last ``keep`` files are kept.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_jax.common.resume import check_fingerprint, logger

_NAME = re.compile(r"^epoch_(\d+)\.pt$")
_TEMPORARY = ".tmp-"


class TorchCheckpoints:
    """The checkpoints of one ``lstm_torch.fit`` run in ``directory``.

    Arguments:
        directory: where the files go (created if missing).
        fingerprint: JSON-able facts a checkpoint must match to be resumed from.
        keep: how many of the latest files to keep.
    """

    def __init__(self, directory: str, fingerprint: dict[str, Any], keep: int) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.keep = keep
        for leftover in self.directory.glob(f"*{_TEMPORARY}*"):
            leftover.unlink(missing_ok=True)

    def _epochs(self) -> list[int]:
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m[1]) for m in found if m)

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch_{epoch:08d}.pt"

    def latest(self) -> dict[str, Any] | None:
        """The latest checkpoint's contents, or None. Raises ``ValueError`` for another
        run's checkpoint."""
        epochs = self._epochs()
        if not epochs:
            return None
        path = self.path(epochs[-1])
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            saved = json.loads(payload["fingerprint"])
        except Exception as error:  # not one of ours (the file itself is always complete)
            raise ValueError(
                f"checkpoint_dir {str(self.directory)!r}: {path.name} is not a checkpoint of "
                f"lstm_torch.fit (unreadable, or without a fingerprint); pass another "
                f"checkpoint_dir"
            ) from error
        check_fingerprint(saved, self.fingerprint, str(self.directory))
        return payload

    def save(
        self,
        epoch: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        losses: np.ndarray,
    ) -> None:
        """Write the checkpoint after ``epoch`` epochs atomically, then drop old ones."""
        payload = {
            "epoch": int(epoch),
            "losses": torch.from_numpy(np.asarray(losses, np.float64).copy()),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "fingerprint": json.dumps(self.fingerprint),
        }
        final = self.path(epoch)
        temporary = final.with_name(f"{final.name}{_TEMPORARY}{os.getpid()}")
        with open(temporary, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, final)
        _fsync_directory(self.directory)
        for old in self._epochs()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)

    def restore(
        self, payload: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> tuple[int, np.ndarray]:
        """Load a checkpoint into ``model`` and ``optimizer``: (epoch, losses so far)."""
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng"])
        return int(payload["epoch"]), payload["losses"].numpy()


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["TorchCheckpoints", "logger"]
