"""The named pytrees of the core: an LSTM's carry and one layer-direction's weights
(picked by torch name out of a parameter mapping)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax

from lstm_jax.common.config import DIRECTION_SUFFIXES

Array = jax.Array


class LSTMState(NamedTuple):
    """An LSTM's carry in torch's order: ``h`` (…, H_out) first, then ``c`` (…, H).

    Flax's own cells carry ``(c, h)``; the names keep the two from being swapped.
    """

    h: Array
    c: Array


class CellParams(NamedTuple):
    """One layer-direction's weights, torch layout (see module docstring)."""

    weight_ih: Array
    weight_hh: Array
    bias_ih: Array | None = None
    bias_hh: Array | None = None
    weight_hr: Array | None = None


def cell_params(params: Mapping[str, Array], layer: int, direction: int) -> CellParams:
    """Pick layer ``layer``'s weights for ``direction`` (0 forward, 1 reverse) from a
    torch-named mapping such as ``{"weight_ih_l0": ..., "bias_hh_l0_reverse": ...}``."""
    sfx = f"_l{layer}{DIRECTION_SUFFIXES[direction]}"
    return CellParams(
        weight_ih=params["weight_ih" + sfx],
        weight_hh=params["weight_hh" + sfx],
        bias_ih=params.get("bias_ih" + sfx),
        bias_hh=params.get("bias_hh" + sfx),
        weight_hr=params.get("weight_hr" + sfx),
    )
