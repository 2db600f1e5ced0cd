"""The stack's layers as a wavefront, a bidirectional layer's two directions as one scan
(``impl="wavefront"``; the knobs are explained in :mod:`lstm_jax.core.recurrence`).

The per-layer schedule runs an L-layer stack over T steps as L*T dependent steps
(2*L*T with both directions). Here:

- **Unidirectional stack, a wavefront.** At wave step s layer l advances its own step
  t = s - l, reading layer l-1's h of the wave step before (its step t): T + L - 1
  sequential steps, each one :func:`~lstm_jax.core.cell.lstm_cell` per layer, the
  layers above the first batched into one product (``vmap`` over their stacked
  weights; the first layer's input width differs, so it is its own product).
- **Bidirectional stack, fused directions.** Layer l + 1 at step t needs the reverse
  direction of layer l at step t, which that direction computes last; so layers cannot
  be skewed. Each layer instead runs both directions in one scan (the reverse one on
  the time-reversed input, ragged rows reversed in place): T steps per layer, the two
  cells batched: L*T sequential steps instead of 2*L*T.

Both are one "group" of G cells scanned together: each cell's state is a row of the
carry (G, B, ·); a step is valid for a cell where its own t lies in [0, T) and before
the row's length; an invalid step passes the state through unchanged, as in
:mod:`lstm_jax.core.scan`.

The backward pass is written by hand (a ``jax.custom_vjp``): the reverse wavefront
carries (dh, dc) per cell and, in the chained (wavefront) case, the cotangent of each
cell's input for the cell below, which consumes it one reverse step later; the
weights' gradients are one product per cell per chunk of steps
(:func:`~lstm_jax.core.cell.weight_gradients`). ``remat=K`` keeps only each chunk's
starting state and recomputes the chunk's forward during the backward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lstm_jax.common.config import LSTMConfig
from lstm_jax.core.cell import StepWeights, cell_backward, lstm_cell, step_weights
from lstm_jax.core.cell import weight_gradients as cell_weight_gradients
from lstm_jax.core.scan import backward_chunk_steps
from lstm_jax.core.sequences import dropout, reverse_padded
from lstm_jax.core.state import LSTMState, cell_params
from lstm_jax.core.time_chunks import TimeChunks, merge_time, shift_in, split_time, time_chunks

Array = jax.Array


@functools.partial(jax.tree_util.register_dataclass, data_fields=["cells"], meta_fields=["chained"])
@dataclass(frozen=True)
class Group:
    """The G cells scanned together (a pytree of the weights; ``chained`` is static).

    Attributes:
        cells: each cell's weights.
        chained: a wavefront: cell 0 reads the external input, cell g > 0 reads cell
            g-1's h of the wave step before (dropout applied); else each cell reads its
            own external input.
    """

    cells: tuple[StepWeights, ...]
    chained: bool


class Saved(NamedTuple):
    """What the forward keeps per wave step and cell for the backward pass."""

    gates: tuple[Array, ...]  # (S, B, 4H) each: activated gates
    cells: tuple[Array, ...]  # (S, B, H) each: carried cell states after each step


States = tuple[LSTMState, ...]  # one (h (B, H_out), c (B, H)) per cell


def _keep_where_invalid(valid: Array, new: LSTMState, old: LSTMState) -> LSTMState:
    return LSTMState(jnp.where(valid, new.h, old.h), jnp.where(valid, new.c, old.c))


def _cell_input(
    group: Group, g: int, xs: Array | tuple[Array, ...], h: tuple[Array, ...], masks: tuple | None
) -> Array:
    """Cell g's input: the external one, or (chained, g > 0) cell g-1's h times its
    dropout scale. Works per step ((B, ·) arrays) and per chunk ((K, B, ·))."""
    if not group.chained:
        return xs[g]
    if g == 0:
        return xs  # type: ignore[return-value]
    return h[g - 1] if masks is None else h[g - 1] * masks[g - 1]


def forward(
    group: Group,
    xs: Array | tuple[Array, ...],
    state: States,
    valid: tuple[Array, ...],
    masks: tuple[Array, ...] | None,
    unroll: int,
) -> tuple[tuple[Array, ...], States, Saved]:
    """The wave scan over S steps.

    Arguments:
        xs: (S, B, I) chained; else one (S, B, I) per cell.
        state: one ((B, H_out), (B, H)) per cell.
        valid: per cell (S, B or 1, 1) bool, whether its step is real at each wave step.
        masks: chained with dropout: per cell 1..G-1 (S, B, H_out) scales of its input.

    Returns:
        per cell the carried h of every wave step (S, B, H_out), the final states and
        the residuals.
    """

    def step(carry: States, inputs: tuple) -> tuple[States, tuple]:
        x_s, valid_s, masks_s = inputs
        h = tuple(s.h for s in carry)
        new, gates = [], []
        for g, w in enumerate(group.cells):
            state_g, gates_g = lstm_cell(w, carry[g], _cell_input(group, g, x_s, h, masks_s))
            new.append(_keep_where_invalid(valid_s[g], state_g, carry[g]))
            gates.append(gates_g)
        saved = Saved(tuple(gates), tuple(s.c for s in new))
        return tuple(new), (tuple(s.h for s in new), saved)

    final, (hs, saved) = lax.scan(step, state, (xs, valid, masks), unroll=unroll)
    return hs, final, saved


def _input_cotangent(w: StepWeights, d_z: Array) -> Array:
    """(…, 4H) -> (…, I): the cotangent of a cell's input, ``d_z @ W_ih``."""
    return d_z @ w.w_ih_t.T


