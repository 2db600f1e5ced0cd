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
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lstm_jax.common.config import LSTMConfig
from lstm_jax.core.cell import StepWeights, cell_backward, lstm_cell, step_weights
from lstm_jax.core.cell import weight_gradients as cell_weight_gradients
from lstm_jax.core.scan import backward_chunk_steps
from lstm_jax.core.stack import cell_params, dropout, reverse_padded
from lstm_jax.core.state import LSTMState
from lstm_jax.core.time_chunks import merge_time, split_time, time_chunks

Array = jax.Array


class Group(NamedTuple):
    """The G cells scanned together.

    Attributes:
        first: the weights of cell 0 when the group is chained (a wavefront: cell 0 reads
            the external input, cell g > 0 reads cell g-1's h), else None.
        rest: the other cells' weights stacked on a leading axis (G-1 chained, G not);
            None for a chain of one cell.
    """

    first: StepWeights | None
    rest: StepWeights | None

    @property
    def chained(self) -> bool:
        return self.first is not None


class Saved(NamedTuple):
    """What the forward keeps per wave step for the backward pass."""

    gates: Array  # (S, G, B, 4H)
    cells: Array  # (S, G, B, H) carried cell states after each step


def _split_state(state: LSTMState) -> tuple[LSTMState, LSTMState]:
    return LSTMState(state.h[0], state.c[0]), LSTMState(state.h[1:], state.c[1:])


def _join(first: Array, rest: Array | None) -> Array:
    return first[None] if rest is None else jnp.concatenate([first[None], rest], axis=0)


def _keep_where_invalid(valid_s: Array, new: LSTMState, old: LSTMState) -> LSTMState:
    return LSTMState(jnp.where(valid_s, new.h, old.h), jnp.where(valid_s, new.c, old.c))


def _feed(h: Array, mask_s: Array | None) -> Array:
    """The chained cells' inputs: cells 0..G-2's h (G-1, B, H_out), dropout applied."""
    return h[:-1] if mask_s is None else h[:-1] * mask_s


def _advance(
    group: Group, state: LSTMState, x_s: Array, mask_s: Array | None
) -> tuple[LSTMState, Array]:
    """One wave step of every cell: state (G, B, ·) -> new state, gates (G, B, 4H).

    ``x_s``: (B, I) the first cell's input when chained, else (G, B, I) one per cell."""
    if not group.chained:
        return jax.vmap(lstm_cell)(group.rest, state, x_s)
    first_state, rest_state = _split_state(state)
    first, first_gates = lstm_cell(group.first, first_state, x_s)
    if group.rest is None:
        return LSTMState(first.h[None], first.c[None]), first_gates[None]
    rest, rest_gates = jax.vmap(lstm_cell)(group.rest, rest_state, _feed(state.h, mask_s))
    new = LSTMState(_join(first.h, rest.h), _join(first.c, rest.c))
    return new, _join(first_gates, rest_gates)


def forward(
    group: Group,
    xs: Array,
    state: LSTMState,
    valid: Array,
    masks: Array | None,
    unroll: int,
) -> tuple[Array, LSTMState, Saved]:
    """The wave scan.

    Arguments:
        xs: (S, B, I) chained, (S, G, B, I) not.
        state: (G, B, H_out), (G, B, H).
        valid: (S, G, B or 1, 1) bool, whether each cell's step is real.
        masks: (S, G-1, B, H_out) dropout scales of the chained cells' inputs, or None.

    Returns:
        the carried h of every wave step (S, G, B, H_out), the final state, the residuals.
    """

    def step(carry: LSTMState, inputs: tuple) -> tuple[LSTMState, tuple]:
        x_s, valid_s, mask_s = inputs
        new, gates = _advance(group, carry, x_s, mask_s)
        new = _keep_where_invalid(valid_s, new, carry)
        return new, (new.h, Saved(gates, new.c))

    final, (hs, saved) = lax.scan(step, state, (xs, valid, masks), unroll=unroll)
    return hs, final, saved


