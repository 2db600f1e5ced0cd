"""Flax linen modules mirroring ``torch.nn.LSTM`` and the lecture's ``LSTMModeler``.

They declare torch-named parameters with ``self.param`` and call
:mod:`lstm_jax.core`; they hold no math of their own. Inputs are checked
before anything is traced, with errors that say what was expected and what came.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax import core
from lstm_jax.common.config import LSTMConfig, check_param_shapes
from lstm_jax.core import LSTMState
from lstm_jax.core.init import linear_init, lstm_init
from lstm_jax.core.layout import (
    StateLike,
    as_state,
    broadcast_hidden_cell,
    check_call,
    check_param_dtype,
    lecture_view,
    run_call,
    uses_dropout,
)
from lstm_jax.core.recurrence import check_options


class LSTM(nn.Module):
    """``torch.nn.LSTM`` in Flax, with torch's parameter names, shapes and gate order.

    Attributes:
        hidden_size: H, the size of the cell state.
        num_layers: L, stacked layers.
        bias: whether each layer has ``bias_ih`` and ``bias_hh`` (two biases, as torch).
        batch_first: inputs and outputs are (B, T, F) instead of (T, B, F).
        dropout: probability of zeroing the outputs of each layer but the last,
            in training mode (``deterministic=False``, a ``'dropout'`` rng).
        bidirectional: D = 2 directions instead of 1.
        proj_size: P > 0 projects h to size P with ``weight_hr``; H_out = P or H.
        param_dtype: dtype of the parameters created by ``init``.
        unroll: ``lax.scan`` unroll factor (a speed knob; results are the same).
        impl: how each layer's recurrence runs: ``"auto"`` (cuDNN on an NVIDIA GPU,
            else a scan with a hand-written backward), ``"scan"`` (plain JAX
            autodiff; the one that supports ``jax.jvp``), ``"custom_vjp"`` or
            ``"cudnn"``; see :mod:`lstm_jax.core.recurrence`. Results are the same.
        remat: K > 0 rematerializes each layer in chunks of K steps when
            differentiated: training memory O(T/K + K) states instead of O(T).

    Parameters (``variables["params"]``), for layer k and suffix ``""`` or ``"_reverse"``:
        ``weight_ih_l{k}`` (4H, I or D*H_out), ``weight_hh_l{k}`` (4H, H_out),
        ``bias_ih_l{k}`` (4H,), ``bias_hh_l{k}`` (4H,), ``weight_hr_l{k}`` (P, H);
        all drawn from U(-1/sqrt(H), 1/sqrt(H)) as torch does.

    Call ``(x, initial_state=None, *, deterministic=True, seq_lengths=None)``:
        x: (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I).
        initial_state: (h_0, c_0) of (D*L, B, H_out) and (D*L, B, H)
            ((D*L, H_out), (D*L, H) unbatched); zeros when None.
        seq_lengths: optional (B,) valid lengths, padding at the end: the result of
            torch's ``pack_padded_sequence`` -> LSTM -> ``pad_packed_sequence``.

    Returns:
        output (T, B, D*H_out) (batch-first or unbatched as the input) and
        ``LSTMState(h_n, c_n)`` shaped as the initial state.
    """

    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    param_dtype: Any = jnp.float32
    unroll: int = 1
    impl: str = "auto"
    remat: int = 0

    def __post_init__(self) -> None:
        self.config  # noqa: B018 - validates the options at construction, as torch does
        check_options(self.impl, self.remat, self.unroll)
        check_param_dtype(self.param_dtype, "LSTM")
        super().__post_init__()

    @property
    def config(self) -> LSTMConfig:
        return LSTMConfig.of(self, self.hidden_size)

    def _params(self, input_size: int) -> dict[str, jax.Array]:
        expected = self.config.param_shapes(input_size)
        if self.has_variable("params", "weight_ih_l0"):
            stored = self.variables.get("params", {})
            check_param_shapes(
                expected, {k: np.shape(v) for k, v in stored.items()}, "LSTM variables"
            )
        init = lstm_init(self.hidden_size)
        return {
            name: self.param(name, init, shape, self.param_dtype)
            for name, shape in expected.items()
        }

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        initial_state: StateLike | None = None,
        *,
        deterministic: bool = True,
        seq_lengths: jax.Array | None = None,
    ) -> tuple[jax.Array, LSTMState]:
        config = self.config
        if self.has_variable("params", "weight_ih_l0"):
            input_size = int(np.shape(self.get_variable("params", "weight_ih_l0"))[-1])
        else:
            input_size = int(np.shape(x)[-1]) if np.ndim(x) else 0
        call = check_call(config, x, initial_state, seq_lengths, input_size)
        params = self._params(input_size)
        rng = self.make_rng("dropout") if uses_dropout(config, not deterministic) else None
        return run_call(
            params,
            x,
            call,
            config,
            param_dtype=self.param_dtype,
            dropout_rng=rng,
            unroll=self.unroll,
            impl=self.impl,
            remat=self.remat,
        )


class Linear(nn.Module):
    """``torch.nn.Linear`` with torch's layout: ``weight`` (O, F), ``bias`` (O,)."""

    features: int
    use_bias: bool = True
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        init = linear_init(fan_in)
        weight = self.param("weight", init, (self.features, fan_in), self.param_dtype)
        bias = (
            self.param("bias", init, (self.features,), self.param_dtype) if self.use_bias else None
        )
        return core.linear(
            weight.astype(x.dtype), None if bias is None else bias.astype(x.dtype), x
        )


