"""One step of the plain (Elman) RNN (``torch.nn.RNN``'s), in the form that runs.

Shapes: ``x_t`` (B, I), ``h`` (B, H); torch's weights ``weight_ih`` (H, I),
``weight_hh`` (H, H), two biases (H,). A step is::

    h' = act(x_t @ W_ih^T + b_ih + h @ W_hh^T + b_hh)      act = tanh or relu

:func:`rnn_step` builds the step for one nonlinearity; every driver and test uses it.
Its derivative (:func:`rnn_backward`, reverse mode) is the hand-written backward's
(:mod:`lstm_jax.core.scan`).
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
# each nonlinearity's derivative, written in terms of its output h' = act(a)
SLOPES: dict[str, Callable[[Array], Array]] = {
    "RNN_TANH": lambda h: 1 - h * h,
    "RNN_RELU": lambda h: (h > 0).astype(h.dtype),
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


def rnn_update(mode: str) -> Callable[[RNNWeights, Array, Array], tuple[Array, Array]]:
    """The step given the input's share, for ``mode`` "RNN_TANH" or "RNN_RELU":
    ``(w, h (B, H), gi (B, H)) -> (h', h')``, h' (B, H) twice: the new state and the
    residual its derivative reads."""
    act = NONLINEARITIES[mode]

    def update(w: RNNWeights, h: Array, gi: Array) -> tuple[Array, Array]:
        pre = gi + h @ w.w_hh_t
        new = act(pre if w.bias_hh is None else pre + w.bias_hh)
        return new, new

    return update


def rnn_step(mode: str) -> Callable[[RNNWeights, Array, Array], tuple[Array, Array]]:
    """One RNN step for ``mode``: ``(w, h (B, H), x_t (B, I)) -> (h', h')`` (as
    :func:`rnn_update`)."""
    update = rnn_update(mode)

    def step(w: RNNWeights, h: Array, x_t: Array) -> tuple[Array, Array]:
        return update(w, h, rnn_input_part(w, x_t))

    return step


def rnn_backward(mode: str) -> Callable[[RNNWeights, Array, Array, Array], tuple[Array, Array]]:
    """The derivative of one :func:`rnn_step` for ``mode`` (reverse mode):
    ``(w, d_h (B, H), h' (B, H), h_prev) -> (d_h_prev (B, H), d_a (B, H))``, with ``d_h``
    the cotangent of h' (the output's already added) and ``d_a`` that of the
    pre-activation, which both shares (input and state) receive."""
    slope = SLOPES[mode]

    def backward(w: RNNWeights, d_h: Array, new: Array, h_prev: Array) -> tuple[Array, Array]:
        d_a = d_h * slope(new)
        return d_a @ w.w_hh_t.T, d_a

    return backward


def rnn_input_cotangent(w: RNNWeights, d_a: Array) -> Array:
    """(…, H) the pre-activations' cotangents -> (…, I) the inputs'."""
    return d_a @ w.w_ih_t.T


def rnn_weight_gradients(w: RNNWeights, d_a: Array, x: Array, h_prev: Array) -> RNNWeights:
    """The weights' gradients summed over K steps, each ONE product over the K*B rows:
    ``d_a`` (K, B, H), ``x`` (K, B, I), ``h_prev`` (K, B, H) -> an :class:`RNNWeights`."""
    return RNNWeights(
        jnp.einsum("tbi,tbh->ih", x, d_a),
        jnp.einsum("tbk,tbh->kh", h_prev, d_a),
        None if w.bias_ih is None else d_a.sum(axis=(0, 1)),
        None if w.bias_hh is None else d_a.sum(axis=(0, 1)),
    )
