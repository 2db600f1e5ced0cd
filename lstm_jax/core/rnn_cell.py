"""One step of the plain (Elman) RNN (``torch.nn.RNN``'s), in the form that runs.

Shapes: ``x_t`` (B, I), ``h`` (B, H); torch's weights ``weight_ih`` (H, I),
``weight_hh`` (H, H), two biases (H,). A step is::

    h' = act(x_t @ W_ih^T + b_ih + h @ W_hh^T + b_hh)      act = tanh or relu

:func:`rnn_step` builds the step for one nonlinearity; every driver and test uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.core.state import CellParams

Array = jax.Array

NONLINEARITIES: dict[str, Callable[[Array], Array]] = {
    "RNN_TANH": jnp.tanh,
    "RNN_RELU": jax.nn.relu,
}


class RNNWeights(NamedTuple):
    """One layer-direction's RNN weights: ``w_ih_t`` (I, H), ``w_hh_t`` (H, H), biases (H,)."""

    w_ih_t: Array
    w_hh_t: Array
    bias_ih: Array | None
    bias_hh: Array | None


def rnn_weights(p: CellParams) -> RNNWeights:
    """torch's ``weight_ih`` (H, I), ``weight_hh`` (H, H), biases (H,) -> the step's form."""
    return RNNWeights(p.weight_ih.T, p.weight_hh.T, p.bias_ih, p.bias_hh)


def rnn_input_part(w: RNNWeights, x: Array) -> Array:
    """(…, I) -> (…, H): ``x @ W_ih^T + b_ih``."""
    gi = x @ w.w_ih_t
    return gi if w.bias_ih is None else gi + w.bias_ih


def rnn_update(mode: str) -> Callable[[RNNWeights, Array, Array], tuple[Array, None]]:
    """The step given the input's share, for ``mode`` "RNN_TANH" or "RNN_RELU":
    ``(w, h (B, H), gi (B, H)) -> (h' (B, H), None)``."""
    act = NONLINEARITIES[mode]

    def update(w: RNNWeights, h: Array, gi: Array) -> tuple[Array, None]:
        pre = gi + h @ w.w_hh_t
        return act(pre if w.bias_hh is None else pre + w.bias_hh), None

    return update


def rnn_step(mode: str) -> Callable[[RNNWeights, Array, Array], tuple[Array, None]]:
    """One RNN step for ``mode``: ``(w, h (B, H), x_t (B, I)) -> (h' (B, H), None)``."""
    update = rnn_update(mode)

    def step(w: RNNWeights, h: Array, x_t: Array) -> tuple[Array, None]:
        return update(w, h, rnn_input_part(w, x_t))

    return step
