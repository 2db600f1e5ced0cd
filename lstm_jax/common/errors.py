"""Errors shared by both backends' training loops (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


class TrainingDiverged(ValueError):
    """A training step produced a non-finite loss or non-finite parameters.

    Training stops there; the parameters kept are the last finite ones, those in
    effect before the failing step.

    Attributes:
        epoch: 0-based epoch of the failing step.
        step: 0-based step (batch) within that epoch.
        global_step: 0-based step counted over all epochs.
        loss: the failing step's loss (may be finite when the update was not).
        losses: (epoch,) per-epoch losses of the epochs completed before it.
        variables: the last finite parameters: Flax variables for ``lstm_jax.fit``;
            a ``state_dict`` copy for ``lstm_torch.fit`` (the model holds them too).
    """

    def __init__(
        self,
        *,
        epoch: int,
        step: int,
        global_step: int,
        loss: float,
        losses: np.ndarray,
        variables: Any,
    ) -> None:
        self.epoch = int(epoch)
        self.step = int(step)
        self.global_step = int(global_step)
        self.loss = float(loss)
        self.losses = np.asarray(losses)
        self.variables = variables
        what = "a non-finite loss" if not np.isfinite(self.loss) else "non-finite parameters"
        super().__init__(
            f"training diverged at epoch {self.epoch}, step {self.step} (global step "
            f"{self.global_step}; all 0-based): {what} (loss {self.loss!r}). The parameters "
            f"kept are the last finite ones, from before that step; lower the learning rate "
            f"or clip gradients (clip_norm)"
        )


class WorkerLost(RuntimeError):
    """Training over several processes stopped because one of them was lost (it died,
    hangs, or the coordinator is unreachable); the message names it. Every process
    stops; restarting them all resumes from the last checkpoint of
    ``fit(checkpoint_dir=...)``."""


def _gib(nbytes: float) -> str:
    """A byte count people read at a glance: 312 B, 48.5 KiB, 1.2 GiB."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


class _StopCarrying:
    """The state a stopped run hands back: ``variables`` (Flax variables, a TrainState
    or, for ``lstm_torch.fit``, a ``state_dict`` copy), ``losses`` (the per-epoch losses
    of the epochs this call completed) and ``checkpoint`` (the path of the checkpoint
    written at the stop, None when there is none)."""

    variables: Any
    losses: np.ndarray
    checkpoint: str | None

    def _carry(self, variables: Any, losses: Any, checkpoint: str | None) -> None:
        self.variables = variables
        self.losses = np.asarray(losses, np.float64)
        self.checkpoint = checkpoint

    def _stop_at_step(
        self, variables: Any, losses: Any, checkpoint: str | None, global_step: int
    ) -> str:
        """Keep the state of a run stopped at ``global_step``; returns the phrase that
        says where it was saved."""
        self._carry(variables, losses, checkpoint)
        self.global_step = int(global_step)
        return f"saved in {checkpoint}" if checkpoint else "not saved (no checkpoint_dir)"


# Exit status of a run stopped by SIGTERM: 128 + 15, what a shell reports for a process
# SIGTERM ended, and what SLURM and Kubernetes read as "terminated" (so requeues work).
PREEMPTED_EXIT = 143


class Preempted(SystemExit, _StopCarrying):
    """``fit`` received SIGTERM (a preemption: SLURM, Kubernetes, a spot machine going
    away) and stopped at the next step boundary, after saving a checkpoint of that
    step when it has a ``checkpoint_dir``. Uncaught, it ends the program with exit
    status :data:`PREEMPTED_EXIT` (143); the same call run again resumes from the
    checkpoint. A ``SystemExit``: ``except Exception`` does not swallow it.

    Attributes:
        variables: the parameters reached (as ``fit`` would return them).
        losses: per-epoch losses of the epochs completed in this call.
        checkpoint: the checkpoint written at the stop, or None.
        global_step: the steps done (the call's start step included).
    """

    def __init__(
        self, *, variables: Any, losses: Any, checkpoint: str | None, global_step: int
    ) -> None:
        saved = self._stop_at_step(variables, losses, checkpoint, global_step)
        self.message = (
            f"training stopped by SIGTERM at global step {self.global_step} (a step "
            f"boundary): {saved}; exit status {PREEMPTED_EXIT}"
        )
        super().__init__(PREEMPTED_EXIT)

    def __str__(self) -> str:
        return self.message


