"""A stack of recurrent layers and directions, exactly ``torch.nn.LSTM``'s forward (and,
by ``config.mode``, ``torch.nn.GRU``'s and ``torch.nn.RNN``'s: the kinds,
:mod:`lstm_jax.core.kinds`; a GRU's or RNN's state is h alone, (D*L, B, H)).

Shapes (time-major): ``x`` (T, B, I); states ``h`` (B, H_out), ``c`` (B, H) per
layer-direction, (D*L, B, ·) for the stack. Per layer and direction the weights are, as
in ``torch.nn.LSTM`` (gate order i, f, g, o)::

    weight_ih (4H, I)   weight_hh (4H, H_out)   bias_ih, bias_hh (4H,)   weight_hr (P, H)

The step itself is :func:`lstm_jax.core.cell.lstm_cell`; how a layer-direction runs over
time (the ``impl``, ``remat`` and ``unroll`` knobs) is :mod:`lstm_jax.core.recurrence`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.common.config import LSTMConfig
from lstm_jax.core import kinds, recurrence, wavefront
from lstm_jax.core.cudnn import cudnn_lstm
from lstm_jax.core.sequences import dropout, reverse_padded
from lstm_jax.core.state import CellParams, LSTMState, cell_params

Array = jax.Array


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
        unroll, impl, remat: how the recurrence runs (:mod:`lstm_jax.core.recurrence`).

    Returns:
        outputs (T, B, H_out) and the final state (at each row's last valid step).
    """
    recurrence.check_options(impl, remat, unroll)
    proj_size = 0 if p.weight_hr is None else p.weight_hr.shape[0]
    impl = recurrence.resolve(impl, proj_size, x.dtype, remat)
    valid = recurrence.valid_mask(seq_lengths, x.shape[0])
    x = recurrence.zero_padding(x, valid)
    return recurrence.layer(p, x, state, seq_lengths, valid, unroll=unroll, impl=impl, remat=remat)


def zero_state(config: LSTMConfig, batch_size: int, dtype: jnp.dtype) -> Any:
    """Zeros of shape (D*L, B, H_out) and (D*L, B, H) (an ``LSTMState``); for a GRU or RNN
    the array h of zeros (D*L, B, H)."""
    h_shape, c_shape = config.state_shapes(batch_size)
    if not config.has_cell:
        return jnp.zeros(h_shape, dtype)
    return LSTMState(jnp.zeros(h_shape, dtype), jnp.zeros(c_shape, dtype))


