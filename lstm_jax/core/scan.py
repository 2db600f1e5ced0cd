"""One layer-direction over time: the scan of :func:`~lstm_jax.core.cell.lstm_cell` and
its hand-written backward pass (a ``jax.custom_vjp``).

The ``impl`` values these serve (``"scan"``, ``"custom_vjp"``, ``"hoisted"``) are
explained in :mod:`lstm_jax.core.recurrence`.

Shapes: ``x`` (T, B, I), state ((B, H_out), (B, H)), ``valid`` (T, B, 1) bool or
None (all steps valid). At a masked step the state passes through unchanged.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from lstm_jax.core import kinds
from lstm_jax.core.cell import Residuals, StepWeights, cell_backward, weight_gradients
from lstm_jax.core.kinds import Kind
from lstm_jax.core.state import LSTMState
from lstm_jax.core.time_chunks import merge_time, split_time, split_valid, time_chunks

Array = jax.Array

# Rows (steps x batch) per chunk of the hand-written backward when it does not
# rematerialize: the weight gradients are taken chunk by chunk while the chunk's gates'
# cotangents (rows x 4H) are still in cache (the measurement: benchmarks/NOTES.md).
BACKWARD_ROWS = 256


def backward_chunk_steps(steps: int, batch: int, rows: int = BACKWARD_ROWS) -> int:
    """Steps per chunk of the backward pass: about ``rows`` rows for a (T, B, ·) input."""
    return max(1, min(steps, rows // max(batch, 1)))


def _keep_where_masked(valid_t: Array | None, new: Any, old: Any) -> Any:
    """The new state where the step is valid, the old one where it is masked (any kind's
    state: ``LSTMState`` or h)."""
    if valid_t is None:
        return new
    return kinds.state_map(lambda n, o: jnp.where(valid_t, n, o), new, old)


def forward_scan(
    w: Any,
    x: Array,
    state: Any,
    valid: Array | None,
    *,
    unroll: int = 1,
    hoisted: bool = False,
    kind: Kind = kinds.LSTM,
) -> tuple[Array, Any, Any]:
    """``lax.scan`` of ``kind``'s step over x.

    Arguments:
        w: ``kind.weights`` of the layer-direction's parameters.
        state: the kind's state (``LSTMState`` ((B, H_out), (B, H)), or h (B, H)).
        hoisted: compute the input's share of the pre-activations (``kind.input_part``,
            (T, B, G*H)) for all steps as one product before the loop; each step then does
            only the state's product. Otherwise each step takes its x_t (the LSTM's fused
            ``[x_t, h] @ w_cat``).

    Returns:
        the carried h of every step (T, B, H_out) (the state kept at masked steps, not
        zeros), the final state and the steps' stacked residuals (the LSTM's
        :class:`Residuals`; None for the kinds JAX differentiates).
    """
    one_step = kind.update if hoisted else kind.step

    def step(carry: Any, inputs: tuple) -> tuple[Any, tuple]:
        x_t, valid_t = inputs
        new, residual = one_step(w, carry, x_t)
        new = _keep_where_masked(valid_t, new, carry)
        return new, (kind.output(new), residual)

    xs = kind.input_part(w, x) if hoisted else x
    final, (hs, residuals) = lax.scan(step, state, (xs, valid), unroll=unroll)
    return hs, final, residuals


def _backward_steps(
    w: StepWeights,
    d_state: LSTMState,
    d_hs: Array,
    residuals: Residuals,
    c_prev: Array,
    valid: Array | None,
    unroll: int,
) -> tuple[LSTMState, Array, Array]:
    """The reverse scan of :func:`cell_backward` over K steps: only (dh, dc) is carried.

    Returns:
        the cotangent of the state before the first step, the pre-activations'
        cotangents d_z (K, B, 4H) and the cotangents of each step's h (K, B, H_out)
        (zero at masked steps).
    """

    def step(carry: LSTMState, inputs: tuple) -> tuple[LSTMState, tuple]:
        d_y, gates, c, c_before, valid_t = inputs
        d_next = LSTMState(carry.h + d_y, carry.c)
        d_prev, d_z = cell_backward(w, d_next, gates, c, c_before)
        if valid_t is not None:  # a masked step passed its state through unchanged
            zero = jnp.zeros((), d_z.dtype)
            d_z = jnp.where(valid_t, d_z, zero)
            d_prev = _keep_where_masked(valid_t, d_prev, d_next)
            d_next = LSTMState(jnp.where(valid_t, d_next.h, zero), d_next.c)
        return d_prev, (d_z, d_next.h)

    inputs = (d_hs, residuals.gates, residuals.cells, c_prev, valid)
    d_state, (d_z, d_h) = lax.scan(step, d_state, inputs, reverse=True, unroll=unroll)
    return d_state, d_z, d_h


def _shift_in(first: Array, seq: Array) -> Array:
    """(B, ·) and (K, B, ·) -> (K, B, ·): ``first`` then all of ``seq`` but its last step
    (the state each step started from)."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _handwritten(unroll, hoisted, chunk, recompute, w, x, h0, c0, valid):
    hs, final, _ = forward_scan(w, x, LSTMState(h0, c0), valid, unroll=unroll, hoisted=hoisted)
    return hs, final.h, final.c


