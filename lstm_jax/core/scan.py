"""One layer-direction over time: the scan of a kind's step (:mod:`lstm_jax.core.kinds`)
and its hand-written backward pass (a ``jax.custom_vjp`` over the kind's
:class:`~lstm_jax.core.kinds.Derivative`), one driver for the four kinds.

The ``impl`` values these serve (``"scan"``, ``"custom_vjp"``, ``"hoisted"``) are
explained in :mod:`lstm_jax.core.recurrence`.

Shapes: ``x`` (T, B, I), state: the kind's (the LSTM's ((B, H_out), (B, H)), else h
(B, H)), ``valid`` (T, B, 1) bool or None (all steps valid). At a masked step the state
passes through unchanged.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from lstm_jax.core import kinds
from lstm_jax.core.cell import Residuals as Residuals  # its home; here since 0.2.0
from lstm_jax.core.kinds import Kind
from lstm_jax.core.time_chunks import TimeChunks, merge_time, split_time, split_valid, time_chunks

Array = jax.Array

# The LSTM's rows per chunk of the hand-written backward (each kind's: Kind.backward_rows).
BACKWARD_ROWS = kinds.LSTM.backward_rows


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
        zeros), the final state and the steps' stacked residuals, what the kind's
        derivative reads (the LSTM's :class:`~lstm_jax.core.cell.Residuals`, the GRU's
        :class:`~lstm_jax.core.gru_cell.GRUResiduals`, the RNN's h').
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
    kind: Kind,
    w: Any,
    d_state: Any,
    d_hs: Array,
    residuals: Any,
    before: Any,
    valid: Array | None,
    unroll: int,
) -> tuple[Any, Any, Array]:
    """The reverse scan of ``kind``'s step derivative over K steps: only the state's
    cotangent is carried.

    Arguments:
        d_state: the cotangent of the state after the last step.
        d_hs: (K, B, H_out) the cotangents of the steps' outputs.
        residuals, before: the steps' residuals and the states they started from.

    Returns:
        the cotangent of the state before the first step, the pre-activations'
        cotangents (the kind's form, zero at masked steps) and the cotangents of each
        step's h (K, B, H_out) (zero at masked steps).
    """

    def step(carry: Any, inputs: tuple) -> tuple[Any, tuple]:
        d_y, residual, before_t, valid_t = inputs
        d_next = kind.add_to_output(carry, d_y)
        d_prev, d_pre = kind.derivative.step(w, d_next, residual, before_t)
        d_h = kind.output(d_next)
        if valid_t is not None:  # a masked step passed its state through unchanged
            zero = jnp.zeros((), d_h.dtype)
            d_pre = kinds.state_map(lambda a: jnp.where(valid_t, a, zero), d_pre)
            d_prev = _keep_where_masked(valid_t, d_prev, d_next)
            d_h = jnp.where(valid_t, d_h, zero)
        return d_prev, (d_pre, d_h)

    inputs = (d_hs, residuals, before, valid)
    d_state, (d_pre, d_h) = lax.scan(step, d_state, inputs, reverse=True, unroll=unroll)
    return d_state, d_pre, d_h


def _split_time(tree: Any, chunks: TimeChunks) -> Any:
    """:func:`split_time` of every array in ``tree``."""
    return jax.tree.map(lambda a: split_time(a, chunks), tree)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _handwritten(kind, unroll, hoisted, chunk, recompute, w, x, state, valid):
    hs, final, _ = forward_scan(w, x, state, valid, unroll=unroll, hoisted=hoisted, kind=kind)
    return hs, final


def _handwritten_fwd(kind, unroll, hoisted, chunk, recompute, w, x, state, valid):
    knobs = {"unroll": unroll, "hoisted": hoisted, "kind": kind}
    if not recompute:
        hs, final, saved = forward_scan(w, x, state, valid, **knobs)
    else:  # keep only each chunk's starting state

        def one_chunk(carry: Any, inputs: tuple) -> tuple[Any, tuple]:
            hs_k, final, _ = forward_scan(w, inputs[0], carry, inputs[1], **knobs)
            return final, (hs_k, carry)

        chunks = time_chunks(x.shape[0], chunk)
        valid_k = split_valid(valid, chunks, x.shape[1])
        final, (hs, saved) = lax.scan(one_chunk, state, (split_time(x, chunks), valid_k))
        hs = merge_time(hs, chunks)
    return (hs, final), (w, x, state, valid, hs, saved)


def _handwritten_bwd(kind, unroll, hoisted, chunk, recompute, residuals, cotangents):
    """Chunk by chunk from the end: (recompute the chunk's forward,) run its reverse
    steps, then its weight gradients as one product each over its K*B rows while its
    pre-activations' cotangents are still in cache; carry the state's cotangent and the
    sums."""
    w, x, state, valid, hs, saved = residuals
    d_hs, d_final = cotangents
    derivative = kind.derivative
    chunks = time_chunks(x.shape[0], chunk)
    valid_k = split_valid(valid, chunks, x.shape[1])
    if recompute:
        per_chunk = saved  # (number, ...) each chunk's starting state
    else:
        per_chunk = _split_time((saved, derivative.states_before(state, hs, saved)), chunks)

    def one_chunk(carry: tuple, inputs: tuple) -> tuple[tuple, Array]:
        d_state, sums = carry
        (x_k, d_hs_k), valid_k, extra = inputs
        if recompute:
            hs_k, _, res_k = forward_scan(
                w, x_k, extra, valid_k, unroll=unroll, hoisted=hoisted, kind=kind
            )
            before_k = derivative.states_before(extra, hs_k, res_k)
        else:
            res_k, before_k = extra
        d_state, d_pre, d_h = _backward_steps(
            kind, w, d_state, d_hs_k, res_k, before_k, valid_k, unroll
        )
        grads = derivative.weight_gradients(w, d_pre, x_k, before_k, d_h, res_k)
        sums = jax.tree.map(jnp.add, sums, grads)
        return (d_state, sums), derivative.input_cotangent(w, d_pre)

    zeros = jax.tree.map(jnp.zeros_like, w)
    (d_state0, d_w), d_x = lax.scan(
        one_chunk,
        (d_final, zeros),
        (_split_time((x, d_hs), chunks), valid_k, per_chunk),
        reverse=True,
    )
    return d_w, merge_time(d_x, chunks), d_state0, None


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
    ``"hoisted"``: the kind's :class:`~lstm_jax.core.kinds.Derivative`), the hand-written
    one rematerializing in chunks of ``remat`` steps.

    Arguments:
        backward_rows: rows (steps x batch) per chunk of the hand-written backward
            without remat (a measured speed knob: each kind's is ``kind.backward_rows``).

    Returns:
        the carried h of every step (T, B, H_out) and the final state.
    """
    if impl == "scan":
        hs, final, _ = forward_scan(w, x, state, valid, unroll=unroll, kind=kind)
        return hs, final
    if impl not in ("custom_vjp", "hoisted"):
        expected = ("scan", "custom_vjp", "hoisted")
        raise ValueError(f"scan_layer: expected impl in {expected} for {kind.name}, got {impl!r}")
    chunk = remat or backward_chunk_steps(x.shape[0], x.shape[1], backward_rows)
    return _handwritten(kind, unroll, impl == "hoisted", chunk, remat > 0, w, x, state, valid)
