"""Flax linen modules mirroring ``torch.nn.GRU`` and ``torch.nn.RNN``.

As :class:`lstm_jax.LSTM`: torch's constructors, parameter names and shapes (two
biases), initialisation and call conventions; the modules declare the parameters and
call :mod:`lstm_jax.core` (the kinds: :mod:`lstm_jax.core.kinds`); they hold no math.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.common.config import LSTMConfig, checked_config, rnn_mode
from lstm_jax.core.layout import check_param_dtype
from lstm_jax.core.options import check_options
from lstm_jax.linen.modules import _built_by_user, _ChecksVariables, _warn_dropout, call_stack

_CALL_DOC = """
    Call ``(x, h_0=None, *, deterministic=True, seq_lengths=None)``:
        x: (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I).
        h_0: (D*L, B, H) ((D*L, H) unbatched); zeros when None.
        seq_lengths: optional (B,) valid lengths, padding at the end: the result of
            torch's ``pack_padded_sequence`` -> module -> ``pad_packed_sequence``.

    Returns:
        output (T, B, D*H) (batch-first or unbatched as the input) and h_n shaped as h_0.

    ``init`` takes I from ``x``; ``apply`` takes it from the variables' ``weight_ih_l0``
    and first checks every parameter against the options. ``deterministic=False`` with
    dropout needs ``rngs={"dropout": key}`` (the same keys as :class:`lstm_jax.LSTM`);
    dropout with one layer warns, as torch does. ``unroll``, ``impl``, ``remat``: how
    each layer runs over time (:mod:`lstm_jax.core.recurrence`; the GRU and RNN run
    ``"custom_vjp"``, ``"scan"`` and ``"hoisted"``, the default ``"auto"`` is
    ``"custom_vjp"``).
"""


def _validate(module: Any) -> None:
    """The options of a :class:`GRU` or :class:`RNN`, checked at construction (a function,
    not a method: Flax intercepts methods, and the module is not bound yet)."""
    config = module.config
    check_options(module.impl, module.remat, module.unroll, config.module_name, 0, config.mode)
    check_param_dtype(module.param_dtype, config.module_name)


class _Stack(_ChecksVariables, nn.Module):
    """What :class:`GRU` and :class:`RNN` share: the config, validation at construction,
    ``apply``'s check of the variables, the call. A subclass declares torch's options as
    fields and its ``mode``."""

    def __post_init__(self) -> None:
        _validate(self)
        built_by_user = _built_by_user(self)
        super().__post_init__()
        if built_by_user:
            _warn_dropout(self)  # type: ignore[arg-type]

    @property
    def config(self) -> LSTMConfig:
        """The module's options, checked (one :class:`LSTMConfig` for the four kinds)."""
        return checked_config(
            hidden_size=self.hidden_size,  # type: ignore[attr-defined]
            num_layers=self.num_layers,  # type: ignore[attr-defined]
            bias=self.bias,  # type: ignore[attr-defined]
            batch_first=self.batch_first,  # type: ignore[attr-defined]
            dropout=self.dropout,  # type: ignore[attr-defined]
            bidirectional=self.bidirectional,  # type: ignore[attr-defined]
            mode=self.mode,  # type: ignore[attr-defined]
        )

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        h_0: jax.Array | None = None,
        *,
        deterministic: bool = True,
        seq_lengths: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        return call_stack(self, self.config, x, h_0, deterministic, seq_lengths)


class GRU(_Stack):
    """``torch.nn.GRU`` in Flax, with torch's parameter names, shapes and gate order.

    Attributes:
        hidden_size: H.
        num_layers: L, stacked layers.
        bias: whether each layer has ``bias_ih`` and ``bias_hh`` (two biases, as torch;
            ``b_hn`` sits inside the reset gate's product, so they cannot be folded).
        batch_first: inputs and outputs are (B, T, F) instead of (T, B, F).
        dropout: probability of zeroing the outputs of each layer but the last, in
            training mode (``deterministic=False``, a ``'dropout'`` rng).
        bidirectional: D = 2 directions instead of 1.
        param_dtype: dtype of the parameters created by ``init``.
        unroll, impl, remat: speed and memory knobs (the results are the same).

    Parameters (``variables["params"]``), for layer k and suffix ``""`` or ``"_reverse"``:
        ``weight_ih_l{k}`` (3H, I or D*H), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``
        (3H,), ``bias_hh_l{k}`` (3H,), rows r, z, n; all drawn from
        U(-1/sqrt(H), 1/sqrt(H)) as torch does. The step
        (:mod:`lstm_jax.core.gru_cell`): r, z = sigmoid(W_i{r,z} x + b_i{r,z} +
        W_h{r,z} h + b_h{r,z}); n = tanh(W_in x + b_in + r * (W_hn h + b_hn));
        h' = (1 - z) * n + z * h.
    """

    __doc__ = (__doc__ or "") + _CALL_DOC

    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    param_dtype: Any = jnp.float32
    unroll: int = 1
    impl: str = "auto"
    remat: int = 0

    @property
    def mode(self) -> str:
        """torch's mode: "GRU"."""
        return "GRU"


class RNN(_Stack):
    """``torch.nn.RNN`` (Elman) in Flax, with torch's parameter names and shapes.

    Attributes:
        hidden_size: H.
        num_layers: L, stacked layers.
        nonlinearity: "tanh" (default) or "relu".
        bias, batch_first, dropout, bidirectional, param_dtype, unroll, impl, remat: as
            :class:`GRU`'s.

    Parameters (``variables["params"]``), for layer k and suffix ``""`` or ``"_reverse"``:
        ``weight_ih_l{k}`` (H, I or D*H), ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}`` (H,),
        ``bias_hh_l{k}`` (H,), drawn from U(-1/sqrt(H), 1/sqrt(H)). The step
        (:mod:`lstm_jax.core.rnn_cell`): h' = act(W_ih x + b_ih + W_hh h + b_hh).
    """

    __doc__ = (__doc__ or "") + _CALL_DOC

    hidden_size: int
    num_layers: int = 1
    nonlinearity: str = "tanh"
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    param_dtype: Any = jnp.float32
    unroll: int = 1
    impl: str = "auto"
    remat: int = 0

    @property
    def mode(self) -> str:
        """torch's mode: "RNN_TANH" or "RNN_RELU" (checks ``nonlinearity``)."""
        return rnn_mode(self.nonlinearity)
