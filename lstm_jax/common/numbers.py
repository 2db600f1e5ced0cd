"""The check of integer arguments (numpy only): one function for every ``int >= least``."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_int(
    name: str, value: Any, *, least: int = 1, who: str | None = None, phrase: str | None = None
) -> int:
    """``value`` as an int, if it is an int (not a bool) >= ``least``.

    Arguments:
        name: the argument's name in the messages.
        least: the smallest allowed value.
        who: the function or class to name first; the errors are then torch's types,
            TypeError for a non-int, ValueError below ``least`` ("LSTM: expected an int
            remat, got float", "LSTM: expected remat >= 0, got -1").
        phrase: one ValueError for any bad value, ``f"{name} {phrase}, got {value!r}"``
            (e.g. "output_size must be a positive int, got 2.0").

    Without ``who`` or ``phrase``: torch's own wording and types ("num_layers should be
    of type int, got: float" TypeError, "num_layers must be greater than or equal to 1,
    got 0" ValueError).
    """
    not_int = isinstance(value, bool) or not isinstance(value, int | np.integer)
    if phrase is not None:
        if not_int or value < least:
            raise ValueError(f"{name} {phrase}, got {value!r}")
        return int(value)
    if not_int:
        got = type(value).__name__
        raise TypeError(
            f"{who}: expected an int {name}, got {got}"
            if who
            else f"{name} should be of type int, got: {got}"
        )
    if value < least:
        if who:
            raise ValueError(f"{who}: expected {name} >= {least}, got {value}")
        raise ValueError(f"{name} must be greater than or equal to {least}, got {value}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, else ValueError "{name} must be a positive int, got ..."."""
    return check_int(name, value, phrase="must be a positive int")


def check_flag(name: str, value: Any) -> bool:
    """``value`` as a bool, if it is one (also numpy's), else TypeError
    "{name}: expected a bool, got ..." (an int, a string or None is not a flag)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: expected a bool, got {value!r}")
    return bool(value)