def _backward_steps(
    group: Group,
    carry: tuple[States, tuple[Array, ...]],
    d_hs: tuple[Array, ...],
    saved: Saved,
    c_prev: tuple[Array, ...],
    valid: tuple[Array, ...],
    masks: tuple[Array, ...] | None,
    unroll: int,
) -> tuple[tuple[States, tuple[Array, ...]], tuple[Array, ...], tuple[Array, ...]]:
    """The reverse wave over K steps. The carry is (dh, dc) per cell and, chained, the
    cotangents of cells 0..G-2's h from cells 1..G-1's inputs at the next wave step.

    Returns:
        the carry before the first step, per cell d_z (K, B, 4H) and the cotangents of
        its h (K, B, H_out), zero at invalid steps."""

    def step(carry: tuple, inputs: tuple) -> tuple[tuple, tuple]:
        d_state, d_feed = carry
        d_y, gates, c, c_before, valid_s, masks_s = inputs
        d_prev, d_zs, d_hs_out, d_feed_new = [], [], [], []
        zero = jnp.zeros((), d_y[0].dtype)
        for g, w in enumerate(group.cells):
            d_h = d_state[g].h + d_y[g]
            if g < len(d_feed):
                d_h = d_h + d_feed[g]
            d_next = LSTMState(d_h, d_state[g].c)
            d_prev_g, d_z = cell_backward(w, d_next, gates[g], c[g], c_before[g])
            d_z = jnp.where(valid_s[g], d_z, zero)
            if group.chained and g > 0:
                # the input's and the state's cotangents as ONE product d_z @ w_cat^T; the
                # cell's own d_z @ w_hh_t^T is then unused and compiled away
                d_both = d_z @ w.w_cat.T
                d_in, d_h_prev = d_both[:, : w.input_size], d_both[:, w.input_size :]
                d_prev_g = LSTMState(d_h_prev, d_prev_g.c)
                d_feed_new.append(d_in if masks_s is None else d_in * masks_s[g - 1])
            d_prev.append(_keep_where_invalid(valid_s[g], d_prev_g, d_next))
            d_zs.append(d_z)
            d_hs_out.append(jnp.where(valid_s[g], d_h, zero))
        return (tuple(d_prev), tuple(d_feed_new)), (tuple(d_zs), tuple(d_hs_out))

    inputs = (d_hs, saved.gates, saved.cells, c_prev, valid, masks)
    carry, (d_z, d_h) = lax.scan(step, carry, inputs, reverse=True, unroll=unroll)
    return carry, d_z, d_h


def _split(a: object, chunks: TimeChunks) -> object:
    """:func:`split_time` of every array in a pytree (None stays None)."""
    return jax.tree.map(lambda leaf: split_time(leaf, chunks), a)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _wave(unroll, chunk, recompute, group, xs, masks, valid, h0, c0):
    state = tuple(LSTMState(h, c) for h, c in zip(h0, c0, strict=True))
    hs, final, _ = forward(group, xs, state, valid, masks, unroll)
    return hs, tuple(s.h for s in final), tuple(s.c for s in final)


def _wave_fwd(unroll, chunk, recompute, group, xs, masks, valid, h0, c0):
    state = tuple(LSTMState(h, c) for h, c in zip(h0, c0, strict=True))
    if not recompute:
        hs, final, saved = forward(group, xs, state, valid, masks, unroll)
    else:  # keep only each chunk's starting cell states (their h are in hs)
        chunks = time_chunks(jax.tree.leaves(xs)[0].shape[0], chunk)

        def one_chunk(carry: States, inputs: Any) -> tuple[States, tuple]:
            xs_k, valid_k, masks_k = inputs
            hs_k, final, _ = forward(group, xs_k, carry, valid_k, masks_k, unroll)
            return final, (hs_k, tuple(s.c for s in carry))

        final, (hs, saved) = lax.scan(one_chunk, state, _split((xs, valid, masks), chunks))
        hs = jax.tree.map(lambda a: merge_time(a, chunks), hs)
    h_n, c_n = tuple(s.h for s in final), tuple(s.c for s in final)
    return (hs, h_n, c_n), (group, xs, masks, valid, h0, c0, hs, saved)


