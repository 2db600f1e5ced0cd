"""Initialisers that draw from PyTorch's distributions.

``torch.nn.LSTM`` draws every tensor from U(-1/sqrt(H), 1/sqrt(H));
``torch.nn.Linear`` draws weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in))
(its kaiming_uniform with a=sqrt(5) reduces to that bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]


def uniform_symmetric(bound: float) -> Initializer:
    """An initializer drawing from U(-bound, bound)."""

    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, tuple(shape), dtype, minval=-bound, maxval=bound)

    return init


def lstm_init(hidden_size: int) -> Initializer:
    """torch.nn.LSTM's init for every weight and bias: U(-1/sqrt(H), 1/sqrt(H))."""
    return uniform_symmetric(1.0 / math.sqrt(hidden_size))


def linear_init(fan_in: int) -> Initializer:
    """torch.nn.Linear's init for weight and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform_symmetric(1.0 / math.sqrt(fan_in))
