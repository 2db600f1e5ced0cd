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