def lstm(
    params: Mapping[str, Array],
    x: Array,
    initial_state: Any,
    config: LSTMConfig,
    *,
    seq_lengths: Array | None = None,
    dropout_rng: Array | None = None,
    unroll: int = 1,
    impl: str = "auto",
    remat: int = 0,
) -> tuple[Array, LSTMState]:
    """A stack of (bi)directional LSTM layers, exactly ``torch.nn.LSTM``'s forward; of GRU
    or RNN layers (``torch.nn.GRU``, ``torch.nn.RNN``) when ``config.mode`` says so.

    Arguments:
        params: torch-named weights (``weight_ih_l0``, ``bias_hh_l1_reverse``, …).
        x: (T, B, I) time-major input (the modules handle ``batch_first``/unbatched).
        initial_state: ``LSTMState`` of (D*L, B, H_out) and (D*L, B, H) (a GRU's or RNN's:
            h of (D*L, B, H)), or None for zeros.
        config: the ``LSTMConfig`` the params were made for (its ``mode``: the kind).
        seq_lengths: optional (B,) lengths, padding at the end (packed-sequence semantics).
        dropout_rng: a PRNG key to apply ``config.dropout`` between layers
            (training mode); None means eval mode (no dropout).
        unroll, impl, remat: speed and memory knobs, explained in
            :mod:`lstm_jax.core.recurrence`; the results do not depend on them (up to
            float rounding).

    Returns:
        output (T, B, D*H_out) of the last layer, and ``LSTMState(h_n, c_n)``
        of shapes (D*L, B, H_out) and (D*L, B, H) (a GRU's or RNN's: h_n (D*L, B, H)),
        ordered ``layer * D + direction``.
    """
    kind = kinds.kind_of(config.mode)
    recurrence.check_options(impl, remat, unroll, kind.name, config.proj_size, config.mode)
    impl = recurrence.resolve(impl, config.proj_size, x.dtype, remat, config.mode)
    if initial_state is None:
        initial_state = zero_state(config, x.shape[1], x.dtype)
    valid = recurrence.valid_mask(seq_lengths, x.shape[0])  # once for every layer
    x = recurrence.zero_padding(x, valid)
    if impl == "cudnn":
        return _cudnn_stack(params, x, initial_state, config, seq_lengths, dropout_rng)
    if impl == "wavefront":
        return wavefront.lstm(
            params, x, initial_state, config, seq_lengths=seq_lengths,
            dropout_rng=dropout_rng, unroll=unroll, remat=remat,
        )  # fmt: skip
    D = config.num_directions
    finals = []
    layer_input = x
    for layer in range(config.num_layers):
        if layer > 0 and dropout_rng is not None and config.dropout > 0:
            dropout_rng, key = jax.random.split(dropout_rng)
            layer_input = dropout(key, layer_input, config.dropout)
        outputs = []
        for direction in range(D):
            index = layer * D + direction
            state = kinds.state_map(lambda a, i=index: a[i], initial_state)
            p = cell_params(params, layer, direction)
            reverse = direction == 1
            inputs = reverse_padded(layer_input, seq_lengths) if reverse else layer_input
            with jax.named_scope(f"{kind.name}_l{layer}{'_reverse' if reverse else ''}"):
                out, final = recurrence.layer(
                    p, inputs, state, seq_lengths, valid, unroll=unroll, impl=impl,
                    remat=remat, backward_rows=kind.backward_rows, kind=kind,
                )  # fmt: skip
            if reverse:
                out = reverse_padded(out, seq_lengths)
            outputs.append(out)
            finals.append(final)
        layer_input = outputs[0] if D == 1 else jnp.concatenate(outputs, axis=-1)
    return layer_input, kinds.state_map(lambda *a: jnp.stack(a), *finals)


recurrent = lstm  # the same stack for every kind, under the family's name


def _cudnn_stack(
    params: Mapping[str, Array],
    x: Array,
    initial_state: LSTMState,
    config: LSTMConfig,
    seq_lengths: Array | None,
    dropout_rng: Array | None,
) -> tuple[Array, LSTMState]:
    """:func:`lstm` through cuDNN: every layer and direction in one call, or, with dropout
    between layers (training mode), one call per layer (both directions) with this
    package's dropout between the calls (cuDNN's own dropout draws its own masks)."""
    D, L = config.num_directions, config.num_layers
    per_layer_calls = dropout_rng is not None and config.dropout > 0 and L > 1
    groups = [[layer] for layer in range(L)] if per_layer_calls else [list(range(L))]
    h_n, c_n, layer_input = [], [], x
    for layers in groups:
        if layers[0] > 0 and dropout_rng is not None:
            dropout_rng, key = jax.random.split(dropout_rng)
            layer_input = dropout(key, layer_input, config.dropout)
        rows = slice(layers[0] * D, (layers[-1] + 1) * D)
        pseudo_layers = [cell_params(params, k, d) for k in layers for d in range(D)]
        state = LSTMState(initial_state.h[rows], initial_state.c[rows])
        layer_input, final = cudnn_lstm(
            pseudo_layers, layer_input, state, seq_lengths, bidirectional=D == 2
        )
        h_n.append(final.h)
        c_n.append(final.c)
    return layer_input, LSTMState(jnp.concatenate(h_n), jnp.concatenate(c_n))


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
