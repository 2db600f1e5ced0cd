"""Cutting the time axis into chunks of equal length (the backward pass and remat work
chunk by chunk)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class TimeChunks(NamedTuple):
    """T steps as ``number`` chunks of ``length`` steps; the last may be padded."""

    steps: int  # T
    length: int
    number: int

    @property
    def padded(self) -> bool:
        """Whether ``number * length`` exceeds T (the last chunk has padding steps)."""
        return self.number * self.length != self.steps


def time_chunks(steps: int, length: int) -> TimeChunks:
    """T steps in chunks of ``length`` (at most T) steps."""
    length = max(1, min(length, steps))
    return TimeChunks(steps, length, -(-steps // length))


def split_time(a: Array, chunks: TimeChunks) -> Array:
    """(T, …) -> (number, length, …), zero-padding the end of the time axis."""
    pad = chunks.number * chunks.length - a.shape[0]
    if pad:
        a = jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)])
    return a.reshape((chunks.number, chunks.length, *a.shape[1:]))


def merge_time(a: Array, chunks: TimeChunks) -> Array:
    """(number, length, …) -> (T, …): :func:`split_time` undone, padding dropped."""
    return a.reshape((chunks.number * chunks.length, *a.shape[2:]))[: chunks.steps]


def split_valid(valid: Array | None, chunks: TimeChunks, batch: int) -> Array | None:
    """The validity mask (T, B, 1) in chunks, False at padding steps; None when no step
    is masked or padded."""
    if valid is None:
        if not chunks.padded:
            return None
        valid = jnp.ones((chunks.steps, batch, 1), bool)
    return split_time(valid, chunks)


def shift_in(first: Array, seq: Array) -> Array:
    """(B, ·) and (K, B, ·) -> (K, B, ·): ``first`` then all of ``seq`` but its last step
    (the state each step started from)."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)
