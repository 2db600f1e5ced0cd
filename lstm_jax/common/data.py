"""Training data and visiting order shared by both backends (numpy only).

``lstm_torch.fit`` and ``lstm_jax.fit`` both call these, so they see the same
arrays in the same order:

- :func:`prepare_data` checks ``xs``/``ys`` and brings them to one convention:
  for the lecture's model ``xs`` (N, T, I) (a 2-D (N, I) is one step per sample,
  promoted to (N, 1, I)) and ``ys`` (N, O) floats for ``"mse"`` ((N,) promoted to
  (N, 1)) or (N,) integer class labels for ``"cross_entropy"``; for any other
  model (N, ...) arrays, integers (tokens, labels) kept as integers.
- :func:`prepare_seq_lengths` checks per-sample valid lengths (N,).
- :func:`epoch_orders` draws the per-epoch visiting orders: ``None`` keeps the
  data order; an int seeds ``numpy.random.default_rng`` and draws one
  ``rng.permutation(N)`` per epoch (epoch e's order is the e-th draw, also
  for a run continued from a later epoch).
- :func:`batch_plan` splits an epoch of N samples into ``N // B`` full batches
  and one smaller remainder batch of ``N % B`` samples (when that is not 0), as
  ``DataLoader(drop_last=False)`` does.
- Stateful runs (the state carried from batch to batch): :func:`check_stateful`,
  and :func:`stateful_windows`, which cuts a long sequence into the consecutive
  windows such a run visits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lstm_jax.common.numbers import check_positive_int

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


def check_loss(loss: Any) -> Any:
    """A loss name from :data:`LOSSES`, or a callable ``loss(prediction, target)`` (not a
    class: ``loss=nn.MSELoss`` without its parentheses would construct a module)."""
    if isinstance(loss, type):
        raise TypeError(
            f"loss: expected a loss name or a function loss(prediction, target), got the class "
            f"{loss.__name__} (an instance, {loss.__name__}(), is called so)"
        )
    if callable(loss) or loss in LOSSES:
        return loss
    raise ValueError(
        f"loss must be one of {', '.join(map(repr, LOSSES))} or a callable "
        f"loss(prediction, target) -> scalar (or (scalar, aux)), got {loss!r}"
    )


def layout_hint(expected: tuple[int, ...], target: tuple[int, ...]) -> str:
    """Why a batch's targets ``target`` miss the shape the prediction asks for,
    ``expected``, when the batch layout is the cause ("" otherwise): per-step
    predictions of a time-major model, (T, B, ...) against targets (B, T, ...), or a
    model given batches in the layout it does not read (its first axis then has T rows
    where the batch has B)."""
    if len(expected) >= 2 and len(target) >= 2 and target[:2] == expected[1::-1]:
        return (
            " (a batch's targets are the rows ys[index], (B, ...), in every layout: return "
            "per-step predictions of a time-major model batch-first, axes 0 and 1 swapped, "
            "or train it with batch_first=True)"
        )
    if expected and target and expected[0] != target[0] and expected[1:] == target[1:]:
        return (
            f" (the prediction has {expected[0]} rows where the batch has {target[0]} samples: "
            "does the model read its input in the other layout? fit gives it time-major "
            "(T, B, ...) batches, or (B, T, ...) with batch_first=True; a model's own "
            "batch_first attribute decides for it)"
        )
    return ""


def batch_plan(n: int, batch_size: int) -> BatchPlan:
    """Full batches and remainder for ``n`` samples in batches of ``batch_size``."""
    n = check_positive_int("the number of samples", n)
    batch_size = check_positive_int("batch_size", batch_size)
    return BatchPlan(n, batch_size, n // batch_size, n % batch_size)


def epoch_orders(
    n: int, epochs: int, shuffle_seed: int | None = None, first_epoch: int = 0
) -> np.ndarray:
    """The visiting order of epochs ``first_epoch .. first_epoch + epochs - 1``: (epochs, n).

    ``shuffle_seed=None`` visits ``0..n-1`` each epoch; an int draws
    ``numpy.random.default_rng(shuffle_seed).permutation(n)`` once per epoch,
    in epoch order, so epoch e's order is the e-th draw of the run whatever
    ``epochs`` is (a run continued from epoch ``first_epoch`` visits what one
    longer run would have).

    Returns:
        An (epochs, n) integer array: row e is the order of epoch ``first_epoch + e``.
    """
    n = check_positive_int("the number of samples", n)
    epochs = check_positive_int("epochs", epochs)
    if isinstance(first_epoch, bool) or not isinstance(first_epoch, int | np.integer):
        raise TypeError(f"first_epoch must be an int >= 0, got {first_epoch!r}")
    if first_epoch < 0:
        raise ValueError(f"first_epoch must be an int >= 0, got {first_epoch!r}")
    if shuffle_seed is None:
        return np.tile(np.arange(n), (epochs, 1))
    if isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int | np.integer):
        raise TypeError(f"shuffle_seed must be None or an int, got {shuffle_seed!r}")
    if shuffle_seed < 0:  # numpy's default_rng says only "expected non-negative integer"
        raise ValueError(f"shuffle_seed must be None or an int >= 0, got {shuffle_seed!r}")
    rng = np.random.default_rng(int(shuffle_seed))
    # Row-wise ``permuted`` draws exactly what ``rng.permutation(n)`` once per epoch
    # draws (tested), without a Python loop over epochs.
    total = int(first_epoch) + epochs
    return rng.permuted(np.tile(np.arange(n), (total, 1)), axis=1)[int(first_epoch) :]


def check_stateful(plan: BatchPlan, shuffle_seed: int | None) -> None:
    """A stateful run carries batch k's final state into batch k + 1: row j of every
    batch continues row j of the one before, so the data must stay in order and
    every batch must have the same B rows."""
    if shuffle_seed is not None:
        raise ValueError(
            f"stateful=True carries the state from each batch to the next, which needs the "
            f"data in order: expected shuffle_seed=None, got {shuffle_seed!r}"
        )
    if plan.remainder:
        raise ValueError(
            f"stateful=True: expected the number of samples to be a multiple of batch_size "
            f"(every batch continues the rows of the one before), got N={plan.n}, "
            f"batch_size={plan.batch_size} (remainder {plan.remainder}); "
            f"lstm_jax.common.data.stateful_windows arranges a long sequence so"
        )


def stateful_windows(sequence: Any, batch_size: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut one long sequence into windows for a stateful run (``fit(stateful=True)``).

    As pytorch/examples' language model (``batchify`` + ``get_batch``): the sequence
    (L, ...) is cut into ``batch_size`` contiguous streams of ``L // batch_size``
    items (the tail that does not fill a stream is dropped), and each stream into
    windows of ``window`` steps; the target of each step is the stream's next item.
    Sample ``k * batch_size + j`` is window k of stream j, so batch k of an in-order
    run holds window k of every stream and row j continues row j of batch k - 1.

    Arguments:
        sequence: (L,) tokens or (L, F) features.
        batch_size: B, the number of streams.
        window: steps per window (the truncated backpropagation length).

    Returns:
        xs (K * B, window, ...) inputs and ys (K * B, window, ...) next-step targets,
        K = (L // B - 1) // window windows per stream.
    """
    data = _as_array(sequence, "sequence")
    batch_size = check_positive_int("batch_size", batch_size)
    window = check_positive_int("window", window)
    if data.ndim < 1:
        raise ValueError(f"sequence: expected (L,) or (L, F) items, got shape {data.shape}")
    per_stream = len(data) // batch_size
    windows = (per_stream - 1) // window
    if windows < 1:
        raise ValueError(
            f"sequence: expected at least batch_size * (window + 1) = "
            f"{batch_size * (window + 1)} items, got {len(data)}"
        )
    streams = data[: per_stream * batch_size].reshape(batch_size, per_stream, *data.shape[1:])
    span = windows * window
    inputs = streams[:, :span].reshape(batch_size, windows, window, *data.shape[1:])
    targets = streams[:, 1 : span + 1].reshape(batch_size, windows, window, *data.shape[1:])
    # (B, K, window, ...) -> (K, B, window, ...) -> (K * B, window, ...)
    xs = np.swapaxes(inputs, 0, 1).reshape(windows * batch_size, window, *data.shape[1:])
    ys = np.swapaxes(targets, 0, 1).reshape(windows * batch_size, window, *data.shape[1:])
    return xs, ys


