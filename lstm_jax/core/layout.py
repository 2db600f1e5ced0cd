"""``torch.nn.LSTM``'s call convention around :func:`lstm_jax.core.lstm`.

The Flax modules (linen and NNX) share these: they check a call with
:func:`check_call` before they create or read their parameters, then run it
with :func:`run_call`, which handles ``batch_first``, unbatched input and the
dtype the computation runs in. :func:`lecture_view` and
:func:`broadcast_hidden_cell` are the lecture's ``LSTMModeler`` conventions.
Errors say who complains, what was expected and what came.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.common.arrays import describe_non_pair, is_pair
from lstm_jax.common.config import (
    InputLayout,
    LSTMConfig,
    check_input,
    check_seq_lengths,
    check_seq_lengths_layout,
    check_state,
)
from lstm_jax.common.lecture import lecture_view_shape
from lstm_jax.core.stack import lstm
from lstm_jax.core.state import LSTMState

Array = jax.Array
StateLike = LSTMState | tuple[Any, Any]


def dtype_of(x: Any) -> np.dtype:
    """The numpy dtype of an array-like (jax, numpy, a tracer, a Python list)."""
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def is_floating(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.floating))


def as_state(initial_state: StateLike, who: str) -> LSTMState:
    """A pair (h, c) of floating arrays as an ``LSTMState``, or a ``TypeError``."""
    if not is_pair(initial_state):
        got = describe_non_pair(initial_state)
        raise TypeError(f"{who}: expected initial_state as a pair (h_0, c_0), got {got}")
    h, c = initial_state
    for name, v in (("h_0", h), ("c_0", c)):
        if not is_floating(dtype_of(v)):
            raise TypeError(f"{who}: expected a floating point {name}, got dtype {dtype_of(v)}")
    return LSTMState(jnp.asarray(h), jnp.asarray(c))


def check_param_dtype(param_dtype: Any, who: str) -> None:
    """``TypeError`` unless ``param_dtype`` names a floating point dtype."""
    try:
        dtype = np.dtype(param_dtype)
    except TypeError:
        raise TypeError(
            f"{who}: expected a floating point param_dtype, got {param_dtype!r}"
        ) from None
    if not is_floating(dtype):
        raise TypeError(f"{who}: expected a floating point param_dtype, got {dtype}")


def concrete_or_none(x: Any) -> np.ndarray | None:
    """The value of ``x`` if it is known now (not a tracer inside jit)."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def checked_lengths(
    seq_lengths: Any, layout: InputLayout, who: str = "LSTM"
) -> tuple[Array | None, bool]:
    """The lengths as (B,) int32, and whether their values were checked.

    Under ``jax.jit`` traced lengths have no values to check: only their shape
    and dtype are; rows whose length falls outside [1, T] then come out NaN.
    """
    if seq_lengths is None:
        return None, True
    if isinstance(seq_lengths, list | tuple):
        seq_lengths = jnp.asarray(seq_lengths)  # stacks traced scalars too (a list under jit)
    value = concrete_or_none(seq_lengths)
    if value is not None:
        check_seq_lengths(value, layout, who)
    else:
        check_seq_lengths_layout(np.shape(seq_lengths), dtype_of(seq_lengths), layout, who)
    return jnp.atleast_1d(jnp.asarray(seq_lengths, jnp.int32)), value is not None


def poison_invalid_rows(out: Array, final: Any, lengths: Array, seq_len: int) -> tuple[Array, Any]:
    """NaN in every row whose (traced, unchecked) length lies outside [1, T], so a bad
    length shows up in the results instead of silently reading padding or wrapping.
    ``final``: an ``LSTMState`` or a GRU's/RNN's h, each (D*L, B, ·)."""
    bad = (lengths < 1) | (lengths > seq_len)  # (B,)
    nan = jnp.array(jnp.nan, out.dtype)

    def poison(a: Array) -> Array:
        return jnp.where(bad[None, :, None], nan, a)

    return poison(out), jax.tree.map(poison, final)


def as_hidden(initial_state: Any, who: str) -> Array:
    """A GRU's or RNN's h_0: one floating array (not a pair), or a ``TypeError``."""
    if isinstance(initial_state, tuple | list) or not hasattr(initial_state, "shape"):
        got = type(initial_state).__name__
        if isinstance(initial_state, tuple | list):
            got = f"a {got} of {len(initial_state)}"
        raise TypeError(f"{who}: expected h as one array (a GRU's or RNN's state), got {got}")
    if not is_floating(dtype_of(initial_state)):
        raise TypeError(f"{who}: expected a floating point h, got dtype {dtype_of(initial_state)}")
    return jnp.asarray(initial_state)


class CheckedCall(NamedTuple):
    """What :func:`check_call` learnt of a call: the input's layout, the initial state
    (None for zeros), the (B,) lengths and whether their values were checked."""

    layout: InputLayout
    state: Any  # LSTMState, a GRU's/RNN's h, or None
    seq_lengths: Array | None
    lengths_checked: bool


def check_call(
    config: LSTMConfig,
    x: Any,
    initial_state: StateLike | None,
    seq_lengths: Any,
    input_size: int,
    who: str = "LSTM",
    input_size_source: str = "",
) -> CheckedCall:
    """Check an ``nn.LSTM`` call ``(x, (h_0, c_0))`` before any parameter is touched.

    Arguments:
        x: (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I).
        initial_state: (h_0, c_0) of (D*L, B, H_out) and (D*L, B, H) (no B unbatched),
            or None.
        seq_lengths: None or (B,) integer lengths.
        input_size: the I the parameters expect (``input_size_source``: where it comes
            from, for the message, when not from the constructor).
    """
    dtype = dtype_of(x)
    layout = check_input(
        config, np.shape(x), str(dtype), is_floating(dtype), input_size, who, input_size_source
    )
    state: Any = None
    if initial_state is not None and config.has_cell:
        state = as_state(initial_state, who)
        check_state(config, layout, state.h.shape, state.c.shape, who)
    elif initial_state is not None:
        state = as_hidden(initial_state, who)
        check_state(config, layout, state.shape, None, who)
    lengths, checked = checked_lengths(seq_lengths, layout, who)
    return CheckedCall(layout, state, lengths, checked)


