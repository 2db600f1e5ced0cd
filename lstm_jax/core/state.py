"""The named pytrees of the core: an LSTM's carry and one layer-direction's weights."""

from __future__ import annotations

from typing import NamedTuple

import jax

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