def prepare_seq_lengths(seq_lengths: Any, n: int, seq_len: int) -> np.ndarray | None:
    """Per-sample valid lengths: None, or (N,) integers in [1, T] -> (N,) int32."""
    if seq_lengths is None:
        return None
    lengths = _as_array(seq_lengths, "seq_lengths")
    if not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"seq_lengths: expected integer lengths, got dtype {lengths.dtype}")
    if lengths.shape != (n,):
        raise ValueError(
            f"seq_lengths: expected ({n},) lengths (one per sample in xs), got shape "
            f"{lengths.shape}"
        )
    if lengths.min() < 1 or lengths.max() > seq_len:
        raise ValueError(
            f"seq_lengths: expected lengths in [1, {seq_len}] (T of xs), got values in "
            f"[{lengths.min()}, {lengths.max()}]"
        )
    return lengths.astype(np.int32)


def check_finite_data(x: np.ndarray, y: np.ndarray, seq_lengths: np.ndarray | None) -> None:
    """Refuse a NaN or inf in float data, naming the first one; with ``seq_lengths``,
    the padding of ``x`` past each row's length is not looked at (never read there).

    Arguments:
        x: (N, T, ...) or (N, ...); y: (N, ...); seq_lengths: None or (N,) in [1, T].
    """
    for name, a in (("xs", x), ("ys", y)):
        if not np.issubdtype(a.dtype, np.floating):
            continue
        bad = ~np.isfinite(a)
        if name == "xs" and seq_lengths is not None:
            padding = np.arange(a.shape[1])[None, :] >= seq_lengths[:, None]  # (N, T)
            bad &= ~padding.reshape(padding.shape + (1,) * (a.ndim - 2))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"xs and ys must be finite (found NaN or inf): {name}{list(where)} is "
                f"{a[where]} (sample {where[0]})"
            )