class TrainingInterrupted(KeyboardInterrupt, _StopCarrying):
    """Ctrl-C (SIGINT, ``KeyboardInterrupt``) stopped ``fit`` at the next step
    boundary, after saving a checkpoint of that step when it has a
    ``checkpoint_dir``. A ``KeyboardInterrupt`` (re-raised as one), carrying the
    parameters reached so far: ``except KeyboardInterrupt as stop: stop.variables``.

    Attributes:
        variables: the parameters reached (as ``fit`` would return them).
        losses: per-epoch losses of the epochs completed in this call.
        checkpoint: the checkpoint written at the stop, or None.
        global_step: the steps done (the call's start step included).
    """

    def __init__(
        self, *, variables: Any, losses: Any, checkpoint: str | None, global_step: int
    ) -> None:
        saved = self._stop_at_step(variables, losses, checkpoint, global_step)
        super().__init__(
            f"training interrupted (Ctrl-C) at global step {self.global_step} (a step "
            f"boundary): {saved}; the parameters reached are in .variables"
        )


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a quota, a directory gone or
    read-only). The half-written checkpoint is removed; earlier ones stay as they were.

    Attributes:
        directory: the checkpoint directory.
        writing: what was being written (e.g. ``the checkpoint of epoch 12``).
        needed: bytes the checkpoint's arrays take (an estimate: their ``nbytes``).
        free: bytes free on the directory's filesystem when the save failed
            (``shutil.disk_usage``, the half-written checkpoint still there), or None.
        free_after_cleanup: bytes free once the half-written checkpoint was removed.
        last_complete: the last complete checkpoint's path, or None.
        variables: the in-memory parameters (as ``fit`` would return them), or None.
        losses: per-epoch losses of the epochs completed in this call, or None.
    """

    def __init__(
        self,
        *,
        directory: str,
        writing: str,
        needed: int,
        free: int | None,
        last_complete: str | None,
        cause: BaseException | None = None,
        variables: Any = None,
        losses: Any = None,
        before_training: bool = False,
        free_after_cleanup: int | None = None,
    ) -> None:
        self.directory = directory
        self.free_after_cleanup = free_after_cleanup
        self.writing = writing
        self.needed = int(needed)
        self.free = None if free is None else int(free)
        self.last_complete = last_complete
        self.cause = cause
        self.variables = variables
        self.losses = None if losses is None else np.asarray(losses, np.float64)
        free_text = "unknown" if self.free is None else _gib(self.free)
        free_text += " free"
        if free_after_cleanup is not None and free_after_cleanup != self.free:
            free_text += f" ({_gib(free_after_cleanup)} once the half-written one was removed)"
        first_line = str(cause).strip().splitlines()[0][:200] if cause and str(cause) else ""
        why = f" ({type(cause).__name__}: {first_line})" if cause else ""
        if before_training:
            tail = "refusing to train: pass a directory this process can write"
        else:
            tail = (
                f"the half-written checkpoint was removed; the last complete checkpoint is "
                f"{last_complete or 'none'}. The parameters trained so far are in "
                f".variables (and .losses): free space or pass another checkpoint_dir, then "
                f"run again"
            )
        super().__init__(
            f"checkpoint_dir {directory!r}: could not write {writing}: needs about "
            f"{_gib(self.needed)}, {free_text}{why}; {tail}"
        )

    def with_state(self, variables: Any, losses: Any) -> CheckpointWriteError:
        """This error again, carrying the in-memory ``variables`` and ``losses``."""
        error = CheckpointWriteError(
            directory=self.directory,
            writing=self.writing,
            needed=self.needed,
            free=self.free,
            last_complete=self.last_complete,
            cause=self.cause,
            variables=variables,
            losses=losses,
            free_after_cleanup=self.free_after_cleanup,
        )
        return error


class CheckpointDirBusy(RuntimeError):
    """Another run holds ``checkpoint_dir`` (its lock file names host, pid and start):
    two runs writing one directory would overwrite each other's checkpoints.

    Attributes:
        directory: the checkpoint directory.
        holder: the lock's record: ``{"host", "pid", "started"}`` (may be partial).
    """

    def __init__(self, directory: str, holder: dict[str, Any], lock_file: str) -> None:
        self.directory = directory
        self.holder = holder
        who = (
            f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
            f"{holder.get('started', '?')}"
        )
        super().__init__(
            f"checkpoint_dir {directory!r}: another run is using it ({who}; lock "
            f"{lock_file}). Wait for it to end, stop it, or pass another checkpoint_dir"
        )
