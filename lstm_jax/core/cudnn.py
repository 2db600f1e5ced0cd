"""The cuDNN adapter: ``jax.experimental.rnn`` (cuDNN's LSTM, torch's weight layout).

On a CUDA GPU it calls ``rnn.lstm``; elsewhere that module's reference implementation
``rnn.lstm_ref`` on the same packed weights (unpacked by ``rnn.unpack_lstm_weights``), so
the packing, the call and the packed-sequence semantics are exercised on any machine.
When it is used (``impl="cudnn"``) is explained in :mod:`lstm_jax.core.recurrence`.

One call runs several layers and both directions (cuDNN's fused kernels). Shapes:
``x`` (T, B, I) time-major, states (D*L, B, H) in torch's order ``layer * D + direction``,
``seq_lengths`` (B,) valid lengths (padding at the end; the reverse direction reads each
row's first ``len`` steps backwards, as torch's packed sequences do).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from lstm_jax.core.state import CellParams, LSTMState

Array = jax.Array


def on_cuda() -> bool:
    """Whether JAX's default backend is an NVIDIA GPU (cuDNN's LSTM is available)."""
    if jax.default_backend() != "gpu":
        return False
    try:
        return "rocm" not in jax.devices()[0].client.platform_version.lower()
    except AttributeError:
        return True


def why_not_cudnn(dtype: jnp.dtype) -> str | None:
    """None if cuDNN's LSTM can run in ``dtype``, else why not (the options:
    :func:`lstm_jax.core.options.why_not_cudnn_options`)."""
    if jnp.dtype(dtype) != jnp.float32:
        return f"jax.experimental.rnn supports float32 only, got {jnp.dtype(dtype)}"
    return None


def cudnn_precision(precision: lax.PrecisionLike = None) -> lax.Precision:
    """The precision to hand ``rnn.lstm``: HIGHEST (TF32 off) when ``precision``, or else
    JAX's ``default_matmul_precision``, asks for full float32 ("highest", "float32");
    HIGH (TF32 allowed, as JAX's default float32 matmuls on GPUs) otherwise.

    cuDNN takes one precision per call and has no bfloat16 passes, so DEFAULT (which
    ``rnn.lstm`` refuses) maps to HIGH as well."""
    if precision is None:
        precision = jax.config.jax_default_matmul_precision  # type: ignore[attr-defined]
    first = precision[0] if isinstance(precision, tuple | list) else precision
    if isinstance(first, str | lax.Precision) and lax.Precision(first) == lax.Precision.HIGHEST:
        return lax.Precision.HIGHEST
    return lax.Precision.HIGH


def pack_weights(layers: Sequence[CellParams]) -> Array:
    """Pseudo-layers (``layer * D + direction``) as cuDNN's flat weight vector: every
    pseudo-layer's W_ih, W_hh, then every one's b_ih, b_hh (zeros for absent biases)."""
    matrices, biases = [], []
    for p in layers:
        zeros = jnp.zeros((p.weight_hh.shape[0],), p.weight_hh.dtype)
        matrices += [p.weight_ih, p.weight_hh]
        biases += [zeros if b is None else b for b in (p.bias_ih, p.bias_hh)]
    return jnp.concatenate([v.reshape(-1) for v in matrices + biases])


def cudnn_lstm(
    layers: Sequence[CellParams],
    x: Array,
    state: LSTMState,
    seq_lengths: Array | None,
    *,
    bidirectional: bool,
    precision: lax.PrecisionLike = None,
) -> tuple[Array, LSTMState]:
    """Several layers (and both directions) in one ``jax.experimental.rnn`` call.

    Arguments:
        layers: the L*D pseudo-layers' weights in torch's order (no projections).
        x: (T, B, I), zero in the padding.
        state: (D*L, B, H) each.
        seq_lengths: optional (B,) lengths in [1, T].
        precision: see :func:`cudnn_precision`.

    Returns:
        outputs (T, B, D*H) (zeros at steps at or past a row's length) and the final
        ``LSTMState`` (D*L, B, H) at each row's last valid step.
    """
    from jax.experimental import rnn

    T, B, I = x.shape
    H = layers[0].weight_hh.shape[1]
    num_layers = len(layers) // (2 if bidirectional else 1)
    weights = pack_weights(layers)
    lengths = jnp.full((B,), T, jnp.int32) if seq_lengths is None else seq_lengths.astype(jnp.int32)
    x_batch_first = jnp.swapaxes(x, 0, 1)  # rnn's calls take (B, T, I)
    shape = (I, H, num_layers, 0.0, bidirectional)
    if on_cuda():
        y, h_n, c_n = rnn.lstm(
            x_batch_first, state.h, state.c, weights, lengths, *shape,
            precision=cudnn_precision(precision),
        )  # fmt: skip
    else:
        unpacked = rnn.unpack_lstm_weights(weights, I, H, num_layers, bidirectional)
        y, h_n, c_n = rnn.lstm_ref(x_batch_first, state.h, state.c, *unpacked, lengths, *shape)
    return jnp.swapaxes(y, 0, 1), LSTMState(h_n, c_n)
