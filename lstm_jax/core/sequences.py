"""Operations on (T, B, F) sequences between a stack's layers: a direction's reversal
within each row's length, and torch's inter-layer dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


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


def dropout(rng: Array, x: Array, rate: float) -> Array:
    """Inverted dropout as torch's: zero with probability ``rate``, scale the rest by 1/(1-rate)."""
    if rate == 0.0:
        return x
    if rate == 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
