"""Checks of integer arguments, with torch's exception types: TypeError for a value that is
not an int (bools included), ValueError for one out of range."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_int(
    name: str, value: Any, *, least: int = 1, who: str | None = None, below: str | None = None
) -> int:
    """``value`` as an int, if it is an int >= ``least``.

    Arguments:
        name: the argument's name in the messages.
        least: the smallest allowed value.
        who: the function or class to name first ("LSTM: expected an int remat, got
            float"); without it, torch's own wording ("num_layers should be of type int,
            got: float", "num_layers must be greater than or equal to 1, got 0").
        below: the ValueError's phrase instead of "must be greater than or equal to
            {least}" (e.g. "must be a positive int"), without ``who``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        got = type(value).__name__
        raise TypeError(
            f"{who}: expected an int {name}, got {got}"
            if who
            else f"{name} should be of type int, got: {got}"
        )
    if value < least:
        if who:
            raise ValueError(f"{who}: expected {name} >= {least}, got {value}")
        bound = below or f"must be greater than or equal to {least}"
        raise ValueError(f"{name} {bound}, got {value}")
    return int(value)
