"""The LSTM as pure functions over pytrees, in PyTorch's layout.

All math of the project lives here once; the Flax modules only declare
parameters and call :func:`lstm`. The time loop of a layer (:func:`lstm_layer`)
runs in :mod:`lstm_jax.core.recurrence`, which writes the same step in the shape that
is fast to run and to differentiate (one fused matmul per step, a hand-written
backward pass, cuDNN on GPUs).

Shapes (time-major): ``x`` (T, B, I); states ``h`` (B, H_out), ``c`` (B, H);
per layer and direction the weights are, as in ``torch.nn.LSTM``::

    weight_ih (4H, I)   weight_hh (4H, H_out)   bias_ih, bias_hh (4H,)   weight_hr (P, H)

with the gates stacked in the order i, f, g, o. One step is::

    gates = x @ W_ih^T + b_ih + h @ W_hh^T + b_hh       # one fused matmul per input
    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of the four quarters
    c' = f * c + i * g
    h' = o * tanh(c')            (then h' @ W_hr^T with projections)

The two biases are kept apart (never folded) so that gradient steps move
them as torch moves them.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from lstm_jax.common.config import DIRECTION_SUFFIXES, LSTMConfig
from lstm_jax.core import recurrence
from lstm_jax.core.state import CellParams, LSTMState

Array = jax.Array


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


def input_projection(p: CellParams, x: Array) -> Array:
    """``x @ W_ih^T + b_ih + b_hh``: (…, I) -> (…, 4H), the part of the gates
    that does not depend on the state."""
    z = x @ p.weight_ih.T
    if p.bias_ih is not None:
        z = z + p.bias_ih
    if p.bias_hh is not None:
        z = z + p.bias_hh
    return z


def cell_from_projection(p: CellParams, state: LSTMState, x_proj: Array) -> LSTMState:
    """One step given the input's projection ``x_proj`` (B, 4H)."""
    gates = x_proj + state.h @ p.weight_hh.T
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    if p.weight_hr is not None:
        h = h @ p.weight_hr.T
    return LSTMState(h, c)


def lstm_cell(p: CellParams, state: LSTMState, x: Array) -> LSTMState:
    """One LSTM step: ``x`` (B, I), state ((B, H_out), (B, H)) -> next state."""
    return cell_from_projection(p, state, input_projection(p, x))


def reverse_padded(x: Array, seq_lengths: Array | None) -> Array:
    """Reverse (T, B, …) along time; with ``seq_lengths`` (B,) each row's first
    ``len`` steps are reversed in place and its padding stays where it is."""
    if seq_lengths is None:
        return jnp.flip(x, axis=0)
    T = x.shape[0]
    t = jnp.arange(T)[:, None]
    index = jnp.where(t < seq_lengths[None, :], seq_lengths[None, :] - 1 - t, t)  # (T, B)
    index = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=0)


def lstm_layer(
    p: CellParams,
    x: Array,
    state: LSTMState,
    *,
    seq_lengths: Array | None = None,
    unroll: int = 1,
    impl: str = "auto",
    remat: int = 0,
) -> tuple[Array, LSTMState]:
    """Run one direction of one layer over time.

    Arguments:
        x: (T, B, I) time-major input.
        state: initial ``LSTMState`` ((B, H_out), (B, H)).
        seq_lengths: optional (B,) valid lengths; steps at or past a row's
            length leave its state unchanged and output zeros.
        unroll: ``lax.scan`` unroll factor.
        impl: ``"auto"``, ``"scan"``, ``"custom_vjp"`` or ``"cudnn"``: how the
            recurrence runs and is differentiated (see :mod:`lstm_jax.core.recurrence`;
            ``"scan"`` is the one that supports forward-mode autodiff).
        remat: K > 0 rematerializes in chunks of K steps: training memory
            O(T/K + K) states instead of O(T), for about one more forward pass.

    Returns:
        outputs (T, B, H_out) and the final state (at each row's last valid step).
    """
    if seq_lengths is not None:
        # Zero the padding before it meets the weights: torch's packed LSTM never reads it,
        # and a NaN or inf there would otherwise reach the weight gradients (0 * NaN = NaN).
        valid_steps = jnp.arange(x.shape[0])[:, None] < seq_lengths[None, :]  # (T, B)
        x = jnp.where(valid_steps[..., None], x, jnp.zeros((), x.dtype))
    outputs, (h, c) = recurrence.run(
        p, x, state, seq_lengths, unroll=unroll, impl=impl, remat=remat
    )
    return outputs, LSTMState(h, c)


