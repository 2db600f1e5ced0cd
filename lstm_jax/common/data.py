"""Training data and visiting order shared by both backends (numpy only).

``lstm_torch.fit`` and ``lstm_jax.fit`` both call these, so they see the same
arrays in the same order:

- :func:`prepare_data` checks ``xs``/``ys`` and brings them to one convention:
  ``xs`` (N, T, I) (a 2-D (N, I) is one step per sample, promoted to (N, 1, I));
  ``ys`` (N, O) floats for ``"mse"`` ((N,) promoted to (N, 1)) or (N,) integer
  class labels for ``"cross_entropy"``.
- :func:`epoch_orders` draws the per-epoch visiting orders: ``None`` keeps the
  data order; an int seeds ``numpy.random.default_rng`` and draws one
  ``rng.permutation(N)`` per epoch.
- :func:`batch_plan` splits an epoch of N samples into ``N // B`` full batches
  and one smaller remainder batch of ``N % B`` samples (when that is not 0), as
  ``DataLoader(drop_last=False)`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LOSSES = ("mse", "cross_entropy")


@dataclass(frozen=True)
class BatchPlan:
    """How one epoch of ``n`` samples splits into batches of ``batch_size``.

    Attributes:
        n: samples per epoch.
        batch_size: B.
        full_batches: ``n // B`` batches of B samples.
        remainder: ``n % B``, the size of one last smaller batch (0: none).
    """

    n: int
    batch_size: int
    full_batches: int
    remainder: int

    @property
    def steps_per_epoch(self) -> int:
        return self.full_batches + (1 if self.remainder else 0)

    def batches(self, order: np.ndarray) -> list[np.ndarray]:
        """One epoch's order (n,) -> the index arrays of its batches, in order."""
        edges = range(0, self.n, self.batch_size)
        return [order[i : i + self.batch_size] for i in edges]


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_loss(loss: Any) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    return loss


def batch_plan(n: int, batch_size: int) -> BatchPlan:
    """Full batches and remainder for ``n`` samples in batches of ``batch_size``."""
    n = check_positive_int("the number of samples", n)
    batch_size = check_positive_int("batch_size", batch_size)
    return BatchPlan(n, batch_size, n // batch_size, n % batch_size)


def epoch_orders(n: int, epochs: int, shuffle_seed: int | None = None) -> np.ndarray:
    """The visiting order of every epoch: (epochs, n) int64 indices.

    ``shuffle_seed=None`` visits ``0..n-1`` each epoch; an int draws
    ``numpy.random.default_rng(shuffle_seed).permutation(n)`` once per epoch,
    in epoch order (so the first k epochs' orders do not depend on ``epochs``).
    """
    n = check_positive_int("the number of samples", n)
    epochs = check_positive_int("epochs", epochs)
    if shuffle_seed is None:
        return np.tile(np.arange(n), (epochs, 1))
    if isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int | np.integer):
        raise TypeError(f"shuffle_seed must be None or an int, got {shuffle_seed!r}")
    rng = np.random.default_rng(int(shuffle_seed))
    # Row-wise ``permuted`` draws exactly what ``rng.permutation(n)`` once per epoch
    # draws (tested), without a Python loop over epochs.
    return rng.permuted(np.tile(np.arange(n), (epochs, 1)), axis=1)


def _as_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, by duck typing
        value = value.detach().cpu()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from error


def prepare_data(
    xs: Any,
    ys: Any,
    *,
    loss: str,
    input_size: int,
    output_size: int,
    dtype: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert training data to the fit convention.

    Arguments:
        xs: (N, T, I) sequences, or (N, I) samples of one step each.
        ys: ``"mse"``: (N, O) targets, or (N,) when O = 1. ``"cross_entropy"``:
            (N,) integer class labels in [0, O).
        loss: ``"mse"`` or ``"cross_entropy"``.
        input_size, output_size: the model's I and O.
        dtype: the parameters' float dtype; xs (and mse targets) are cast to it.

    Returns:
        xs (N, T, I) of ``dtype``; ys (N, O) of ``dtype`` or (N,) int32 labels.
    """
    loss = check_loss(loss)
    x = _as_array(xs, "xs")
    y = _as_array(ys, "ys")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"xs: expected real numbers, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3:
        raise ValueError(
            f"xs: expected (N, T, I) sequences or (N, I) one-step samples, got shape {x.shape}"
        )
    n, t, i = x.shape
    if n < 1 or t < 1:
        raise ValueError(f"xs: expected at least one sample of at least one step, got {x.shape}")
    if i != input_size:
        raise ValueError(
            f"xs: expected {input_size} features per step (the model's input_size), "
            f"got shape {x.shape}"
        )
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"ys: expected {n} targets (one per sample in xs), got shape {y.shape}")
    if loss == "mse":
        if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
            raise TypeError(f"ys: expected real targets for loss 'mse', got dtype {y.dtype}")
        if y.ndim == 1 and output_size == 1:
            y = y[:, None]
        if y.shape != (n, output_size):
            raise ValueError(
                f"ys: expected targets of shape ({n}, {output_size}) for loss 'mse' "
                f"(the model's output_size is {output_size}), got {y.shape}"
            )
        y = y.astype(dtype)
    else:
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(
                f"ys: expected integer class labels for loss 'cross_entropy', got dtype {y.dtype}"
            )
        if y.shape != (n,):
            raise ValueError(
                f"ys: expected ({n},) class labels for loss 'cross_entropy', got {y.shape}"
            )
        if y.min() < 0 or y.max() >= output_size:
            raise ValueError(
                f"ys: class labels must lie in [0, {output_size}) (the model's output_size), "
                f"got values in [{y.min()}, {y.max()}]"
            )
        y = y.astype(np.int32)
    x = x.astype(dtype)
    if not np.all(np.isfinite(x)) or (loss == "mse" and not np.all(np.isfinite(y))):
        raise ValueError("xs and ys must be finite (found NaN or inf)")
    return x, y