def _weight_gradients(
    group: Group,
    xs: Any,
    h_prev: tuple,
    masks: tuple | None,
    d_z: tuple,
    d_h: tuple,
    saved: Saved,
) -> Group:
    """Each cell's weight gradients over K wave steps: one product per weight and cell."""
    grads = tuple(
        cell_weight_gradients(
            w,
            d_z[g],
            _cell_input(group, g, xs, h_prev, masks),
            h_prev[g],
            d_h[g],
            saved.gates[g],
            saved.cells[g],
        )
        for g, w in enumerate(group.cells)
    )
    return Group(grads, group.chained)


def _wave_bwd(unroll, chunk, recompute, residuals, cotangents):
    """Chunk by chunk from the end: (recompute the chunk's forward,) its reverse wave
    steps, then its weight gradients, one product per cell; carry the state cotangents,
    the chained cells' input cotangents and the sums."""
    group, xs, masks, valid, h0, c0, hs, saved = residuals
    d_hs, d_hn, d_cn = cotangents
    chunks = time_chunks(hs[0].shape[0], chunk)
    h_prev = tuple(shift_in(h, seq) for h, seq in zip(h0, hs, strict=True))
    if recompute:
        per_chunk = saved  # per cell (count, B, H) starting cell states
    else:
        c_prev = tuple(shift_in(c, seq) for c, seq in zip(c0, saved.cells, strict=True))
        per_chunk = _split((saved, c_prev), chunks)
    in_chunks = _split((xs, d_hs, h_prev, valid, masks), chunks)

    def one_chunk(carry: tuple, inputs: tuple) -> tuple[tuple, object]:
        wave_carry, sums = carry
        (xs_k, d_hs_k, h_prev_k, valid_k, masks_k), extra = inputs
        if recompute:
            start = tuple(LSTMState(h[0], c) for h, c in zip(h_prev_k, extra, strict=True))
            _, _, saved_k = forward(group, xs_k, start, valid_k, masks_k, unroll)
            c_prev_k = tuple(shift_in(c, seq) for c, seq in zip(extra, saved_k.cells, strict=True))
        else:
            saved_k, c_prev_k = extra
        wave_carry, d_z, d_h = _backward_steps(
            group, wave_carry, d_hs_k, saved_k, c_prev_k, valid_k, masks_k, unroll
        )
        grads = _weight_gradients(group, xs_k, h_prev_k, masks_k, d_z, d_h, saved_k)
        sums = jax.tree.map(jnp.add, sums, grads)
        d_xs: Array | tuple[Array, ...]
        if group.chained:
            d_xs = _input_cotangent(group.cells[0], d_z[0])
        else:
            d_xs = tuple(_input_cotangent(w, dz) for w, dz in zip(group.cells, d_z, strict=True))
        return (wave_carry, sums), d_xs

    d_feed = tuple(jnp.zeros_like(h) for h in d_hn[:-1]) if group.chained else ()
    d_state = tuple(LSTMState(h, c) for h, c in zip(d_hn, d_cn, strict=True))
    zeros = jax.tree.map(jnp.zeros_like, group)
    ((d_state0, _), d_group), d_xs = lax.scan(
        one_chunk, ((d_state, d_feed), zeros), (in_chunks, per_chunk), reverse=True
    )
    d_xs = jax.tree.map(lambda a: merge_time(a, chunks), d_xs)
    d_h0, d_c0 = tuple(s.h for s in d_state0), tuple(s.c for s in d_state0)
    return d_group, d_xs, None, None, d_h0, d_c0


_wave.defvjp(_wave_fwd, _wave_bwd)


def run_group(
    group: Group,
    xs: Array | tuple[Array, ...],
    state: States,
    valid: tuple[Array, ...],
    masks: tuple[Array, ...] | None,
    *,
    unroll: int = 1,
    remat: int = 0,
) -> tuple[tuple[Array, ...], States]:
    """The wave scan with its hand-written backward (shapes: :func:`forward`).

    Returns:
        per cell the carried h of every wave step (S, B, H_out), and the final states.
    """
    steps, batch = jax.tree.leaves(xs)[0].shape[0], state[0].h.shape[0]
    chunk = remat or backward_chunk_steps(steps, batch)
    h0, c0 = tuple(s.h for s in state), tuple(s.c for s in state)
    hs, h_n, c_n = _wave(unroll, chunk, remat > 0, group, xs, masks, valid, h0, c0)
    return hs, tuple(LSTMState(h, c) for h, c in zip(h_n, c_n, strict=True))