def zero_state(config: LSTMConfig, batch_size: int, dtype: jnp.dtype) -> LSTMState:
    """Zeros of shape (D*L, B, H_out) and (D*L, B, H)."""
    h_shape, c_shape = config.state_shapes(batch_size)
    return LSTMState(jnp.zeros(h_shape, dtype), jnp.zeros(c_shape, dtype))


def dropout(rng: Array, x: Array, rate: float) -> Array:
    """Inverted dropout as torch's: zero with probability ``rate``, scale the rest by 1/(1-rate)."""
    if rate == 0.0:
        return x
    if rate == 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def lstm(
    params: Mapping[str, Array],
    x: Array,
    initial_state: LSTMState | None,
    config: LSTMConfig,
    *,
    seq_lengths: Array | None = None,
    dropout_rng: Array | None = None,
    unroll: int = 1,
    impl: str = "auto",
    remat: int = 0,
) -> tuple[Array, LSTMState]:
    """A stack of (bi)directional LSTM layers, exactly ``torch.nn.LSTM``'s forward.

    Arguments:
        params: torch-named weights (``weight_ih_l0``, ``bias_hh_l1_reverse``, …).
        x: (T, B, I) time-major input (the modules handle ``batch_first``/unbatched).
        initial_state: ``LSTMState`` of (D*L, B, H_out) and (D*L, B, H), or None for zeros.
        config: the ``LSTMConfig`` the params were made for.
        seq_lengths: optional (B,) lengths, padding at the end (packed-sequence semantics).
        dropout_rng: a PRNG key to apply ``config.dropout`` between layers
            (training mode); None means eval mode (no dropout).
        unroll, impl, remat: speed and memory knobs of each layer, see :func:`lstm_layer`;
            the results do not depend on them (up to float rounding).

    Returns:
        output (T, B, D*H_out) of the last layer, and ``LSTMState(h_n, c_n)``
        of shapes (D*L, B, H_out) and (D*L, B, H), ordered ``layer * D + direction``.
    """
    recurrence.check_options(impl, remat, unroll)
    D = config.num_directions
    if initial_state is None:
        initial_state = zero_state(config, x.shape[1], x.dtype)
    knobs = {"unroll": unroll, "impl": impl, "remat": remat}
    h_n, c_n = [], []
    layer_input = x
    for layer in range(config.num_layers):
        if layer > 0 and dropout_rng is not None and config.dropout > 0:
            dropout_rng, key = jax.random.split(dropout_rng)
            layer_input = dropout(key, layer_input, config.dropout)
        outputs = []
        for direction in range(D):
            index = layer * D + direction
            state = LSTMState(initial_state.h[index], initial_state.c[index])
            p = cell_params(params, layer, direction)
            if direction == 0:
                out, final = lstm_layer(p, layer_input, state, seq_lengths=seq_lengths, **knobs)
            else:
                reversed_input = reverse_padded(layer_input, seq_lengths)
                out, final = lstm_layer(p, reversed_input, state, seq_lengths=seq_lengths, **knobs)
                out = reverse_padded(out, seq_lengths)
            outputs.append(out)
            h_n.append(final.h)
            c_n.append(final.c)
        layer_input = outputs[0] if D == 1 else jnp.concatenate(outputs, axis=-1)
    return layer_input, LSTMState(jnp.stack(h_n), jnp.stack(c_n))


def linear(weight: Array, bias: Array | None, x: Array) -> Array:
    """``torch.nn.Linear``: x (…, F) @ weight (O, F)^T + bias (O,) -> (…, O)."""
    y = x @ weight.T
    return y if bias is None else y + bias


def last_valid_step(outputs: Array, seq_lengths: Array | None) -> Array:
    """(T, B, F) -> (B, F): the last step, or each row's step ``len - 1``."""
    if seq_lengths is None:
        return outputs[-1]
    index = (seq_lengths - 1)[None, :, None]
    return jnp.take_along_axis(outputs, index, axis=0)[0]