def _retreat(
    group: Group, d_next: LSTMState, gates: Array, c: Array, c_prev: Array
) -> tuple[LSTMState, Array]:
    """:func:`cell_backward` of every cell of a wave step (all (G, B, ·))."""
    if not group.chained:
        return jax.vmap(cell_backward)(group.rest, d_next, gates, c, c_prev)
    d_first, z_first = cell_backward(
        group.first, LSTMState(d_next.h[0], d_next.c[0]), gates[0], c[0], c_prev[0]
    )
    if group.rest is None:
        return LSTMState(d_first.h[None], d_first.c[None]), z_first[None]
    d_rest, z_rest = jax.vmap(cell_backward)(
        group.rest, LSTMState(d_next.h[1:], d_next.c[1:]), gates[1:], c[1:], c_prev[1:]
    )
    return LSTMState(_join(d_first.h, d_rest.h), _join(d_first.c, d_rest.c)), _join(z_first, z_rest)


def _input_cotangent(w: StepWeights, d_z: Array) -> Array:
    """(…, 4H) -> (…, I): the cotangent of a cell's input, ``d_z @ W_ih``."""
    return d_z @ w.w_ih_t.T


def _backward_steps(
    group: Group,
    carry: tuple[LSTMState, Array | None],
    d_hs: Array,
    saved: Saved,
    c_prev: Array,
    valid: Array,
    masks: Array | None,
    unroll: int,
) -> tuple[tuple[LSTMState, Array | None], Array, Array]:
    """The reverse wave over K steps. The carry is (dh, dc) per cell and, chained, the
    cotangent of cells 0..G-2's h from the next step's inputs of cells 1..G-1.

    Returns:
        the carry before the first step, d_z (K, G, B, 4H) and the cotangents of each
        cell's h (K, G, B, H_out), zero at invalid steps."""

    def step(carry: tuple, inputs: tuple) -> tuple[tuple, tuple]:
        d_state, d_feed = carry
        d_y, gates, c, c_before, valid_s, mask_s = inputs
        d_h = d_state.h + d_y
        if d_feed is not None:
            d_h = d_h.at[:-1].add(d_feed)
        d_next = LSTMState(d_h, d_state.c)
        d_prev, d_z = _retreat(group, d_next, gates, c, c_before)
        zero = jnp.zeros((), d_z.dtype)
        d_z = jnp.where(valid_s, d_z, zero)
        d_prev = _keep_where_invalid(valid_s, d_prev, d_next)
        if d_feed is not None:
            d_feed = jax.vmap(_input_cotangent)(group.rest, d_z[1:])
            d_feed = d_feed if mask_s is None else d_feed * mask_s
        return (d_prev, d_feed), (d_z, jnp.where(valid_s, d_h, zero))

    inputs = (d_hs, saved.gates, saved.cells, c_prev, valid, masks)
    carry, (d_z, d_h) = lax.scan(step, carry, inputs, reverse=True, unroll=unroll)
    return carry, d_z, d_h


def _shift_in(first: Array, seq: Array) -> Array:
    """(G, B, ·) and (K, G, B, ·) -> (K, G, B, ·): the states each step started from."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def _weight_gradients(
    group: Group,
    xs: Array,
    h_prev: Array,
    masks: Array | None,
    d_z: Array,
    d_h: Array,
    saved: Saved,
) -> Group:
    """Each cell's weight gradients over K wave steps (one product per cell)."""
    by_cell = jax.vmap(cell_weight_gradients, in_axes=(0, 1, 1, 1, 1, 1, 1))
    if not group.chained:
        return Group(None, by_cell(group.rest, d_z, xs, h_prev, d_h, saved.gates, saved.cells))
    first = cell_weight_gradients(
        group.first, d_z[:, 0], xs, h_prev[:, 0], d_h[:, 0], saved.gates[:, 0], saved.cells[:, 0]
    )
    if group.rest is None:
        return Group(first, None)
    feed = jax.vmap(_feed, in_axes=(0, None if masks is None else 0))(h_prev, masks)
    rest = by_cell(
        group.rest,
        d_z[:, 1:],
        feed,
        h_prev[:, 1:],
        d_h[:, 1:],
        saved.gates[:, 1:],
        saved.cells[:, 1:],
    )
    return Group(first, rest)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _wave(unroll, chunk, recompute, group, xs, masks, valid, h0, c0):
    hs, final, _ = forward(group, xs, LSTMState(h0, c0), valid, masks, unroll)
    return hs, final.h, final.c


