"""The lecture's data and its model's input convention, for both backends (numpy only).

The lecture trains ``LSTMModeler(1, 10, 1)`` on three temperatures, each followed by the
next day's, and tests it on a fourth: 27 -> 28. Its ``forward`` reshapes the input with
``x.view(len(x), 1, -1)``: a 1-D (T,) or 2-D (T, I) input is one sequence of T steps
with batch 1 (:func:`lecture_view_shape`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (N, 1): the training temperatures and the next day's
LECTURE_X = np.array([[32.0], [37.0], [25.0]], np.float32)
LECTURE_Y = np.array([[34.0], [36.0], [24.0]], np.float32)
LECTURE_TEST_X, LECTURE_TEST_Y = 27.0, 28.0
LECTURE_MODEL = {"input_size": 1, "hidden_layer_size": 10, "output_size": 1}


def lecture_view_shape(
    shape: Sequence[int], dtype_name: str, floating: bool, batch_first: bool, who: str
) -> tuple[int, ...] | None:
    """The shape ``x.view(len(x), 1, -1)`` gives a 1-D/2-D input ((1, T, -1) with
    ``batch_first``), or None for a 3-D batch, which passes through.

    Raises:
        TypeError: not a floating point input.
        ValueError: another number of dimensions, or no time step.
    """
    if not floating:
        raise TypeError(f"{who}: expected a floating point input, got dtype {dtype_name}")
    shape = tuple(shape)
    if len(shape) not in (1, 2, 3):
        raise ValueError(
            f"{who}: expected a 1-D (T,) or 2-D (T, I) sequence or a 3-D batch, "
            f"got {len(shape)}-D input of shape {shape}"
        )
    if len(shape) == 3:
        return None
    if shape[0] == 0:
        raise ValueError(f"{who}: expected at least one time step, got input of shape {shape}")
    return (1, shape[0], -1) if batch_first else (shape[0], 1, -1)
