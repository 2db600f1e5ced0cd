"""The recurrence of one LSTM layer-direction, in the ways that are fast somewhere.

:func:`lstm_jax.core.lstm_layer` calls :func:`run`; the math is the one of the
core's module docstring (torch's layout, gates i, f, g, o, two biases). Four
implementations (``impl``):

- ``"scan"``: one ``lax.scan`` over time, differentiated by JAX. Each step does
  one fused matmul ``[x_t, h] @ [W_ih, W_hh]^T`` (measured faster on XLA:CPU than
  hoisting ``x @ W_ih^T`` out of the loop, see ``benchmarks/NOTES.md``). The only
  path that supports forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``, Hessians).
- ``"custom_vjp"``: the same forward, with a hand-written backward (a
  ``jax.custom_vjp``): the reverse scan only carries ``(dh, dc)`` and does one
  ``(B, 4H) @ (4H, H_out)`` product per step; the weight gradients are then ONE
  matrix product each over all T*B rows, instead of an accumulation of
  (4H, I + H_out) per step in the scan's carry. It saves the activated gates
  and the cell states (T, B, 5H) for the backward pass. Reverse mode only.
- ``"cudnn"``: ``jax.experimental.rnn`` (cuDNN's LSTM, torch's weight layout) on
  a CUDA GPU; elsewhere its reference implementation ``lstm_ref`` on the same
  packed weights (``unpack_lstm_weights``), so the packing and the call are
  exercised on any machine. float32, no projections.
- ``"auto"`` (default): ``"cudnn"`` on a CUDA GPU when it applies, else ``"custom_vjp"``.

``remat=K`` (K > 0) rematerializes: the sequence runs in chunks of K steps under
``jax.checkpoint``, so training keeps only the chunk-boundary states plus one
chunk's residuals (memory O(T/K + K) states instead of O(T)) for about one
more forward pass of compute. Results are the same with any ``impl``, ``unroll``
and ``remat`` (up to float rounding).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lstm_jax.core.state import CellParams, LSTMState

Array = jax.Array

IMPLS = ("auto", "scan", "custom_vjp", "cudnn")


def check_options(impl: object, remat: object, unroll: object, who: str = "LSTM") -> None:
    """ValueError/TypeError for an unknown ``impl`` or a bad ``remat``/``unroll``."""
    if impl not in IMPLS:
        raise ValueError(f"{who}: expected impl in {IMPLS}, got {impl!r}")
    for name, value, least in (("remat", remat, 0), ("unroll", unroll, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{who}: expected an int {name}, got {type(value).__name__}")
        if value < least:
            raise ValueError(f"{who}: expected {name} >= {least}, got {value}")


class _Carry(NamedTuple):
    h: Array
    c: Array


def _activate(z: Array) -> Array:
    """(…, 4H) pre-activations -> sigmoid, sigmoid, tanh, sigmoid of the quarters.

    ``jax.nn.sigmoid`` (1 / (1 + exp(-z))), as torch: it keeps the tiny left tail
    (sigmoid(-30) = 9e-14) that the one-pass form (1 + tanh(z / 2)) / 2 rounds to 0,
    and saturated gates' gradients come from that tail."""
    i, f, g, o = jnp.split(z, 4, axis=-1)
    sigmoid = jax.nn.sigmoid
    return jnp.concatenate([sigmoid(i), sigmoid(f), jnp.tanh(g), sigmoid(o)], axis=-1)


class _Weights(NamedTuple):
    """One layer-direction's weights as the recurrence uses them: torch's layout, the two
    biases summed (None without biases), ``w_hr`` None without projections."""

    w_ih: Array  # (4H, I)
    w_hh: Array  # (4H, H_out)
    b: Array | None  # (4H,)
    w_hr: Array | None  # (P, H)


def _forward(
    w: _Weights,
    x: Array,
    h0: Array,
    c0: Array,
    valid: Array | None,
    unroll: int,
    save: bool,
) -> tuple[Array, _Carry, tuple[Array, Array] | tuple[()]]:
    """The scan. Returns the carried h of every step (T, B, H_out) (the state kept at
    masked steps, not zeros), the final carry and, if ``save``, the residuals
    (activated gates (T, B, 4H), cell states (T, B, H))."""
    w_cat = jnp.concatenate([w.w_ih, w.w_hh], axis=1).T  # (I + H_out, 4H), once per call
    H = w.w_hh.shape[0] // 4

    def step(carry: _Carry, inputs: tuple[Array, Array | None]) -> tuple[_Carry, tuple]:
        x_t, valid_t = inputs
        z = jnp.concatenate([x_t, carry.h], axis=-1) @ w_cat
        if w.b is not None:
            z = z + w.b
        a = _activate(z)
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        c = f * carry.c + i * g
        h = o * jnp.tanh(c)
        if w.w_hr is not None:
            h = h @ w.w_hr.T
        if valid_t is not None:
            h = jnp.where(valid_t, h, carry.h)
            c = jnp.where(valid_t, c, carry.c)
        return _Carry(h, c), (h, (a, c) if save else ())

    final, (hs, residuals) = lax.scan(step, _Carry(h0, c0), (x, valid), unroll=unroll)
    return hs, final, residuals


