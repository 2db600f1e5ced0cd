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

Faults (shared with ``lstm_jax.fit``, see ``docs/guides/faults.md``): :func:`guarded`
wraps ``fit``: the directory is checked writable and locked for the run
(:mod:`lstm_jax.common.run_lock`), SIGTERM and Ctrl-C become stop requests
(:mod:`lstm_jax.common.stop_signals`) that :func:`stop_if_requested` honours at the
next step boundary: ``stopped.pt`` (the same contents, plus the batch within the
epoch, the epoch's loss so far and a stateful run's carry) is written and
``Preempted`` (exit status 143) or ``TrainingInterrupted`` raised. A failed write
raises ``CheckpointWriteError`` carrying the model's ``state_dict``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from lstm_jax.common.disk import check_writable, free_bytes, nbytes
from lstm_jax.common.errors import CheckpointWriteError, Preempted, TrainingInterrupted
from lstm_jax.common.resume import check_checkpointing, check_fingerprint, logger
from lstm_jax.common.run_lock import RunLock
from lstm_jax.common.stop_signals import StopRequests, current

_NAME = re.compile(r"^epoch_(\d+)\.pt$")
_TEMPORARY = ".tmp-"
STOPPED = "stopped.pt"  # a stop's checkpoint, between two epochs' saves


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
        path = self.directory / STOPPED
        if path.exists():
            stopped = self._read(path)
            if not epochs or int(stopped["epoch"]) >= epochs[-1]:
                return stopped
            path.unlink()  # an epoch's save passed it
        if not epochs:
            return None
        return self._read(self.path(epochs[-1]))

    def _read(self, path: Path) -> dict[str, Any]:
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
        self._write(self.path(epoch), payload, f"the checkpoint of epoch {epoch}", losses)
        (self.directory / STOPPED).unlink(missing_ok=True)  # this one is past it
        for old in self._epochs()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)

    def save_stopped(
        self,
        epoch: int,
        unit: int,
        total: float,
        hidden: Any,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        losses: np.ndarray,
    ) -> Path:
        """Write a stop's checkpoint: ``epoch`` epochs done, then ``unit`` batches of
        the next (``total`` their loss, ``hidden`` a stateful run's carry)."""
        payload = {
            "epoch": int(epoch),
            "unit": int(unit),
            "total": float(total),
            "hidden": hidden,  # as the model returned it (tuple, tensor, dict ...)
            "losses": torch.from_numpy(np.asarray(losses, np.float64).copy()),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "fingerprint": json.dumps(self.fingerprint),
        }
        path = self.directory / STOPPED
        what = f"the checkpoint of the stop at epoch {epoch}, batch {unit}"
        self._write(path, payload, what, losses)
        return path

    def _write(self, final: Path, payload: dict[str, Any], what: str, losses: Any) -> None:
        """``payload`` to ``final`` atomically; a failure raises CheckpointWriteError."""
        temporary = final.with_name(f"{final.name}{_TEMPORARY}{os.getpid()}")
        try:
            with open(temporary, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, final)
        except (OSError, RuntimeError) as error:  # torch.save wraps some OSErrors
            free_then = free_bytes(self.directory)
            temporary.unlink(missing_ok=True)
            epochs = self._epochs()
            raise CheckpointWriteError(
                directory=str(self.directory),
                writing=what,
                needed=nbytes(_tensors(payload)),
                free=free_then,
                free_after_cleanup=free_bytes(self.directory),
                last_complete=str(self.path(epochs[-1])) if epochs else None,
                cause=error,
                losses=losses,
            ) from error
        _fsync_directory(self.directory)

    def restore(
        self, payload: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> tuple[int, np.ndarray]:
        """Load a checkpoint into ``model`` and ``optimizer``: (epoch, losses so far)."""
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng"])
        return int(payload["epoch"]), payload["losses"].numpy()


def position(payload: dict[str, Any] | None) -> tuple[int, float, Any]:
    """Where in its epoch a checkpoint stopped: (batches done, their loss, a stateful
    run's carry or None); (0, 0.0, None) for an epoch's checkpoint."""
    if payload is None or "unit" not in payload:
        return 0, 0.0, None
    return int(payload["unit"]), float(payload["total"]), payload["hidden"]


def _tensors(tree: Any) -> list[Any]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, list | tuple):
        return [t for v in tree for t in _tensors(v)]
    return []


def stop_if_requested(
    checkpoints: TorchCheckpoints | None,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    unit: int,
    units: int,
    total: float,
    hidden: Any,
    losses: np.ndarray,
) -> None:
    """At a step boundary (``unit`` batches of epoch ``epoch`` done, of ``units``): when
    SIGTERM or Ctrl-C arrived, save this point (with a checkpoint_dir) and raise
    :class:`Preempted` or :class:`TrainingInterrupted`; otherwise nothing."""
    stops = current()
    if stops is None or stops.requested is None:
        return
    losses = np.asarray(losses[:epoch], np.float64)
    if unit == units:  # the epoch's end: counted as the next epoch's start
        epoch, unit, hidden = epoch + 1, 0, None
        losses = np.append(losses, total)
        total = 0.0
    path = None
    if checkpoints is not None:
        path = checkpoints.save_stopped(epoch, unit, total, hidden, model, optimizer, losses)
    _raise_stop(stops, model, losses, str(path) if path else None, epoch * units + unit)


def _raise_stop(
    stops: StopRequests, model: torch.nn.Module, losses: Any, path: str | None, step: int
) -> None:
    kind = "SIGTERM" if stops.sigterm else "SIGINT"
    logger.warning(
        "%s: stopped at global step %d%s", kind, step, f"; saved in {path}" if path else ""
    )
    stop = Preempted if stops.sigterm else TrainingInterrupted
    raise stop(
        variables={k: v.detach().clone() for k, v in model.state_dict().items()},
        losses=losses,
        checkpoint=path,
        global_step=step,
    )


Fit = TypeVar("Fit", bound=Callable[..., Any])


def guarded(fit: Fit) -> Fit:
    """``lstm_torch.fit`` with its faults handled: its ``checkpoint_dir`` checked
    writable and locked for the call (a busy one refused at once), SIGTERM and
    Ctrl-C turned into stop requests for :func:`stop_if_requested`, and a
    :class:`CheckpointWriteError` given the model's ``state_dict``."""

    @functools.wraps(fit)
    def guarded_fit(model: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        directory = kwargs.get("checkpoint_dir")
        lock = None
        if isinstance(directory, str | os.PathLike) and not (
            os.path.exists(directory) and not os.path.isdir(directory)
        ):
            check_checkpointing(directory, None, 1)
            check_writable(directory)
            lock = RunLock(directory)
            lock.acquire()
        try:
            with StopRequests() as stops:
                try:
                    losses = fit(model, *args, **kwargs)
                except CheckpointWriteError as error:
                    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    raise error.with_state(state, error.losses) from error.cause
                if stops.requested is not None:  # after the last step: honoured all the same
                    _raise_stop(stops, model, losses, None, -1)
                return losses
        finally:
            if lock is not None:
                lock.release()

    return guarded_fit  # type: ignore[return-value]


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


__all__ = ["TorchCheckpoints", "guarded", "logger", "position", "stop_if_requested"]