def _handwritten_fwd(unroll, hoisted, chunk, recompute, w, x, h0, c0, valid):
    knobs = {"unroll": unroll, "hoisted": hoisted}
    if not recompute:
        hs, final, saved = forward_scan(w, x, LSTMState(h0, c0), valid, **knobs)
    else:  # keep only each chunk's starting cell state (its h is in hs)
        chunks = time_chunks(x.shape[0], chunk)

        def one_chunk(carry: LSTMState, inputs: tuple) -> tuple[LSTMState, tuple]:
            hs_k, final, _ = forward_scan(w, inputs[0], carry, inputs[1], **knobs)
            return final, (hs_k, carry.c)

        valid_k = split_valid(valid, chunks, x.shape[1])
        final, (hs, saved) = lax.scan(
            one_chunk, LSTMState(h0, c0), (split_time(x, chunks), valid_k)
        )
        hs = merge_time(hs, chunks)
    return (hs, final.h, final.c), (w, x, h0, c0, valid, hs, saved)


def _handwritten_bwd(unroll, hoisted, chunk, recompute, residuals, cotangents):
    """Chunk by chunk from the end: (recompute the chunk's forward,) run its reverse
    steps, then its weight gradients as one product each over its K*B rows while its
    gates' cotangents are still in cache; carry (dh, dc) and the sums."""
    w, x, h0, c0, valid, hs, saved = residuals
    d_hs, d_hn, d_cn = cotangents
    chunks = time_chunks(x.shape[0], chunk)
    valid_k = split_valid(valid, chunks, x.shape[1])
    if recompute:
        per_chunk = saved  # (number, B, H) starting cell states
    else:
        gates, cells = saved
        per_chunk = tuple(split_time(a, chunks) for a in (gates, cells, _shift_in(c0, cells)))
    in_chunks = tuple(split_time(a, chunks) for a in (x, d_hs, _shift_in(h0, hs)))

    def one_chunk(carry: tuple, inputs: tuple) -> tuple[tuple, Array]:
        d_state, sums = carry
        (x_k, d_hs_k, h_prev_k), valid_k, extra = inputs
        if recompute:
            start = LSTMState(h_prev_k[0], extra)
            _, _, res_k = forward_scan(w, x_k, start, valid_k, unroll=unroll, hoisted=hoisted)
            c_prev_k = _shift_in(extra, res_k.cells)
        else:
            res_k, c_prev_k = Residuals(*extra[:2]), extra[2]
        d_state, d_z, d_h = _backward_steps(w, d_state, d_hs_k, res_k, c_prev_k, valid_k, unroll)
        grads = weight_gradients(w, d_z, x_k, h_prev_k, d_h, res_k.gates, res_k.cells)
        sums = jax.tree.map(jnp.add, sums, grads)
        return (d_state, sums), d_z @ w.w_ih_t.T

    zeros = jax.tree.map(jnp.zeros_like, w)
    (d_state0, d_w), d_x = lax.scan(
        one_chunk, (LSTMState(d_hn, d_cn), zeros), (in_chunks, valid_k, per_chunk), reverse=True
    )
    return d_w, merge_time(d_x, chunks), d_state0.h, d_state0.c, None


_handwritten.defvjp(_handwritten_fwd, _handwritten_bwd)


def scan_layer(
    w: Any,
    x: Array,
    state: Any,
    valid: Array | None,
    *,
    unroll: int = 1,
    impl: str = "custom_vjp",
    remat: int = 0,
    backward_rows: int = BACKWARD_ROWS,
    kind: Kind = kinds.LSTM,
) -> tuple[Array, Any]:
    """The scan, differentiated by JAX (``impl="scan"``) or by hand (``"custom_vjp"``,
    ``"hoisted"``), the hand-written one rematerializing in chunks of ``remat`` steps.
    A kind without a hand-written derivative (GRU, RNN) runs ``"hoisted"`` as the
    hoisted scan differentiated by JAX (its remat: :mod:`lstm_jax.core.remat`).

    Arguments:
        backward_rows: rows (steps x batch) per chunk of the hand-written backward
            without remat (a measured speed knob, see :data:`BACKWARD_ROWS`).

    Returns:
        the carried h of every step (T, B, H_out) and the final state.
    """
    if impl == "scan" or (impl == "hoisted" and not kind.handwritten):
        hoisted = impl == "hoisted"
        hs, final, _ = forward_scan(w, x, state, valid, unroll=unroll, hoisted=hoisted, kind=kind)
        return hs, final
    if impl not in ("custom_vjp", "hoisted") or not kind.handwritten:
        expected = ("scan", "custom_vjp", "hoisted") if kind.handwritten else ("scan", "hoisted")
        raise ValueError(f"scan_layer: expected impl in {expected} for {kind.name}, got {impl!r}")
    chunk = remat or backward_chunk_steps(x.shape[0], x.shape[1], backward_rows)
    hs, h_n, c_n = _handwritten(
        unroll, impl == "hoisted", chunk, remat > 0, w, x, state.h, state.c, valid
    )
    return hs, LSTMState(h_n, c_n)
