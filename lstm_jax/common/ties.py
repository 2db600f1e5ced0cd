"""Tied weights: torch ``state_dict`` keys that hold one tensor (numpy only).

``decoder.weight = encoder.weight`` in torch gives one tensor under two keys. Both
backends find such ties by memory (equal values in separate memory are not tied)
and record them as ``{alias: key}``, ``key`` the first of the keys in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def memory_id(value: Any) -> tuple | None:
    """Where an array's data lives (address, shape, strides, dtype), or None if empty.
    A torch tensor (duck-typed: ``data_ptr``/``stride``) answers for itself, so ties
    are seen on any device."""
    if hasattr(value, "data_ptr") and hasattr(value, "stride"):
        if value.numel() == 0:
            return None
        return (value.data_ptr(), tuple(value.shape), tuple(value.stride()), str(value.dtype))
    array = np.asarray(value)
    if array.size == 0:
        return None
    return (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str)


def find_ties(state_dict: Mapping[str, Any]) -> dict[str, str]:
    """``{alias: first key}`` for every key holding the same tensor as an earlier key."""
    first: dict[tuple, str] = {}
    ties: dict[str, str] = {}
    for key, value in state_dict.items():
        ident = memory_id(value)
        if ident is None:
            continue
        if ident in first:
            ties[key] = first[ident]
        else:
            first[ident] = key
    return ties
