"""``torch.nn.LSTMCell`` in Flax NNX: one step, for the loops users write by hand
(decoders, sampling). The step is the core's one cell, :func:`lstm_jax.core.cell.lstm_cell`."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from lstm_jax.common.arrays import host_call_args
from lstm_jax.common.config import LSTMConfig, lstm_cell_param_shapes
from lstm_jax.core.cell import lstm_cell, step_weights
from lstm_jax.core.init import lstm_init
from lstm_jax.core.layout import StateLike, check_cell_call, dtype_of
from lstm_jax.core.state import CellParams, LSTMState
from lstm_jax.nnx.modules import check_nnx_param_dtype, check_rngs
from lstm_jax.nnx.state_dict import TorchStateDict


class LSTMCell(TorchStateDict, nnx.Module):
    """``torch.nn.LSTMCell(input_size, hidden_size, bias=True)`` in Flax NNX.

    Parameters ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` and ``bias_hh``
    (4H,) with ``bias``, gates i, f, g, o, drawn from U(-1/sqrt(H), 1/sqrt(H)) as torch.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        LSTMConfig(hidden_size=hidden_size, input_size=input_size, bias=bias)  # torch's checks
        check_nnx_param_dtype(param_dtype, "LSTMCell")
        check_rngs(rngs, "LSTMCell")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        init = lstm_init(hidden_size)
        shapes = lstm_cell_param_shapes(hidden_size, input_size, bias)
        for name, shape in shapes.items():
            setattr(self, name, nnx.Param(init(rngs.params(), shape, param_dtype)))

    def __call__(self, x: Any, hx: StateLike | None = None) -> LSTMState:
        """One step, as ``torch.nn.LSTMCell.forward``.

        Args:
            x: (B, I) or unbatched (I,).
            hx: (h_0, c_0), each (B, H) or (H,); zeros when None.

        Returns:
            ``LSTMState(h_1, c_1)``, each shaped as h_0.

        Raises:
            ValueError: an input or state whose shape does not fit.
            TypeError: a state that is not a pair.
        """
        x, hx, _ = host_call_args("LSTMCell", x, hx, None)
        check_cell_call(x, hx, self.input_size, self.hidden_size)
        names = lstm_cell_param_shapes(self.hidden_size, self.input_size, self.bias)
        stored = {name: getattr(self, name).get_value() for name in names}
        dtype = jnp.result_type(dtype_of(x), stored["weight_ih"].dtype)
        params = CellParams(**{name: value.astype(dtype) for name, value in stored.items()})
        x = jnp.asarray(x, dtype)
        batched = x.ndim == 2
        if not batched:
            x = x[None]
        if hx is None:
            zeros = jnp.zeros((x.shape[0], self.hidden_size), dtype)
            state = LSTMState(zeros, zeros)
        else:
            h, c = (jnp.asarray(v, dtype) for v in hx)
            state = LSTMState(h, c) if batched else LSTMState(h[None], c[None])
        new, _ = lstm_cell(step_weights(params), state, x)
        return new if batched else LSTMState(new.h[0], new.c[0])
