"""Opt-in input checks that cost a pass over the data (numpy only, shared with lstm_torch).

Neither backend checks the values of its input: a NaN or inf goes through the
LSTM as IEEE arithmetic says, exactly as in torch (a NaN at step t of a row makes
that row's outputs NaN from step t on, and at every step for a bidirectional
layer; an inf usually turns into NaN at the first matmul, where inf - inf occurs).
Call :func:`check_finite` on the data to find where a non-finite value sits::

    lstm_jax.check_finite(x, batch_first=True)     # ValueError naming (row, step)
    lstm_jax.find_nonfinite(x)                       # or None when all is finite

Both read numpy, JAX and torch arrays (any device; torch's are detached first) and
must run outside ``jax.jit``, where values are known.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from lstm_jax.common.arrays import to_numpy


class NonFinite(NamedTuple):
    """Where the first non-finite value of a sequence batch sits.

    ``step`` is the earliest time step holding one; ``row`` the first batch row with
    one at that step (None for an unbatched input); ``feature`` its first feature;
    ``value`` the value there (nan, inf or -inf); ``count`` how many values are
    non-finite in all (padding excluded).
    """

    row: int | None
    step: int
    feature: int
    value: float
    count: int  # type: ignore[assignment]  # the field shadows tuple.count, as intended


def find_nonfinite(
    x: Any, *, batch_first: bool = False, seq_lengths: Any = None
) -> NonFinite | None:
    """The first non-finite value of an LSTM input, or None when every value is finite.

    Arguments:
        x: (T, B, I) ((B, T, I) with ``batch_first``), an unbatched (T, I), or the
            lecture's one sequence (T,).
        seq_lengths: optional (B,) lengths; the padding past them is not looked at
            (no backend reads it).

    Returns:
        A :class:`NonFinite` naming the first (batch row, time step, feature) holding a
        NaN or inf, or None when every value that is read is finite.

    Raises:
        TypeError: ``x`` is not a floating point array.
        ValueError: ``x`` is not 1-, 2- or 3-D, or ``seq_lengths`` does not fit it.
    """
    array = to_numpy(x)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"find_nonfinite: expected a floating point input, got dtype {array.dtype}")
    if array.ndim not in (1, 2, 3):
        raise ValueError(
            f"find_nonfinite: expected a 1-D (T,), 2-D (T, I) or 3-D "
            f"({'(B, T, I)' if batch_first else '(T, B, I)'}) input, got shape {array.shape}"
        )
    batched = array.ndim == 3
    if array.ndim == 1:
        array = array[:, None]
    if not batched:
        array = array[:, None, :]  # (T, 1, I)
    elif batch_first:
        array = np.swapaxes(array, 0, 1)  # (T, B, I)
    bad = ~np.isfinite(array)
    if seq_lengths is not None:
        lengths = np.atleast_1d(to_numpy(seq_lengths))
        if lengths.shape != (array.shape[1],) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(
                f"find_nonfinite: expected ({array.shape[1]},) integer seq_lengths, got "
                f"{lengths.dtype} of shape {lengths.shape}"
            )
        bad &= (np.arange(array.shape[0])[:, None] < lengths[None, :])[..., None]
    count = int(bad.sum())
    if count == 0:
        return None
    step, row, feature = (int(i) for i in np.argwhere(bad)[0])  # row-major: earliest step first
    return NonFinite(
        row=row if batched else None,
        step=step,
        feature=feature,
        value=float(array[step, row, feature]),
        count=count,
    )


def check_finite(
    x: Any, *, batch_first: bool = False, seq_lengths: Any = None, name: str = "input"
) -> None:
    """Raise ``ValueError`` naming the first (batch row, time step) of ``x`` that holds a
    NaN or inf; see :func:`find_nonfinite` for the arguments."""
    found = find_nonfinite(x, batch_first=batch_first, seq_lengths=seq_lengths)
    if found is None:
        return
    where = f"time step {found.step}" + ("" if found.row is None else f" of batch row {found.row}")
    raise ValueError(
        f"{name} has {found.count} non-finite value(s); the first is {found.value} at "
        f"{where} (feature {found.feature}; all 0-based)"
    )
