"""One LSTM step, in the form that runs, and its hand-written derivative.

Every driver (the scan, the hand-written backward, remat chunks, the hoisted-input
scan, the wavefront) and every test that needs "the cell" calls these functions;
no other module writes the gate math.

Shapes: ``x_t`` (B, I), ``h`` (B, H_out), ``c`` (B, H) with H_out = P under a
projection, else H. The weights are torch's (:class:`~lstm_jax.core.state.CellParams`)
turned once per call into :class:`StepWeights`::

    w_cat = [W_ih, W_hh]^T   (I + H_out, 4H)     bias = b_ih + b_hh   (4H,)

so one step is one fused product (gates in torch's order i, f, g, o)::

    z = [x_t, h] @ w_cat + bias                  (B, 4H)
    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of z's quarters
    c' = f * c + i * g
    h' = o * tanh(c')            (then h' @ W_hr^T with a projection)

The two biases stay two parameters (each receives the sum's gradient, as in torch,
through :func:`step_weights`'s sum); only the computation adds them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.core.state import CellParams, LSTMState

Array = jax.Array


class StepWeights(NamedTuple):
    """One layer-direction's weights in the form the step runs.

    Attributes:
        w_cat: (I + H_out, 4H), ``[W_ih, W_hh]^T``: input rows first, then state rows.
        bias: (4H,) ``b_ih + b_hh``, or None without biases.
        w_hr: (P, H) the projection, or None without one.
    """

    w_cat: Array
    bias: Array | None
    w_hr: Array | None

    @property
    def input_size(self) -> int:
        """I: the rows of ``w_cat`` that multiply the input."""
        return self.w_cat.shape[0] - self.hidden_out

    @property
    def hidden_out(self) -> int:
        """H_out: P with a projection, else H."""
        return self.w_cat.shape[1] // 4 if self.w_hr is None else self.w_hr.shape[0]

    @property
    def w_ih_t(self) -> Array:
        """(I, 4H) ``W_ih^T``."""
        return self.w_cat[: self.input_size]

    @property
    def w_hh_t(self) -> Array:
        """(H_out, 4H) ``W_hh^T``."""
        return self.w_cat[self.input_size :]


class Residuals(NamedTuple):
    """What the forward scan keeps for the hand-written backward pass, per step."""

    gates: Array  # (T, B, 4H) activated gates i, f, g, o
    cells: Array  # (T, B, H) cell states after each step


def step_weights(p: CellParams) -> StepWeights:
    """torch's layer-direction weights -> the step's form (once per call, not per step).

    Arguments:
        p: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H_out), optional ``bias_ih`` and
            ``bias_hh`` (4H,), optional ``weight_hr`` (P, H).

    Returns:
        :class:`StepWeights`; differentiating through it hands each of the two biases
        the gradient of their sum.
    """
    biases = [b for b in (p.bias_ih, p.bias_hh) if b is not None]
    bias = functools.reduce(jnp.add, biases) if biases else None
    w_cat = jnp.concatenate([p.weight_ih, p.weight_hh], axis=1).T
    return StepWeights(w_cat, bias, p.weight_hr)


def split_gates(a: Array) -> tuple[Array, Array, Array, Array]:
    """(…, 4H) -> the four (…, H) quarters i, f, g, o (torch's gate order)."""
    i, f, g, o = jnp.split(a, 4, axis=-1)
    return i, f, g, o


def activate(z: Array) -> Array:
    """(…, 4H) pre-activations -> sigmoid, sigmoid, tanh, sigmoid of the quarters.

    ``jax.nn.sigmoid`` (1 / (1 + exp(-z))), as torch: it keeps the tiny left tail
    (sigmoid(-30) = 9e-14) that the one-pass form (1 + tanh(z / 2)) / 2 rounds to 0,
    and saturated gates' gradients come from that tail."""
    i, f, g, o = split_gates(z)
    sigmoid = jax.nn.sigmoid
    return jnp.concatenate([sigmoid(i), sigmoid(f), jnp.tanh(g), sigmoid(o)], axis=-1)


def preactivations(w: StepWeights, x_t: Array, h: Array) -> Array:
    """(B, I), (B, H_out) -> (B, 4H): ``[x_t, h] @ w_cat + bias``, one fused product."""
    z = jnp.concatenate([x_t, h], axis=-1) @ w.w_cat
    return z if w.bias is None else z + w.bias


def gate_update(w: StepWeights, state: LSTMState, z: Array) -> tuple[LSTMState, Array]:
    """The step's nonlinear part: pre-activations z (B, 4H) and the previous state ->
    the next ``LSTMState`` ((B, H_out), (B, H)) and the activated gates (B, 4H)."""
    a = activate(z)
    i, f, g, o = split_gates(a)
    c = f * state.c + i * g
    h = o * jnp.tanh(c)
    if w.w_hr is not None:
        h = h @ w.w_hr.T
    return LSTMState(h, c), a


def lstm_cell(w: StepWeights, state: LSTMState, x_t: Array) -> tuple[LSTMState, Array]:
    """One LSTM step: the fused product then the gate update.

    Arguments:
        w: :func:`step_weights` of the layer-direction's :class:`CellParams`.
        state: ``LSTMState`` (h (B, H_out), c (B, H)).
        x_t: (B, I) this step's input.

    Returns:
        the next ``LSTMState`` and the activated gates (B, 4H), i, f, g, o (what the
        backward step needs besides the cell states).
    """
    return gate_update(w, state, preactivations(w, x_t, state.h))


def lstm_scan_step(w: StepWeights, state: LSTMState, x_t: Array) -> tuple[LSTMState, Residuals]:
    """:func:`lstm_cell` as the scan drivers take a kind's step: the next state and the
    :class:`Residuals` the hand-written backward keeps."""
    new, gates = lstm_cell(w, state, x_t)
    return new, Residuals(gates, new.c)


def lstm_input_part(w: StepWeights, x: Array) -> Array:
    """(…, I) -> (…, 4H): the input's share of the gates, ``x @ W_ih^T + bias``."""
    x_proj = x @ w.w_ih_t
    return x_proj if w.bias is None else x_proj + w.bias


def lstm_update(w: StepWeights, state: LSTMState, x_proj_t: Array) -> tuple[LSTMState, Residuals]:
    """The step given the input's share (:func:`lstm_input_part`): one ``h @ W_hh^T``."""
    new, gates = gate_update(w, state, x_proj_t + state.h @ w.w_hh_t)
    return new, Residuals(gates, new.c)


def cell_backward(
    w: StepWeights, d_next: LSTMState, gates: Array, c: Array, c_prev: Array
) -> tuple[LSTMState, Array]:
    """The derivative of one :func:`lstm_cell` step (reverse mode).

    Arguments:
        w: the step's weights.
        d_next: cotangents of the step's result (dh (B, H_out), dc (B, H)), with the
            output's cotangent already added to dh.
        gates: (B, 4H) the step's activated gates (from :func:`lstm_cell`).
        c: (B, H) the step's new cell state; ``c_prev`` (B, H) the one before.

    Returns:
        the cotangent of the previous state (dh (B, H_out), dc (B, H)) and of the
        pre-activations ``d_z`` (B, 4H), from which ``d_x = d_z @ w_ih_t.T`` and the
        weights' gradients (:func:`weight_gradients`) follow.
    """
    i, f, g, o = split_gates(gates)
    d_hu = d_next.h if w.w_hr is None else d_next.h @ w.w_hr  # (B, H)
    tanh_c = jnp.tanh(c)
    d_c = d_next.c + d_hu * o * (1 - tanh_c * tanh_c)
    d_z = jnp.concatenate(
        [
            d_c * g * i * (1 - i),
            d_c * c_prev * f * (1 - f),
            d_c * i * (1 - g * g),
            d_hu * tanh_c * o * (1 - o),
        ],
        axis=-1,
    )
    return LSTMState(d_z @ w.w_hh_t.T, d_c * f), d_z


def weight_gradients(
    w: StepWeights, d_z: Array, x: Array, h_prev: Array, d_h: Array, gates: Array, c: Array
) -> StepWeights:
    """The weights' gradients summed over many steps, each as ONE product over all rows.

    Arguments:
        d_z: (K, B, 4H) the pre-activations' cotangents of K steps (:func:`cell_backward`).
        x: (K, B, I) their inputs; ``h_prev`` (K, B, H_out) the states they started from.
        d_h: (K, B, P) the cotangents of their projected h (read only with a projection).
        gates: (K, B, 4H) their activated gates; ``c`` (K, B, H) their new cell states.

    Returns:
        a :class:`StepWeights` of gradients (None where the weights have none).
    """
    d_w_cat = jnp.concatenate(
        [jnp.einsum("tbi,tbg->ig", x, d_z), jnp.einsum("tbh,tbg->hg", h_prev, d_z)], axis=0
    )
    d_bias = None if w.bias is None else d_z.sum(axis=(0, 1))
    d_w_hr = None
    if w.w_hr is not None:
        o = split_gates(gates)[3]
        d_w_hr = jnp.einsum("tbp,tbh->ph", d_h, o * jnp.tanh(c))
    return StepWeights(d_w_cat, d_bias, d_w_hr)