def _backward_steps(
    w: _Weights,
    d_state: _Carry,
    d_hs: Array,
    acts: Array,
    cs: Array,
    c_prev: Array,
    valid: Array | None,
    unroll: int,
) -> tuple[_Carry, Array, Array | None]:
    """The reverse scan over some steps: only (dh, dc) is carried, one (B, 4H) @ (4H, H_out)
    product per step. Returns the cotangent of the state before the first step, the
    gates' cotangents dz (K, B, 4H) and, with projections, the projected h's (K, B, P)."""
    H = w.w_hh.shape[0] // 4

    def step(carry: _Carry, inputs: tuple) -> tuple[_Carry, tuple]:
        d_y, a, c, c_before, valid_t = inputs
        d_h = carry.h + d_y  # (B, H_out)
        d_hu = d_h if w.w_hr is None else d_h @ w.w_hr  # (B, H)
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        tanh_c = jnp.tanh(c)
        d_c = carry.c + d_hu * o * (1 - tanh_c * tanh_c)
        d_z = jnp.concatenate(
            [
                d_c * g * i * (1 - i),
                d_c * c_before * f * (1 - f),
                d_c * i * (1 - g * g),
                d_hu * tanh_c * o * (1 - o),
            ],
            axis=-1,
        )
        d_h_prev = d_z @ w.w_hh
        d_c_prev = d_c * f
        if valid_t is not None:  # a masked step passed its state through unchanged
            zero = jnp.zeros((), d_z.dtype)
            d_z = jnp.where(valid_t, d_z, zero)
            d_h_prev = jnp.where(valid_t, d_h_prev, d_h)
            d_c_prev = jnp.where(valid_t, d_c_prev, carry.c)
            d_h = jnp.where(valid_t, d_h, zero)
        return _Carry(d_h_prev, d_c_prev), (d_z, d_h if w.w_hr is not None else None)

    inputs = (d_hs, acts, cs, c_prev, valid)
    d_state, (d_z, d_h_proj) = lax.scan(step, d_state, inputs, reverse=True, unroll=unroll)
    return d_state, d_z, d_h_proj


def _chunks(a: Array | None, n: int, length: int) -> Array | None:
    """(T, …) -> (n, length, …), zero-padding the end of the time axis to n * length."""
    if a is None:
        return None
    pad = n * length - a.shape[0]
    if pad:
        a = jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)])
    return a.reshape((n, length, *a.shape[1:]))


