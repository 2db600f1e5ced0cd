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

The step's derivative (:func:`gru_backward`, reverse mode) is written by hand here too,
for the hand-written backward of :mod:`lstm_jax.core.scan`.
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


class GRUResiduals(NamedTuple):
    """What a step keeps for its hand-written derivative.

    Attributes:
        rz: (…, 2H) the activated reset and update gates r, z.
        n: (…, H) the candidate state.
        hidden_n: (…, H) ``h @ W_hn^T + b_hn``, the term the reset gate multiplied.
    """

    rz: Array
    n: Array
    hidden_n: Array


class GRUCotangents(NamedTuple):
    """The cotangents of a step's two shares of the pre-activations, (…, 3H) each.

    Attributes:
        inputs: of ``gi = x_t @ W_ih^T + b_ih``.
        state: of ``gh = h @ W_hh^T + b_hh``.
    """

    inputs: Array
    state: Array


def gru_weights(p: CellParams) -> GRUWeights:
    """torch's ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), biases (3H,) -> the step's form."""
    return GRUWeights(p.weight_ih.T, p.weight_hh.T, p.bias_ih, p.bias_hh)


def gru_input_part(w: GRUWeights, x: Array) -> Array:
    """(…, I) -> (…, 3H): ``x @ W_ih^T + b_ih`` (for one step, or every step at once)."""
    gi = x @ w.w_ih_t
    return gi if w.bias_ih is None else gi + w.bias_ih


def gru_update(w: GRUWeights, h: Array, gi: Array) -> tuple[Array, GRUResiduals]:
    """The step given the input's share ``gi`` (B, 3H): h (B, H) -> h' (B, H) and the
    :class:`GRUResiduals` its derivative reads."""
    gh = h @ w.w_hh_t
    if w.bias_hh is not None:
        gh = gh + w.bias_hh
    hidden = h.shape[-1]
    rz = jax.nn.sigmoid(gi[..., : 2 * hidden] + gh[..., : 2 * hidden])
    r, z = rz[..., :hidden], rz[..., hidden:]
    hidden_n = gh[..., 2 * hidden :]
    n = jnp.tanh(gi[..., 2 * hidden :] + r * hidden_n)
    return n + z * (h - n), GRUResiduals(rz, n, hidden_n)


def gru_cell(w: GRUWeights, h: Array, x_t: Array) -> tuple[Array, GRUResiduals]:
    """One GRU step: x_t (B, I), h (B, H) -> h' (B, H) and its :class:`GRUResiduals`
    (what the scan drivers stack for the hand-written backward)."""
    return gru_update(w, h, gru_input_part(w, x_t))


def gru_backward(
    w: GRUWeights, d_h: Array, res: GRUResiduals, h_prev: Array
) -> tuple[Array, GRUCotangents]:
    """The derivative of one :func:`gru_cell` step (reverse mode).

    Arguments:
        d_h: (B, H) the cotangent of h', the output's cotangent already added.
        res: the step's :class:`GRUResiduals`; ``h_prev`` (B, H) the state it started from.

    Returns:
        the cotangent of ``h_prev`` (B, H) and the step's :class:`GRUCotangents`, from
        which ``d_x`` (:func:`gru_input_cotangent`) and the weights' gradients
        (:func:`gru_weight_gradients`) follow.
    """
    hidden = d_h.shape[-1]
    r, z = res.rz[..., :hidden], res.rz[..., hidden:]
    d_n = d_h * (1 - z) * (1 - res.n * res.n)  # through tanh
    d_r = d_n * res.hidden_n * r * (1 - r)
    d_z = d_h * (h_prev - res.n) * z * (1 - z)
    d_gi = jnp.concatenate([d_r, d_z, d_n], axis=-1)
    d_gh = jnp.concatenate([d_r, d_z, d_n * r], axis=-1)
    return d_h * z + d_gh @ w.w_hh_t.T, GRUCotangents(d_gi, d_gh)


def gru_input_cotangent(w: GRUWeights, d: GRUCotangents) -> Array:
    """(…, 3H) cotangents -> (…, I): the inputs' cotangent ``d_gi @ W_ih``."""
    return d.inputs @ w.w_ih_t.T


def gru_weight_gradients(w: GRUWeights, d: GRUCotangents, x: Array, h_prev: Array) -> GRUWeights:
    """The weights' gradients summed over K steps, each ONE product over the K*B rows.

    Arguments:
        d: the steps' :class:`GRUCotangents` (K, B, 3H) each.
        x: (K, B, I) their inputs; ``h_prev`` (K, B, H) the states they started from.

    Returns:
        a :class:`GRUWeights` of gradients (None where the weights have no bias).
    """
    return GRUWeights(
        jnp.einsum("tbi,tbg->ig", x, d.inputs),
        jnp.einsum("tbh,tbg->hg", h_prev, d.state),
        None if w.bias_ih is None else d.inputs.sum(axis=(0, 1)),
        None if w.bias_hh is None else d.state.sum(axis=(0, 1)),
    )
