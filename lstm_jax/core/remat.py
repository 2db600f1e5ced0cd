"""Rematerialization of the autodiff scan (``impl="scan"``, ``remat=K``): the sequence in
chunks of K steps, each under ``jax.checkpoint``.

The hand-written backward rematerializes by itself (:mod:`lstm_jax.core.scan`); the
knob is explained in :mod:`lstm_jax.core.recurrence`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from lstm_jax.core import kinds
from lstm_jax.core.kinds import Kind
from lstm_jax.core.scan import forward_scan

Array = jax.Array


def checkpointed_scan(
    w: Any,
    x: Array,
    state: Any,
    valid: Array | None,
    *,
    unroll: int,
    chunk_steps: int,
    kind: Kind = kinds.LSTM,
) -> tuple[Array, Any]:
    """The autodiff scan in chunks of ``chunk_steps`` steps, each under ``jax.checkpoint``:
    only a chunk's starting state is kept for the backward pass, which recomputes the
    chunk's forward. A last chunk shorter than the others runs on its own (no padding).
    ``kind``: as :func:`~lstm_jax.core.scan.forward_scan`'s.

    Returns:
        the carried h of every step (T, B, H_out) and the final state.
    """
    n, rest = divmod(x.shape[0], chunk_steps)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def one_chunk(carry: Any, inputs: tuple[Array, Array | None]) -> tuple:
        x_k, valid_k = inputs
        hs, final, _ = forward_scan(w, x_k, carry, valid_k, unroll=unroll, kind=kind)
        return final, hs

    def whole_chunks(a: Array | None) -> Array | None:
        return None if a is None else a[: n * chunk_steps].reshape((n, chunk_steps, *a.shape[1:]))

    final, hs = lax.scan(one_chunk, state, (whole_chunks(x), whole_chunks(valid)))
    hs = hs.reshape((n * chunk_steps, *hs.shape[2:]))
    if rest:
        tail_valid = None if valid is None else valid[n * chunk_steps :]
        final, hs_tail = one_chunk(final, (x[n * chunk_steps :], tail_valid))
        hs = jnp.concatenate([hs, hs_tail], axis=0)
    return hs, final