def _chunk_layout(T: int, chunk: int, valid: Array | None, like: Array) -> tuple:
    """Chunk length, count, and the validity mask covering the padded steps (None if
    nothing is masked or padded)."""
    length = min(chunk, T)
    n = -(-T // length)
    if n * length != T and valid is None:
        valid = jnp.ones((T, *like.shape[1:-1], 1), bool)
    return length, n, _chunks(valid, n, length)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _recurrence(unroll, chunk, recompute, w, x, h0, c0, valid):
    hs, final, _ = _forward(w, x, h0, c0, valid, unroll, save=False)
    return hs, final.h, final.c


def _recurrence_fwd(unroll, chunk, recompute, w, x, h0, c0, valid):
    if not recompute:
        hs, final, saved = _forward(w, x, h0, c0, valid, unroll, save=True)
    else:  # keep only each chunk's starting cell state (its h is in hs)
        length, n, valid_k = _chunk_layout(x.shape[0], chunk, valid, x)

        def one_chunk(carry: _Carry, inputs: tuple) -> tuple[_Carry, tuple]:
            hs_k, final, _ = _forward(w, inputs[0], carry.h, carry.c, inputs[1], unroll, False)
            return final, (hs_k, carry.c)

        final, (hs, saved) = lax.scan(one_chunk, _Carry(h0, c0), (_chunks(x, n, length), valid_k))
        hs = hs.reshape((n * length, *hs.shape[2:]))[: x.shape[0]]
    return (hs, final.h, final.c), (w, x, h0, c0, valid, hs, saved)


def _recurrence_bwd(unroll, chunk, recompute, residuals, cotangents):
    """Chunk by chunk from the end: (recompute the chunk's forward,) run its reverse
    steps, then its weight gradients as one product each over its K*B rows while its
    gates' cotangents are still in cache; carry (dh, dc) and the sums."""
    w, x, h0, c0, valid, hs, saved = residuals
    d_hs, d_hn, d_cn = cotangents
    T = x.shape[0]
    length, n, valid_k = _chunk_layout(T, chunk, valid, x)
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
    if recompute:
        per_chunk = saved  # (n, B, H) starting cell states
    else:
        acts, cs = saved
        c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)
        per_chunk = tuple(_chunks(a, n, length) for a in (acts, cs, c_prev))
    chunked = (_chunks(x, n, length), _chunks(d_hs, n, length), _chunks(h_prev, n, length))

    def one_chunk(carry: tuple, inputs: tuple) -> tuple[tuple, Array]:
        d_state, sums = carry
        (x_k, d_hs_k, h_prev_k), valid_k, extra = inputs
        if recompute:
            _, _, (acts_k, cs_k) = _forward(w, x_k, h_prev_k[0], extra, valid_k, unroll, True)
            c_prev_k = jnp.concatenate([extra[None], cs_k[:-1]], axis=0)
        else:
            acts_k, cs_k, c_prev_k = extra
        d_state, d_z, d_h_proj = _backward_steps(
            w, d_state, d_hs_k, acts_k, cs_k, c_prev_k, valid_k, unroll
        )
        H = w.w_hh.shape[0] // 4
        grads = _Weights(
            jnp.einsum("tbg,tbi->gi", d_z, x_k),
            jnp.einsum("tbg,tbh->gh", d_z, h_prev_k),
            None if w.b is None else d_z.sum(axis=(0, 1)),
            None
            if w.w_hr is None
            else jnp.einsum("tbp,tbh->ph", d_h_proj, acts_k[..., 3 * H :] * jnp.tanh(cs_k)),
        )
        sums = jax.tree.map(jnp.add, sums, grads)
        return (d_state, sums), d_z @ w.w_ih

    zeros = jax.tree.map(jnp.zeros_like, w)
    (d_state0, d_w), d_x = lax.scan(
        one_chunk, (_Carry(d_hn, d_cn), zeros), (chunked, valid_k, per_chunk), reverse=True
    )
    d_x = d_x.reshape((n * length, *d_x.shape[2:]))[:T]
    return d_w, d_x, d_state0.h, d_state0.c, None


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)

# Rows (steps x batch) per chunk of the hand-written backward when it does not
# rematerialize: the weight gradients are taken per chunk, while the chunk's gates'
# cotangents (rows x 4H) are still in cache. Measured on XLA:CPU (benchmarks/NOTES.md):
# 256 to 512 rows were best of 128 to 2048, and 10-25 % faster than one whole chunk.
BACKWARD_ROWS = 256


