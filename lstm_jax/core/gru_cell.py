"""One GRU step (``torch.nn.GRU``'s), in the form that runs.

Every driver and test that needs "the GRU cell" calls these functions; no other module
writes the GRU's gate math. Shapes: ``x_t`` (B, I), ``h`` (B, H). torch's weights
(:class:`~lstm_jax.core.state.CellParams`, gate rows r, z, n) are turned once per call
into :class:`GRUWeights`, and a step is::

    gi = x_t @ W_ih^T + b_ih                     (B, 3H)  the input's share
    gh = h @ W_hh^T + b_hh                       (B, 3H)  the state's share
    r, z = sigmoid(gi[:2H] + gh[:2H])
    n = tanh(gi[2H:] + r * gh[2H:])              the reset gate multiplies W_hn h + b_hn
    h' = (1 - z) * n + z * h                     computed as n + z * (h - n), as ATen does

The two biases stay two parameters and cannot be summed: ``b_hn`` sits inside the
reset gate's product (Flax's ``GRUCell`` folds them and so is another function).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.core.state import CellParams

Array = jax.Array


class GRUWeights(NamedTuple):
    """One layer-direction's GRU weights in the form the step runs.

    Attributes:
        w_ih_t: (I, 3H) ``W_ih^T``.
        w_hh_t: (H, 3H) ``W_hh^T``.
        bias_ih: (3H,) or None.
        bias_hh: (3H,) or None.
    """

    w_ih_t: Array
    w_hh_t: Array
    bias_ih: Array | None
    bias_hh: Array | None


def gru_weights(p: CellParams) -> GRUWeights:
    """torch's ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), biases (3H,) -> the step's form."""
    return GRUWeights(p.weight_ih.T, p.weight_hh.T, p.bias_ih, p.bias_hh)


def gru_input_part(w: GRUWeights, x: Array) -> Array:
    """(…, I) -> (…, 3H): ``x @ W_ih^T + b_ih`` (for one step, or every step at once)."""
    gi = x @ w.w_ih_t
    return gi if w.bias_ih is None else gi + w.bias_ih


def gru_update(w: GRUWeights, h: Array, gi: Array) -> tuple[Array, None]:
    """The step given the input's share ``gi`` (B, 3H): h (B, H) -> (h' (B, H), None)."""
    gh = h @ w.w_hh_t
    if w.bias_hh is not None:
        gh = gh + w.bias_hh
    hidden = h.shape[-1]
    rz = jax.nn.sigmoid(gi[..., : 2 * hidden] + gh[..., : 2 * hidden])
    r, z = rz[..., :hidden], rz[..., hidden:]
    n = jnp.tanh(gi[..., 2 * hidden :] + r * gh[..., 2 * hidden :])
    return n + z * (h - n), None


def gru_cell(w: GRUWeights, h: Array, x_t: Array) -> tuple[Array, None]:
    """One GRU step: x_t (B, I), h (B, H) -> (h' (B, H), None).

    The second result is the (empty) residual the scan drivers stack; the GRU is
    differentiated by JAX."""
    return gru_update(w, h, gru_input_part(w, x_t))