def uses_dropout(config: LSTMConfig, training: bool) -> bool:
    """Whether a call needs a dropout key: training mode, a rate, and layers to drop between."""
    return training and config.dropout > 0 and config.num_layers > 1


def run_call(
    params: dict[str, Array],
    x: Any,
    call: CheckedCall,
    config: LSTMConfig,
    *,
    param_dtype: Any,
    dropout_rng: Array | None = None,
    unroll: int = 1,
    impl: str = "auto",
    remat: int = 0,
) -> tuple[Array, Any]:
    """Run a checked call through :func:`lstm_jax.core.lstm` in torch's layouts (any kind:
    ``config.mode``).

    The computation runs in ``result_type(x.dtype, param_dtype)``.

    Returns:
        output (T, B, D*H_out) ((B, T, ·) with ``batch_first``, (T, ·) unbatched)
        and ``LSTMState(h_n, c_n)`` shaped as the initial state.
    """
    compute_dtype = jnp.result_type(dtype_of(x), param_dtype)
    params = {k: jnp.asarray(v).astype(compute_dtype) for k, v in params.items()}
    x = jnp.asarray(x, compute_dtype)
    state = call.state
    batched = call.layout.batch_size is not None
    if not batched:
        x = x[:, None]
        state = None if state is None else jax.tree.map(lambda a: a[:, None], state)
    elif config.batch_first:
        x = jnp.swapaxes(x, 0, 1)
    if state is not None:
        state = jax.tree.map(lambda a: a.astype(compute_dtype), state)
    out, final = lstm(
        params,
        x,
        state,
        config,
        seq_lengths=call.seq_lengths,
        dropout_rng=dropout_rng,
        unroll=unroll,
        impl=impl,
        remat=remat,
    )
    if not call.lengths_checked and call.seq_lengths is not None:
        out, final = poison_invalid_rows(out, final, call.seq_lengths, call.layout.seq_len)
    if not batched:
        return out[:, 0], jax.tree.map(lambda a: a[:, 0], final)
    if config.batch_first:
        out = jnp.swapaxes(out, 0, 1)
    return out, final


def lecture_view(x: Any, config: LSTMConfig, who: str) -> Array:
    """The lecture's ``x.view(len(x), 1, -1)`` for 1-D/2-D input; 3-D passes through."""
    dtype = dtype_of(x)
    shape = lecture_view_shape(np.shape(x), str(dtype), is_floating(dtype), config.batch_first, who)
    x = jnp.asarray(x)
    return x if shape is None else x.reshape(shape)


def broadcast_hidden_cell(state: LSTMState, batch: int) -> LSTMState:
    """Broadcast a stored (D*L, 1, ·) hidden_cell to batch ``batch``; other shapes pass
    through to the LSTM's own check."""
    if state.h.ndim == 3 and state.h.shape[1] == 1 and state.c.shape[1] == 1 and batch != 1:
        return LSTMState(
            jnp.broadcast_to(state.h, (state.h.shape[0], batch, state.h.shape[2])),
            jnp.broadcast_to(state.c, (state.c.shape[0], batch, state.c.shape[2])),
        )
    return state


def check_cell_call(
    x: Any,
    state: Any,
    input_size: int,
    hidden_size: int,
    who: str = "LSTMCell",
    *,
    pair: bool = True,
) -> tuple[int, ...]:
    """Check a ``torch.nn.LSTMCell`` call: x (B, I) or unbatched (I,), state None or
    (h, c) each (B, H) or (H,); with ``pair=False`` a ``GRUCell``'s or ``RNNCell``'s,
    whose state is h alone. Returns the state's shape."""
    dtype = dtype_of(x)
    if not is_floating(dtype):
        raise TypeError(f"{who}: expected a floating point input, got dtype {dtype}")
    if np.ndim(x) not in (1, 2):
        raise ValueError(
            f"{who}: expected input to be 1-D (I,) or 2-D (B, I), got {np.ndim(x)}-D "
            f"input of shape {np.shape(x)}"
        )
    if np.shape(x)[-1] != input_size:
        raise ValueError(
            f"{who}: expected input of size {input_size} in its last axis, got shape {np.shape(x)}"
        )
    expected = (*np.shape(x)[:-1], hidden_size)
    if state is None:
        return expected
    if not pair:
        h = as_hidden(state, who).shape
        if tuple(h) != expected:
            raise ValueError(
                f"{who}: expected h of shape {expected} for input of shape {np.shape(x)}, "
                f"got {tuple(h)}"
            )
        return expected
    if not is_pair(state):
        raise TypeError(f"{who}: expected state as a pair (h, c), got {describe_non_pair(state)}")
    for name, value in zip(("h", "c"), state, strict=True):
        if tuple(np.shape(value)) != expected:
            raise ValueError(
                f"{who}: expected {name} of shape {expected} for input of shape "
                f"{np.shape(x)}, got {tuple(np.shape(value))}"
            )
        if not is_floating(dtype_of(value)):
            raise TypeError(f"{who}: expected a floating point {name}, got dtype {dtype_of(value)}")
    return expected
