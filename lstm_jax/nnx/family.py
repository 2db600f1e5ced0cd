"""Flax NNX modules mirroring ``torch.nn.GRU``, ``nn.RNN``, ``nn.GRUCell`` and
``nn.RNNCell``: built eagerly from torch's constructor arguments, one ``nnx.Param`` per
torch parameter under torch's name, torch's ``state_dict`` methods.

They hold no math: a call is checked and laid out by :mod:`lstm_jax.core.layout` and
computed by the core's stack or its kind's one step (:mod:`lstm_jax.core.kinds`), as
:class:`lstm_jax.nnx.LSTM`'s is. Training mode and dropout keys follow that module's
conventions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_jax.common.arrays import host_call_args
from lstm_jax.common.config import (
    GATE_COUNTS,
    checked_config,
    lstm_cell_param_shapes,
    rnn_mode,
)
from lstm_jax.common.numbers import check_int
from lstm_jax.core import kinds
from lstm_jax.core.init import lstm_init
from lstm_jax.core.layout import check_cell_call, dtype_of
from lstm_jax.core.state import CellParams
from lstm_jax.nnx.modules import (
    StackModule,
    build_stack,
    call_module,
    check_nnx_param_dtype,
    check_rngs,
)
from lstm_jax.nnx.state_dict import TorchStateDict


class _Stack(StackModule):
    """What :class:`GRU` and :class:`RNN` share: the call (their ``__init__`` builds
    through :func:`~lstm_jax.nnx.modules.build_stack`)."""

    def __call__(
        self,
        x: Any,
        hx: Any = None,
        *,
        seq_lengths: Any = None,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """``(x, hx=None)`` -> (output, h_n), torch's shapes: x (T, B, I) ((B, T, I) with
        ``batch_first``, (T, I) unbatched), hx (D*L, B, H) or None; ``seq_lengths``,
        ``deterministic`` and ``rngs`` as :class:`lstm_jax.nnx.LSTM`'s."""
        return call_module(self, x, hx, seq_lengths, deterministic, rngs)  # type: ignore[no-any-return]


class GRU(_Stack):
    """``torch.nn.GRU`` in Flax NNX.

    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, *, rngs)``, as torch's, plus the keyword-only
    ``param_dtype``, ``unroll``, ``impl`` and ``remat`` of :class:`lstm_jax.GRU`.

    Parameters (``nnx.Param`` attributes), for layer k and suffix ``""`` or ``"_reverse"``:
    ``weight_ih_l{k}`` (3H, I or D*H), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}`` and
    ``bias_hh_l{k}`` (3H,), rows r, z, n, drawn from U(-1/sqrt(H), 1/sqrt(H)).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        param_dtype: Any = jnp.float32,
        unroll: int = 1,
        impl: str = "auto",
        remat: int = 0,
        rngs: nnx.Rngs,
    ) -> None:
        config = checked_config(
            hidden_size=hidden_size, input_size=input_size, num_layers=num_layers, bias=bias,
            batch_first=batch_first, dropout=dropout, bidirectional=bidirectional, mode="GRU",
        )  # fmt: skip
        build_stack(self, config, param_dtype, unroll, impl, remat, rngs)


class RNN(_Stack):
    """``torch.nn.RNN`` in Flax NNX.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, *, rngs)``, as torch's.
    Parameters as :class:`GRU`'s with H rows instead of 3H.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        param_dtype: Any = jnp.float32,
        unroll: int = 1,
        impl: str = "auto",
        remat: int = 0,
        rngs: nnx.Rngs,
    ) -> None:
        config = checked_config(
            hidden_size=hidden_size, input_size=input_size, num_layers=num_layers, bias=bias,
            batch_first=batch_first, dropout=dropout, bidirectional=bidirectional,
            mode=rnn_mode(nonlinearity),
        )  # fmt: skip
        self.nonlinearity = nonlinearity
        build_stack(self, config, param_dtype, unroll, impl, remat, rngs)


class _Cell(TorchStateDict, nnx.Module):
    def _build(
        self, who: str, mode: str, input_size: int, hidden_size: int, bias: bool,
        param_dtype: Any, rngs: nnx.Rngs,
    ) -> None:  # fmt: skip
        check_int(f"{who}: expected input_size", input_size, phrase="a positive int")
        check_int(f"{who}: expected hidden_size", hidden_size, phrase="a positive int")
        if not isinstance(bias, bool):
            raise TypeError(f"{who}: expected bias a bool, got {bias!r}")
        check_nnx_param_dtype(param_dtype, who)
        check_rngs(rngs, who)
        self.who, self.mode = who, mode
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        init = lstm_init(hidden_size)
        for name, shape in self._shapes().items():
            setattr(self, name, nnx.Param(init(rngs.params(), shape, param_dtype)))

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        gates = GATE_COUNTS[self.mode]
        return lstm_cell_param_shapes(self.hidden_size, self.input_size, self.bias, gates)

    def __call__(self, x: Any, hx: Any = None) -> jax.Array:
        """``(x, hx=None)`` -> h': x (B, I) or (I,), hx (B, H) or (H,) (zeros when None)."""
        x, hx, _ = host_call_args(self.who, x, hx, None)
        shape = check_cell_call(x, hx, self.input_size, self.hidden_size, self.who, pair=False)
        stored = {name: getattr(self, name).get_value() for name in self._shapes()}
        dtype = jnp.result_type(dtype_of(x), stored["weight_ih"].dtype)
        params = CellParams(**{name: value.astype(dtype) for name, value in stored.items()})
        x = jnp.asarray(x, dtype)
        h = jnp.zeros(shape, dtype) if hx is None else jnp.asarray(hx, dtype)
        batched = x.ndim == 2
        kind = kinds.kind_of(self.mode)
        new, _ = kind.step(
            kind.weights(params), h if batched else h[None], x if batched else x[None]
        )
        return new if batched else new[0]


class GRUCell(_Cell):
    """``torch.nn.GRUCell(input_size, hidden_size, bias=True)`` in Flax NNX: parameters
    ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``, ``bias_hh`` (3H,)."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, *,
        param_dtype: Any = jnp.float32, rngs: nnx.Rngs,
    ) -> None:  # fmt: skip
        self._build("GRUCell", "GRU", input_size, hidden_size, bias, param_dtype, rngs)


class RNNCell(_Cell):
    """``torch.nn.RNNCell(input_size, hidden_size, bias=True, nonlinearity="tanh")`` in
    Flax NNX: parameters ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih``,
    ``bias_hh`` (H,)."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True,
        nonlinearity: str = "tanh", *, param_dtype: Any = jnp.float32, rngs: nnx.Rngs,
    ) -> None:  # fmt: skip
        mode = rnn_mode(nonlinearity, "RNNCell")
        self.nonlinearity = nonlinearity
        self._build("RNNCell", mode, input_size, hidden_size, bias, param_dtype, rngs)