def _wave_fwd(unroll, chunk, recompute, group, xs, masks, valid, h0, c0):
    if not recompute:
        hs, final, saved = forward(group, xs, LSTMState(h0, c0), valid, masks, unroll)
    else:  # keep only each chunk's starting cell states (their h are in hs)
        chunks = time_chunks(xs.shape[0], chunk)

        def one_chunk(carry: LSTMState, inputs: tuple) -> tuple[LSTMState, tuple]:
            hs_k, final, _ = forward(group, inputs[0], carry, inputs[1], inputs[2], unroll)
            return final, (hs_k, carry.c)

        split = functools.partial(_split_or_none, chunks=chunks)
        final, (hs, saved) = lax.scan(
            one_chunk, LSTMState(h0, c0), (split(xs), split(valid), split(masks))
        )
        hs = merge_time(hs, chunks)
    return (hs, final.h, final.c), (group, xs, masks, valid, h0, c0, hs, saved)


def _split_or_none(a: Array | None, chunks: object) -> Array | None:
    return None if a is None else split_time(a, chunks)  # type: ignore[arg-type]


def _wave_bwd(unroll, chunk, recompute, residuals, cotangents):
    """Chunk by chunk from the end: (recompute the chunk's forward,) its reverse wave
    steps, then its weight gradients, one product per cell; carry the state cotangents,
    the chained cells' input cotangents and the sums."""
    group, xs, masks, valid, h0, c0, hs, saved = residuals
    d_hs, d_hn, d_cn = cotangents
    chunks = time_chunks(xs.shape[0], chunk)
    split = functools.partial(_split_or_none, chunks=chunks)
    if recompute:
        per_chunk = saved  # (count, G, B, H) starting cell states
    else:
        per_chunk = (split(saved.gates), split(saved.cells), split(_shift_in(c0, saved.cells)))
    in_chunks = (split(xs), split(d_hs), split(_shift_in(h0, hs)), split(valid), split(masks))

    def one_chunk(carry: tuple, inputs: tuple) -> tuple[tuple, Array]:
        wave_carry, sums = carry
        (xs_k, d_hs_k, h_prev_k, valid_k, masks_k), extra = inputs
        if recompute:
            start = LSTMState(h_prev_k[0], extra)
            _, _, saved_k = forward(group, xs_k, start, valid_k, masks_k, unroll)
            c_prev_k = _shift_in(extra, saved_k.cells)
        else:
            saved_k, c_prev_k = Saved(*extra[:2]), extra[2]
        wave_carry, d_z, d_h = _backward_steps(
            group, wave_carry, d_hs_k, saved_k, c_prev_k, valid_k, masks_k, unroll
        )
        grads = _weight_gradients(group, xs_k, h_prev_k, masks_k, d_z, d_h, saved_k)
        sums = jax.tree.map(jnp.add, sums, grads)
        if group.chained:
            d_xs = _input_cotangent(group.first, d_z[:, 0])
        else:
            d_xs = jax.vmap(_input_cotangent, in_axes=(0, 1), out_axes=1)(group.rest, d_z)
        return (wave_carry, sums), d_xs

    d_feed = None
    if group.chained and group.rest is not None:
        d_feed = jnp.zeros_like(d_hn[:-1])
    zeros = jax.tree.map(jnp.zeros_like, group)
    start = ((LSTMState(d_hn, d_cn), d_feed), zeros)
    ((d_state0, _), d_group), d_xs = lax.scan(
        one_chunk, start, (in_chunks, per_chunk), reverse=True
    )
    return d_group, merge_time(d_xs, chunks), None, None, d_state0.h, d_state0.c


_wave.defvjp(_wave_fwd, _wave_bwd)


