"""How one layer-direction of a recurrent kind (LSTM, GRU, plain RNN) runs over time: the
``impl`` and ``remat`` knobs, and the dispatch to the module that does each.

Every implementation computes the same function, torch's (up to float rounding); the
knobs choose speed and memory. This is the one place they are explained; the modules
and functions that take them link here. Which kinds each ``impl`` runs is one table,
:data:`lstm_jax.core.options.IMPL_TABLE`: every kind runs ``"scan"``, ``"custom_vjp"``
and ``"hoisted"`` (one driver, each kind's step and hand-written derivative:
:mod:`lstm_jax.core.kinds`); ``"cudnn"`` and ``"wavefront"`` are the LSTM's; a module
refuses an ``impl`` its kind has not when it is built.

``impl``:

- ``"scan"``: one ``lax.scan`` of the kind's step over time (the LSTM's
  :func:`~lstm_jax.core.cell.lstm_cell`: one fused ``[x_t, h] @ [W_ih, W_hh]^T`` per
  step), differentiated by JAX. The only
  path that supports forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``, Hessians).
- ``"custom_vjp"``: the same forward with a hand-written backward (a ``jax.custom_vjp``
  over the kind's derivative: the LSTM's :func:`~lstm_jax.core.cell.cell_backward`, the
  GRU's :func:`~lstm_jax.core.gru_cell.gru_backward`, the RNN's
  :func:`~lstm_jax.core.rnn_cell.rnn_backward`): the reverse scan carries only the
  state's cotangent and does one product with ``W_hh`` per step; the weight gradients
  are then one matrix product each per chunk of steps instead of an accumulation per
  step. It keeps what each step's derivative reads (the LSTM: activated gates and cell
  states, (T, B, 5H); the GRU: r, z, n and ``W_hn h + b_hn``, (T, B, 4H); the RNN: h').
  Reverse mode only. (:mod:`lstm_jax.core.scan`)
- ``"hoisted"``: ``"custom_vjp"`` with the input's share of the gates,
  ``x @ W_ih^T + b``, computed for all steps as ONE (T*B, I) @ (I, 4H) product before
  the scan; each step then multiplies only ``h @ W_hh^T``. (:mod:`lstm_jax.core.scan`)
- ``"cudnn"``: cuDNN's LSTM through ``jax.experimental.rnn`` on a CUDA GPU (several
  layers and both directions in one call), its reference implementation elsewhere;
  float32, no projections, no remat. (:mod:`lstm_jax.core.cudnn`)
- ``"wavefront"``: the whole stack at once (:mod:`lstm_jax.core.wavefront`): a
  unidirectional stack's layers advance diagonally in one scan (layer l at step t with
  layer l+1 at step t-1: T + L - 1 sequential steps instead of L*T); a bidirectional
  layer runs both directions in one scan (L*T steps instead of 2*L*T). Hand-written
  backward, ``seq_lengths``, dropout, projections and ``remat`` as ``"custom_vjp"``.
- ``"auto"`` (default): ``"custom_vjp"`` for every kind
  (:data:`lstm_jax.core.options.AUTO`; on the 2-core Intel machine the hoisted form was
  not faster for the GRU: ``benchmarks/gru_benchmark.py``), on every backend. It
  picks another path only once a run recorded in ``benchmarks/`` shows that path correct
  and faster for the case; no GPU run has been recorded yet, so cuDNN is used only when asked for.

``remat=K`` (K > 0) rematerializes: the sequence runs in chunks of K steps whose forward
pass is recomputed during the backward pass, so training keeps only the chunk-boundary
states plus one chunk's residuals (memory O(T/K + K) states instead of O(T)) for about
one more forward pass of compute. With ``"custom_vjp"``/``"hoisted"`` the hand-written
backward does it (:mod:`lstm_jax.core.scan`); with ``"scan"`` each chunk runs under
``jax.checkpoint`` (:mod:`lstm_jax.core.remat`).

``unroll``: the ``lax.scan`` unroll factor of the time loop.

The measurements behind these choices are in ``benchmarks/NOTES.md``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.core import kinds
from lstm_jax.core.cudnn import cudnn_lstm, why_not_cudnn
from lstm_jax.core.kinds import Kind
from lstm_jax.core.options import AUTO, IMPLS, check_options, why_not_cudnn_options
from lstm_jax.core.remat import checkpointed_scan
from lstm_jax.core.scan import BACKWARD_ROWS, scan_layer
from lstm_jax.core.state import CellParams, LSTMState

Array = jax.Array

__all__ = ["IMPLS", "check_options", "layer", "resolve", "valid_mask", "zero_padding"]


def resolve(impl: str, proj_size: int, dtype: jnp.dtype, remat: int, mode: str = "LSTM") -> str:
    """The implementation ``impl`` stands for ("auto" -> the kind's concrete one);
    ValueError where ``"cudnn"`` cannot run the options."""
    if impl == "auto":
        return AUTO[mode]
    if impl == "cudnn":
        why = why_not_cudnn_options(proj_size, remat) or why_not_cudnn(dtype)
        if why is not None:
            raise ValueError(f"impl='cudnn': {why}; use impl='auto' or 'custom_vjp'")
    return impl


def valid_mask(seq_lengths: Array | None, steps: int) -> Array | None:
    """(T, B, 1) True at the steps before each row's length; None without lengths."""
    if seq_lengths is None:
        return None
    return (jnp.arange(steps)[:, None] < seq_lengths[None, :])[..., None]


def zero_padding(x: Array, valid: Array | None) -> Array:
    """x (T, B, F) with zeros at the masked steps.

    torch's packed LSTM never reads the padding; a NaN or inf there would otherwise
    reach the weight gradients (0 * NaN = NaN)."""
    return x if valid is None else jnp.where(valid, x, jnp.zeros((), x.dtype))


def layer(
    p: CellParams,
    x: Array,
    state: Any,
    seq_lengths: Array | None,
    valid: Array | None,
    *,
    unroll: int,
    impl: str,
    remat: int,
    backward_rows: int = BACKWARD_ROWS,
    kind: Kind = kinds.LSTM,
) -> tuple[Array, Any]:
    """One layer-direction over time with a resolved ``impl`` (see the module docstring).

    Arguments:
        x: (T, B, I), already zero in the padding (:func:`zero_padding`).
        state: the kind's: ``LSTMState`` ((B, H_out), (B, H)), or h (B, H).
        seq_lengths: (B,) or None; ``valid`` its :func:`valid_mask`.
        backward_rows: rows per chunk of the hand-written backward without remat
            (the stack passes the kind's, :attr:`~lstm_jax.core.kinds.Kind.backward_rows`;
            ``benchmarks/variants.py`` varies it).

    Returns:
        outputs (T, B, H_out), zeros at steps at or past a row's length, and the final
        state at each row's last valid step.
    """
    if impl == "cudnn":
        out, final = cudnn_lstm(
            [p], x, LSTMState(state.h[None], state.c[None]), seq_lengths, bidirectional=False
        )
        return out, LSTMState(final.h[0], final.c[0])
    w = kind.weights(p)  # once per call: the scan's steps share it
    if impl == "scan" and remat and remat < x.shape[0]:
        hs, final = checkpointed_scan(
            w, x, state, valid, unroll=unroll, chunk_steps=remat, kind=kind
        )
    else:
        hs, final = scan_layer(
            w, x, state, valid, unroll=unroll, impl=impl, remat=remat,
            backward_rows=backward_rows, kind=kind,
        )  # fmt: skip
    return zero_padding(hs, valid), final