def _as_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, by duck typing
        value = value.detach().cpu()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from error


def _as_integers(a: np.ndarray, name: str) -> np.ndarray:
    """Integer data as int32 (JAX's default integer width), refusing values beyond it."""
    info = np.iinfo(np.int32)
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise ValueError(f"{name}: expected integers that fit in int32, got values beyond it")
    return a.astype(np.int32)


def _cast(a: np.ndarray, dtype: Any, name: str) -> np.ndarray:
    """Floats to ``dtype``; integers stay integers (int32: tokens, labels)."""
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        return _as_integers(a, name) if a.dtype != np.bool_ else a
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
    return a.astype(dtype)


def prepare_data(
    xs: Any,
    ys: Any,
    *,
    loss: Any,
    input_size: int | None,
    output_size: int | None,
    dtype: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert training data to the fit convention.

    Arguments:
        xs: the lecture's model (``input_size`` given): (N, T, I) sequences, or (N, I)
            samples of one step each. Any other model (``input_size=None``): (N, ...)
            samples of any shape; float inputs are cast to ``dtype``, integer inputs
            (tokens) stay integers (int32).
        ys: ``"mse"``: (N, O) targets, or (N,) when O = 1 (any (N, ...) without
            ``output_size``). ``"cross_entropy"``: (N,) integer class labels in [0, O)
            ((N, ...) integer labels without ``output_size``). A callable loss: any
            (N, ...) targets, floats cast to ``dtype``, integers kept.
        loss: ``"mse"``, ``"cross_entropy"`` or a callable.
        input_size, output_size: the lecture's model's I and O, or None (any model).
        dtype: the parameters' float dtype.

    Returns:
        xs (N, T, I) of ``dtype`` (the lecture's model) or (N, ...); ys (N, O) of
        ``dtype``, (N,) int32 labels, or (N, ...) as described.
    """
    loss = check_loss(loss)
    x = _as_array(xs, "xs")
    y = _as_array(ys, "ys")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"xs: expected real numbers, got dtype {x.dtype}")
    if input_size is None:
        if x.ndim < 1 or x.shape[0] < 1:
            raise ValueError(f"xs: expected (N, ...) samples with N >= 1, got shape {x.shape}")
        n = x.shape[0]
    else:
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3:
            raise ValueError(
                f"xs: expected (N, T, I) sequences or (N, I) one-step samples, got shape {x.shape}"
            )
        n, t, i = x.shape
        if n < 1 or t < 1:
            raise ValueError(
                f"xs: expected at least one sample of at least one step, got {x.shape}"
            )
        if i != input_size:
            raise ValueError(
                f"xs: expected {input_size} features per step (the model's input_size), "
                f"got shape {x.shape}"
            )
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"ys: expected {n} targets (one per sample in xs), got shape {y.shape}")
    if callable(loss):
        y = _cast(y, dtype, "ys")
    elif loss == "mse":
        if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
            raise TypeError(f"ys: expected real targets for loss 'mse', got dtype {y.dtype}")
        if output_size is not None:
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
        if output_size is not None:
            if y.shape != (n,):
                raise ValueError(
                    f"ys: expected ({n},) class labels for loss 'cross_entropy', got {y.shape}"
                )
            if y.min() < 0 or y.max() >= output_size:
                raise ValueError(
                    f"ys: class labels must lie in [0, {output_size}) (the model's "
                    f"output_size), got values in [{y.min()}, {y.max()}]"
                )
        elif y.min() < 0:
            raise ValueError(f"ys: class labels must be >= 0, got values down to {y.min()}")
        y = _as_integers(y, "ys")
    x = x.astype(dtype) if input_size is not None else _cast(x, dtype, "xs")
    return x, y
