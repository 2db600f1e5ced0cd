"""Streaming inference: one time step of a unidirectional stack per call, the state carried.

A real-time caller feeds one input at a time and keeps the state between calls. What
such a call costs is mostly overhead around a small product, so the step here is lean:
the weights are turned into the step's form (:func:`~lstm_jax.core.cell.step_weights`:
``[W_ih, W_hh]^T`` concatenated, biases summed) ONCE, closed over by one ``jax.jit``
program as constants, and each call passes only the input and the state (whose buffers
are donated). ``jax.jit(model.apply)`` called per step instead re-flattens the whole
variables tree and concatenates the weights inside every call.

Shapes: ``x_t`` (B, I); state ``h`` (L, B, H_out), ``c`` (L, B, H) (a GRU's or RNN's:
``h`` (L, B, H) alone; the kinds: :mod:`lstm_jax.core.kinds`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.common.config import LSTMConfig
from lstm_jax.core import kinds
from lstm_jax.core.kinds import Kind
from lstm_jax.core.stack import cell_params, linear
from lstm_jax.core.state import LSTMState

Array = jax.Array


def stack_step(
    weights: tuple[Any, ...], state: Any, x_t: Array, kind: Kind = kinds.LSTM
) -> tuple[Array, Any]:
    """One time step through every layer of a unidirectional stack.

    Arguments:
        weights: each layer's ``kind.weights`` (the LSTM's :class:`StepWeights`), first
            layer first.
        state: the kind's: ``LSTMState`` of (L, B, H_out), (L, B, H), or h (L, B, H).
        x_t: (B, I).

    Returns:
        the last layer's output (B, H_out) and the next state (L, B, ·).
    """
    finals, layer_input = [], x_t
    for layer, w in enumerate(weights):
        new, _ = kind.step(w, kinds.state_map(lambda a, k=layer: a[k], state), layer_input)
        finals.append(new)
        layer_input = kind.output(new)
    return layer_input, kinds.state_map(lambda *a: jnp.stack(a), *finals)


def check_streamable(config: LSTMConfig, who: str = "streaming_step") -> None:
    """ValueError for a stack that cannot run one step at a time."""
    if config.bidirectional:
        raise ValueError(
            f"{who}: expected a unidirectional {config.module_name}, got bidirectional=True "
            "(the reverse direction's output at step t depends on every later step)"
        )


def make_step(
    params: Mapping[str, Array],
    config: LSTMConfig,
    head: Callable[[Array], Array] | None = None,
    *,
    who: str = "streaming_step",
) -> Callable[..., tuple[Array, ...]]:
    """A jitted ``(x_t, h, c) -> (y_t, h', c')`` closing over the stack's weights (a GRU's
    or RNN's, ``config.mode``: ``(x_t, h) -> (y_t, h')``).

    Arguments:
        params: torch-named weights of ``config``'s unidirectional stack.
        head: applied to the last layer's output (e.g. the modeler's linear layer);
            None returns that output itself.

    Returns:
        the step; ``h`` and ``c`` are donated (pass the returned ones to the next call).
        Input shapes are checked when a new shape is first traced, not per call.
    """
    check_streamable(config, who)
    kind = kinds.kind_of(config.mode)
    layers = [cell_params(params, layer, 0) for layer in range(config.num_layers)]
    weights = tuple(kind.weights(p) for p in layers)
    input_size = layers[0].weight_ih.shape[-1]
    dtype = layers[0].weight_ih.dtype
    h_shape, c_shape = config.state_shapes(1)

    def check_input(x_t: Array) -> None:
        if not jnp.issubdtype(x_t.dtype, jnp.floating):
            raise TypeError(f"{who}: expected a floating point input, got dtype {x_t.dtype}")
        if x_t.ndim != 2 or x_t.shape[1] != input_size:
            raise ValueError(f"{who}: expected x_t of shape (B, {input_size}), got {x_t.shape}")

    if not kind.has_cell:

        def hidden_step(x_t: Array, h: Array) -> tuple[Array, Array]:
            check_input(x_t)
            expected = (h_shape[0], x_t.shape[0], h_shape[2])
            if h.shape != expected:
                raise ValueError(f"{who}: expected a state h of shape {expected}, got {h.shape}")
            out, new = stack_step(weights, h, x_t.astype(dtype), kind)
            return (out if head is None else head(out)), new

        return jax.jit(hidden_step, donate_argnums=(1,))

    def step(x_t: Array, h: Array, c: Array) -> tuple[Array, Array, Array]:
        check_input(x_t)
        expected = ((h_shape[0], x_t.shape[0], h_shape[2]), (c_shape[0], x_t.shape[0], c_shape[2]))
        if (h.shape, c.shape) != expected:
            raise ValueError(
                f"{who}: expected a state (h, c) of shapes {expected}, got {(h.shape, c.shape)}"
            )
        out, new = stack_step(weights, LSTMState(h, c), x_t.astype(dtype))
        return (out if head is None else head(out)), new.h, new.c

    return jax.jit(step, donate_argnums=(1, 2))


def linear_head(weight: Array, bias: Array | None) -> Callable[[Array], Array]:
    """``torch.nn.Linear`` with these weights, as a ``head`` for :func:`make_step`."""
    return lambda features: linear(weight, bias, features)
