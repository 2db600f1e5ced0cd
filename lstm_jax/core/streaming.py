"""Streaming inference: one time step of a unidirectional stack per call, the state carried.

A real-time caller feeds one input at a time and keeps the state between calls. What
such a call costs is mostly overhead around a small product, so the step here is lean:
the weights are turned into the step's form (:func:`~lstm_jax.core.cell.step_weights`:
``[W_ih, W_hh]^T`` concatenated, biases summed) ONCE, closed over by one ``jax.jit``
program as constants, and each call passes only the input and the state (whose buffers
are donated). ``jax.jit(model.apply)`` called per step instead re-flattens the whole
variables tree and concatenates the weights inside every call.

Shapes: ``x_t`` (B, I); state ``h`` (L, B, H_out), ``c`` (L, B, H).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from lstm_jax.common.config import LSTMConfig
from lstm_jax.core.cell import StepWeights, lstm_cell, step_weights
from lstm_jax.core.stack import cell_params, linear
from lstm_jax.core.state import LSTMState

Array = jax.Array


def stack_step(
    weights: tuple[StepWeights, ...], state: LSTMState, x_t: Array
) -> tuple[Array, LSTMState]:
    """One time step through every layer of a unidirectional stack.

    Arguments:
        weights: each layer's :class:`StepWeights`, first layer first.
        state: (L, B, H_out), (L, B, H).
        x_t: (B, I).

    Returns:
        the last layer's output (B, H_out) and the next state (L, B, ·).
    """
    h, c, layer_input = [], [], x_t
    for layer, w in enumerate(weights):
        new, _ = lstm_cell(w, LSTMState(state.h[layer], state.c[layer]), layer_input)
        h.append(new.h)
        c.append(new.c)
        layer_input = new.h
    return layer_input, LSTMState(jnp.stack(h), jnp.stack(c))


def check_streamable(config: LSTMConfig, who: str = "streaming_step") -> None:
    """ValueError for a stack that cannot run one step at a time."""
    if config.bidirectional:
        raise ValueError(
            f"{who}: expected a unidirectional LSTM, got bidirectional=True (the reverse "
            "direction's output at step t depends on every later step)"
        )


def make_step(
    params: Mapping[str, Array],
    config: LSTMConfig,
    head: Callable[[Array], Array] | None = None,
    *,
    who: str = "streaming_step",
) -> Callable[[Array, Array, Array], tuple[Array, Array, Array]]:
    """A jitted ``(x_t, h, c) -> (y_t, h', c')`` closing over the stack's weights.

    Arguments:
        params: torch-named weights of ``config``'s unidirectional stack.
        head: applied to the last layer's output (e.g. the modeler's linear layer);
            None returns that output itself.

    Returns:
        the step; ``h`` and ``c`` are donated (pass the returned ones to the next call).
        Input shapes are checked when a new shape is first traced, not per call.
    """
    check_streamable(config, who)
    weights = tuple(
        step_weights(cell_params(params, layer, 0)) for layer in range(config.num_layers)
    )
    input_size = weights[0].input_size
    h_shape, c_shape = config.state_shapes(1)

    def step(x_t: Array, h: Array, c: Array) -> tuple[Array, Array, Array]:
        if not jnp.issubdtype(x_t.dtype, jnp.floating):
            raise TypeError(f"{who}: expected a floating point input, got dtype {x_t.dtype}")
        if x_t.ndim != 2 or x_t.shape[1] != input_size:
            raise ValueError(f"{who}: expected x_t of shape (B, {input_size}), got {x_t.shape}")
        expected = ((h_shape[0], x_t.shape[0], h_shape[2]), (c_shape[0], x_t.shape[0], c_shape[2]))
        if (h.shape, c.shape) != expected:
            raise ValueError(
                f"{who}: expected a state (h, c) of shapes {expected}, got {(h.shape, c.shape)}"
            )
        out, new = stack_step(weights, LSTMState(h, c), x_t.astype(weights[0].w_cat.dtype))
        return (out if head is None else head(out)), new.h, new.c

    return jax.jit(step, donate_argnums=(1, 2))


def linear_head(weight: Array, bias: Array | None) -> Callable[[Array], Array]:
    """``torch.nn.Linear`` with these weights, as a ``head`` for :func:`make_step`."""
    return lambda features: linear(weight, bias, features)