def run_group(
    group: Group,
    xs: Array,
    state: LSTMState,
    valid: Array,
    masks: Array | None,
    *,
    unroll: int = 1,
    remat: int = 0,
) -> tuple[Array, LSTMState]:
    """The wave scan with its hand-written backward (shapes: :func:`forward`).

    Returns:
        the carried h of every wave step (S, G, B, H_out) and the final state (G, B, ·).
    """
    batch = state.h.shape[1] * state.h.shape[0]
    chunk = remat or backward_chunk_steps(xs.shape[0], batch)
    hs, h_n, c_n = _wave(unroll, chunk, remat > 0, group, xs, masks, valid, state.h, state.c)
    return hs, LSTMState(h_n, c_n)


def _stacked(weights: list[StepWeights]) -> StepWeights | None:
    if not weights:
        return None
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *weights)


def _step_valid(steps: int, offsets: Array, seq_lengths: Array | None, T: int) -> Array:
    """(S, G, B or 1, 1): cell g's step at wave step s is t = s - offsets[g]; it is real
    where 0 <= t < T and t < the row's length."""
    t = jnp.arange(steps)[:, None] - offsets[None, :]  # (S, G)
    ok = ((t >= 0) & (t < T))[..., None]  # (S, G, 1)
    if seq_lengths is not None:
        ok = ok & (t[..., None] < seq_lengths[None, None, :])
    return ok[..., None]


def _skewed(per_layer: list[Array], steps: int) -> Array:
    """Layer l's (T, B, F) delayed by l wave steps: (S, L', B, F) for layers 1..L-1."""
    rows = []
    for layer, a in enumerate(per_layer, start=1):
        after = steps - layer - a.shape[0]
        rows.append(jnp.pad(a, ((layer, after), (0, 0), (0, 0))))
    return jnp.stack(rows, axis=1)


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
    L = config.num_layers
    use_dropout = dropout_rng is not None and config.dropout > 0 and L > 1
    valid_t = None if seq_lengths is None else (jnp.arange(T)[:, None] < seq_lengths)[..., None]
    if config.num_directions == 1:
        weights = [step_weights(cell_params(params, layer, 0)) for layer in range(L)]
        steps = T + L - 1
        masks = None
        if use_dropout:
            hidden_out = weights[0].hidden_out
            scales = _dropout_scales(dropout_rng, config.dropout, (T, B, hidden_out), x.dtype, L)
            masks = _skewed(scales, steps)
        xs = jnp.pad(x, ((0, L - 1), (0, 0), (0, 0)))
        valid = _step_valid(steps, jnp.arange(L), seq_lengths, T)
        group = Group(weights[0], _stacked(weights[1:]))
        hs, final = run_group(group, xs, initial_state, valid, masks, unroll=unroll, remat=remat)
        out = hs[L - 1 :, L - 1]
        return (out if valid_t is None else jnp.where(valid_t, out, 0)), final

    h_n, c_n, layer_input = [], [], x
    valid = _step_valid(T, jnp.zeros(2, int), seq_lengths, T)
    for layer in range(L):
        if layer > 0 and use_dropout:
            dropout_rng, key = jax.random.split(dropout_rng)
            layer_input = dropout(key, layer_input, config.dropout)
        xs = jnp.stack([layer_input, reverse_padded(layer_input, seq_lengths)], axis=1)
        group = Group(None, _stacked([step_weights(cell_params(params, layer, d)) for d in (0, 1)]))
        rows = slice(2 * layer, 2 * layer + 2)
        state = LSTMState(initial_state.h[rows], initial_state.c[rows])
        hs, final = run_group(group, xs, state, valid, None, unroll=unroll, remat=remat)
        out = jnp.concatenate([hs[:, 0], reverse_padded(hs[:, 1], seq_lengths)], axis=-1)
        layer_input = out if valid_t is None else jnp.where(valid_t, out, 0)
        h_n.append(final.h)
        c_n.append(final.c)
    return layer_input, LSTMState(jnp.concatenate(h_n), jnp.concatenate(c_n))