def _stacked_states(states: Sequence[LSTMState]) -> LSTMState:
    """Per-cell states -> (G, B, ·) ``LSTMState``."""
    return LSTMState(jnp.stack([s.h for s in states]), jnp.stack([s.c for s in states]))


def _step_valid(steps: int, offset: int, seq_lengths: Array | None, T: int) -> Array:
    """(S, B or 1, 1): a cell delayed by ``offset`` wave steps runs its step
    t = s - offset at wave step s; the step is real where 0 <= t < T and t < the row's
    length."""
    t = jnp.arange(steps)[:, None] - offset  # (S, 1)
    ok = (t >= 0) & (t < T)
    if seq_lengths is not None:
        ok = ok & (t < seq_lengths[None, :])
    return ok[..., None]


def _dropout_scales(
    rng: Array, rate: float, shape: tuple[int, ...], dtype: jnp.dtype, layers: int
) -> list[Array]:
    """The dropout of the inputs of layers 1..L-1 as multiplicative scales (0 or
    1/(1 - rate)), drawn as :func:`lstm_jax.core.stack.lstm` draws them (same keys)."""
    scales = []
    for _ in range(1, layers):
        rng, key = jax.random.split(rng)
        scales.append(dropout(key, jnp.ones(shape, dtype), rate))
    return scales


def _delayed(a: Array, offset: int, steps: int) -> Array:
    """(T, B, F) -> (S, B, F): ``a`` delayed by ``offset`` wave steps, zeros around."""
    return jnp.pad(a, ((offset, steps - offset - a.shape[0]), (0, 0), (0, 0)))


def lstm(
    params: Mapping[str, Array],
    x: Array,
    initial_state: LSTMState,
    config: LSTMConfig,
    *,
    seq_lengths: Array | None = None,
    dropout_rng: Array | None = None,
    unroll: int = 1,
    remat: int = 0,
) -> tuple[Array, LSTMState]:
    """:func:`lstm_jax.core.stack.lstm` as a wavefront (unidirectional stacks) or with
    fused directions (bidirectional ones); same arguments, same results.

    Arguments:
        x: (T, B, I), already zero in the padding.
        initial_state: (D*L, B, H_out), (D*L, B, H).
        seq_lengths: (B,) or None.

    Returns:
        output (T, B, D*H_out) (zeros past each row's length) and the final
        ``LSTMState`` (D*L, B, ·), ordered ``layer * D + direction``.
    """
    T, B, _ = x.shape
    L, D = config.num_layers, config.num_directions
    use_dropout = dropout_rng is not None and config.dropout > 0 and L > 1
    valid_t = None if seq_lengths is None else _step_valid(T, 0, seq_lengths, T)
    states = [LSTMState(h, c) for h, c in zip(initial_state.h, initial_state.c, strict=True)]
    if D == 1:
        cells = tuple(step_weights(cell_params(params, layer, 0)) for layer in range(L))
        steps = T + L - 1
        masks = None
        if use_dropout and dropout_rng is not None:
            shape = (T, B, cells[0].hidden_out)
            scales = _dropout_scales(dropout_rng, config.dropout, shape, x.dtype, L)
            masks = tuple(_delayed(m, layer, steps) for layer, m in enumerate(scales, start=1))
        valid = tuple(_step_valid(steps, layer, seq_lengths, T) for layer in range(L))
        xs = _delayed(x, 0, steps)
        hs, final = run_group(
            Group(cells, chained=True), xs, tuple(states), valid, masks, unroll=unroll, remat=remat
        )
        out = hs[-1][L - 1 :]
        out = out if valid_t is None else jnp.where(valid_t, out, 0)
        return out, _stacked_states(final)

    finals: list[LSTMState] = []
    layer_input = x
    valid = (_step_valid(T, 0, seq_lengths, T),) * 2
    for layer in range(L):
        if layer > 0 and use_dropout and dropout_rng is not None:
            dropout_rng, key = jax.random.split(dropout_rng)
            layer_input = dropout(key, layer_input, config.dropout)
        cells = tuple(step_weights(cell_params(params, layer, d)) for d in (0, 1))
        streams = (layer_input, reverse_padded(layer_input, seq_lengths))
        state = tuple(states[2 * layer : 2 * layer + 2])
        hs, final = run_group(
            Group(cells, chained=False), streams, state, valid, None, unroll=unroll, remat=remat
        )
        out = jnp.concatenate([hs[0], reverse_padded(hs[1], seq_lengths)], axis=-1)
        layer_input = out if valid_t is None else jnp.where(valid_t, out, 0)
        finals.extend(final)
    return layer_input, LSTMState(
        jnp.stack([s.h for s in finals]), jnp.stack([s.c for s in finals])
    )