class LSTMModeler(nn.Module):
    """The lecture's ``LSTMModeler`` (``nn.LSTM`` + ``nn.Linear`` head) in Flax.

    Submodules ``lstm`` (:class:`LSTM`) and ``linear`` (head of shape (O, D*H_out)),
    so ``variables["params"]`` flattens on "." to torch's ``state_dict`` keys.
    The LSTM options (and the speed knobs ``unroll``, ``impl``, ``remat``) are
    :class:`LSTM`'s.

    Call ``(x, hidden_cell=None, *, deterministic=True, seq_lengths=None)``:
        x: as the lecture's ``forward``: a 1-D (T,) or 2-D (T, I) input is one
            sequence of T steps with batch 1 (``x.view(len(x), 1, -1)``); a 3-D
            input is a (T, B, I) batch ((B, T, I) with ``batch_first``).
        hidden_cell: the torch model's stored ``hidden_cell`` made explicit:
            (h, c) of (D*L, B, H_out), (D*L, B, H); zeros when None; a batch of 1
            is broadcast to B (the lecture stores (1, 1, H) zeros).
        seq_lengths: optional (B,) lengths; the prediction is taken at each row's
            last valid step.

    Returns:
        the last step's prediction, (O,) for a 1-D/2-D input or (B, O) for a
        3-D one, and the new ``hidden_cell`` (``LSTMState``).
    """

    input_size: int
    hidden_layer_size: int
    output_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    param_dtype: Any = jnp.float32
    unroll: int = 1
    impl: str = "auto"
    remat: int = 0

    def __post_init__(self) -> None:
        self.config  # noqa: B018 - validates the options at construction
        check_options(self.impl, self.remat, self.unroll, "LSTMModeler")
        output_size = self.output_size
        if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1:
            raise ValueError(f"output_size must be a positive int, got {output_size!r}")
        check_param_dtype(self.param_dtype, "LSTMModeler")
        super().__post_init__()

    @property
    def config(self) -> LSTMConfig:
        return LSTMConfig.of(self, self.hidden_layer_size, self.input_size)

    def setup(self) -> None:
        self.lstm = LSTM(
            self.hidden_layer_size,
            **self.config.lstm_options(),
            param_dtype=self.param_dtype,
            unroll=self.unroll,
            impl=self.impl,
            remat=self.remat,
        )
        self.linear = Linear(self.output_size, param_dtype=self.param_dtype)

    def __call__(
        self,
        x: jax.Array,
        hidden_cell: StateLike | None = None,
        *,
        deterministic: bool = True,
        seq_lengths: jax.Array | None = None,
    ) -> tuple[jax.Array, LSTMState]:
        config = self.config
        single_sequence = np.ndim(x) < 3
        x = lecture_view(x, config, "LSTMModeler")
        batch = x.shape[0] if config.batch_first else x.shape[1]
        if hidden_cell is not None:
            hidden_cell = broadcast_hidden_cell(as_state(hidden_cell, "LSTMModeler"), batch)
        out, hidden_cell = self.lstm(
            x, hidden_cell, deterministic=deterministic, seq_lengths=seq_lengths
        )
        time_major = jnp.swapaxes(out, 0, 1) if config.batch_first else out
        lengths = None if seq_lengths is None else jnp.atleast_1d(jnp.asarray(seq_lengths))
        y = self.linear(core.last_valid_step(time_major, lengths))
        return (y[0] if single_sequence else y), hidden_cell
