"""``torch.nn.LSTMCell`` in Flax linen: one step, for the loops users write themselves
(seq2seq decoders with attention, sampling loops).

The module declares torch's parameters and calls the core's one cell
(:func:`lstm_jax.core.cell.lstm_cell`); it holds no math of its own.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.common.arrays import host_call_args
from lstm_jax.common.config import check_params, lstm_cell_param_shapes, params_of
from lstm_jax.common.numbers import check_int
from lstm_jax.core import cell
from lstm_jax.core.init import lstm_init
from lstm_jax.core.layout import check_cell_call, check_param_dtype, dtype_of
from lstm_jax.core.state import CellParams, LSTMState

WHO = "LSTMCell"


class LSTMCell(nn.Module):
    """``torch.nn.LSTMCell`` with torch's parameter names, shapes and gate order.

    Attributes:
        hidden_size: H.
        bias: whether the cell has ``bias_ih`` and ``bias_hh`` (two biases, as torch).
        param_dtype: dtype of the parameters created by ``init``.

    The parameters (``variables["params"]``), I taken from the first input, are
    ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` (4H,) and ``bias_hh``
    (4H,), all drawn from U(-1/sqrt(H), 1/sqrt(H)) as torch does.
    """

    hidden_size: int
    bias: bool = True
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        check_int(f"{WHO}: expected hidden_size", self.hidden_size, phrase="a positive int")
        if not isinstance(self.bias, bool):
            raise TypeError(f"{WHO}: expected bias a bool, got {self.bias!r}")
        check_param_dtype(self.param_dtype, WHO)
        super().__post_init__()

    def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any:
        """``flax.linen.Module.apply``, with the variables checked first.

        Args:
            variables: ``{"params": {...}}``.
            *args: the call's arguments (``__call__``).
            **kwargs: the call's keywords and ``apply``'s.

        Returns:
            What ``__call__`` returns.

        Raises:
            ValueError: ``variables`` without the ``{"params": ...}`` wrapper.
        """
        if variables != {}:
            params_of(variables, f"{WHO}.apply")
        return super().apply(variables, *args, **kwargs)

    @nn.compact
    def __call__(self, x: jax.Array, state: tuple[Any, Any] | None = None) -> LSTMState:
        """One step, as ``torch.nn.LSTMCell.forward``.

        Args:
            x: (B, I), or unbatched (I,).
            state: (h, c), each (B, H) ((H,) unbatched); zeros when None.

        Returns:
            ``LSTMState(h', c')``, each (B, H) ((H,) unbatched): torch's ``(h_1, c_1)``.

        Raises:
            ValueError: an input or state whose shape does not fit.
            TypeError: a state that is not a pair.
        """
        x, state, _ = host_call_args(WHO, x, state, None)
        dtype = dtype_of(x)
        if self.has_variable("params", "weight_ih"):
            input_size = int(np.shape(self.get_variable("params", "weight_ih"))[-1])
            expected = lstm_cell_param_shapes(self.hidden_size, input_size, self.bias)
            check_params(params_of(self.variables, WHO), expected, WHO)
        else:
            input_size = int(np.shape(x)[-1]) if np.ndim(x) else 0
        expected_state = check_cell_call(x, state, input_size, self.hidden_size, WHO)
        batched = np.ndim(x) == 2

        init = lstm_init(self.hidden_size)
        shapes = lstm_cell_param_shapes(self.hidden_size, input_size, self.bias)
        params = {
            name: self.param(name, init, shape, self.param_dtype) for name, shape in shapes.items()
        }
        compute_dtype = jnp.result_type(dtype, self.param_dtype)
        params = {k: v.astype(compute_dtype) for k, v in params.items()}
        x = jnp.asarray(x, compute_dtype)
        if state is None:
            h = c = jnp.zeros(expected_state, compute_dtype)
        else:
            h, c = (jnp.asarray(v, compute_dtype) for v in state)
        if not batched:
            x, h, c = x[None], h[None], c[None]
        weights = cell.step_weights(CellParams(**params))
        new, _ = cell.lstm_cell(weights, LSTMState(h, c), x)
        return new if batched else LSTMState(new.h[0], new.c[0])