def backward_chunk(T: int, B: int) -> int:
    """Steps per chunk of the backward pass for a (T, B, ·) input."""
    return max(1, min(T, BACKWARD_ROWS // max(B, 1)))


def _weights(p: CellParams) -> _Weights:
    """The recurrence's weights; b = b_ih + b_hh for the computation (the parameters
    stay two, each gets the sum's gradient, as in torch)."""
    biases = [v for v in (p.bias_ih, p.bias_hh) if v is not None]
    b = functools.reduce(jnp.add, biases) if biases else None
    return _Weights(p.weight_ih, p.weight_hh, b, p.weight_hr)


def _scan_or_custom(
    p: CellParams,
    x: Array,
    state: _Carry,
    valid: Array | None,
    unroll: int,
    impl: str,
    remat: int = 0,
) -> tuple[Array, _Carry]:
    """The scan (``impl="scan"``) or the hand-written backward, which rematerializes
    itself in chunks of ``remat`` steps (the forward pass then runs unchanged)."""
    if impl == "scan":
        hs, final, _ = _forward(_weights(p), x, state.h, state.c, valid, unroll, False)
        return hs, final
    chunk = remat or backward_chunk(x.shape[0], x.shape[1])
    hs, h_n, c_n = _recurrence(unroll, chunk, remat > 0, _weights(p), x, state.h, state.c, valid)
    return hs, _Carry(h_n, c_n)


def _chunked(
    p: CellParams,
    x: Array,
    state: _Carry,
    valid: Array | None,
    unroll: int,
    chunk: int,
) -> tuple[Array, _Carry]:
    """``impl="scan"`` in chunks of ``chunk`` steps, each under ``jax.checkpoint`` (only
    its input state is kept for the backward pass; its forward is recomputed there)."""
    T = x.shape[0]
    n, rest = divmod(T, chunk)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def one_chunk(carry: _Carry, inputs: tuple[Array, Array | None]) -> tuple[_Carry, Array]:
        x_k, valid_k = inputs
        hs, final = _scan_or_custom(p, x_k, carry, valid_k, unroll, "scan")
        return final, hs

    def split(a: Array | None) -> Array | None:
        return None if a is None else a[: n * chunk].reshape((n, chunk, *a.shape[1:]))

    final, hs = lax.scan(one_chunk, state, (split(x), split(valid)))
    hs = hs.reshape((n * chunk, *hs.shape[2:]))
    if rest:
        tail_valid = None if valid is None else valid[n * chunk :]
        final, hs_tail = one_chunk(final, (x[n * chunk :], tail_valid))
        hs = jnp.concatenate([hs, hs_tail], axis=0)
    return hs, final


def on_cuda() -> bool:
    """Whether JAX's default backend is an NVIDIA GPU (cuDNN's LSTM is available)."""
    if jax.default_backend() != "gpu":
        return False
    try:
        return "rocm" not in jax.devices()[0].client.platform_version.lower()
    except AttributeError:
        return True


def cudnn_applies(p: CellParams, dtype: jnp.dtype) -> str | None:
    """None if the cuDNN path can run this layer, else why not."""
    if p.weight_hr is not None:
        return "cuDNN's LSTM has no projections (proj_size > 0)"
    if jnp.dtype(dtype) != jnp.float32:
        return f"jax.experimental.rnn supports float32 only, got {jnp.dtype(dtype)}"
    return None


def pack_cudnn_weights(p: CellParams) -> Array:
    """One layer-direction's weights as cuDNN's flat vector: W_ih, W_hh, b_ih, b_hh
    (torch's layout; zeros for absent biases)."""
    zeros = jnp.zeros((p.weight_hh.shape[0],), p.weight_hh.dtype)
    parts = [
        p.weight_ih,
        p.weight_hh,
        zeros if p.bias_ih is None else p.bias_ih,
        zeros if p.bias_hh is None else p.bias_hh,
    ]
    return jnp.concatenate([v.reshape(-1) for v in parts])


def _cudnn(
    p: CellParams, x: Array, state: LSTMState, seq_lengths: Array | None
) -> tuple[Array, _Carry]:
    """``jax.experimental.rnn.lstm`` for one layer-direction (its reference off CUDA).
    Outputs are zero past each row's length; the final state is at its last valid step."""
    from jax.experimental import rnn

    T, B, I = x.shape
    H = p.weight_hh.shape[1]
    weights = pack_cudnn_weights(p)
    lengths = jnp.full((B,), T, jnp.int32) if seq_lengths is None else seq_lengths.astype(jnp.int32)
    x_bf = jnp.swapaxes(x, 0, 1)  # cuDNN's call takes (B, T, I)
    h0, c0 = state.h[None], state.c[None]
    if on_cuda():
        y, h_n, c_n = rnn.lstm(
            x_bf, h0, c0, weights, lengths, input_size=I, hidden_size=H, num_layers=1,
            dropout=0.0, bidirectional=False,
        )  # fmt: skip
    else:
        w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, I, H, 1, False)
        y, h_n, c_n = rnn.lstm_ref(
            x_bf, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, I, H, 1, 0.0, False
        )
    return jnp.swapaxes(y, 0, 1), _Carry(h_n[0], c_n[0])


def resolve(impl: str, p: CellParams, dtype: jnp.dtype, remat: int) -> str:
    """The implementation ``impl`` stands for here ("auto" -> a concrete one)."""
    if impl == "auto":
        use_cudnn = on_cuda() and remat == 0 and cudnn_applies(p, dtype) is None
        return "cudnn" if use_cudnn else "custom_vjp"
    if impl == "cudnn":
        why = cudnn_applies(p, dtype)
        if why is not None:
            raise ValueError(f"impl='cudnn': {why}; use impl='auto' or 'custom_vjp'")
        if remat:
            raise ValueError("impl='cudnn' cannot rematerialize (remat > 0); use 'custom_vjp'")
    return impl


def run(
    p: CellParams,
    x: Array,
    state: LSTMState,
    seq_lengths: Array | None,
    *,
    unroll: int = 1,
    impl: str = "auto",
    remat: int = 0,
) -> tuple[Array, tuple[Array, Array]]:
    """One layer-direction over time: x (T, B, I) -> outputs (T, B, H_out) (zeros at
    steps at or past a row's length) and the final (h, c) at each row's last valid step.
    ``x`` must already be zero in the padding."""
    check_options(impl, remat, unroll)
    impl = resolve(impl, p, x.dtype, remat)
    if impl == "cudnn":
        return _cudnn(p, x, state, seq_lengths)
    valid = None
    if seq_lengths is not None:
        valid = (jnp.arange(x.shape[0])[:, None] < seq_lengths[None, :])[..., None]  # (T, B, 1)
    carry = _Carry(state.h, state.c)
    if impl == "scan" and remat and remat < x.shape[0]:
        hs, final = _chunked(p, x, carry, valid, unroll, remat)
    else:
        hs, final = _scan_or_custom(p, x, carry, valid, unroll, impl, remat)
    outputs = hs if valid is None else jnp.where(valid, hs, jnp.zeros((), hs.dtype))
    return outputs, final
