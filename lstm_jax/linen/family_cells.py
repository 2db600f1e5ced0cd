"""``torch.nn.GRUCell`` and ``torch.nn.RNNCell`` in Flax linen: one step, for the loops
users write themselves (decoders, sampling).

The modules declare torch's parameters and call the core's one step of their kind
(:mod:`lstm_jax.core.kinds`); they hold no math of their own.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.common.arrays import host_call_args
from lstm_jax.common.config import (
    GATE_COUNTS,
    check_params,
    lstm_cell_param_shapes,
    params_of,
    rnn_mode,
)
from lstm_jax.common.numbers import check_int
from lstm_jax.core import kinds
from lstm_jax.core.init import lstm_init
from lstm_jax.core.layout import check_cell_call, check_param_dtype, dtype_of
from lstm_jax.core.state import CellParams


def _check_cell_options(module: Any, who: str) -> None:
    check_int(f"{who}: expected hidden_size", module.hidden_size, phrase="a positive int")
    if not isinstance(module.bias, bool):
        raise TypeError(f"{who}: expected bias a bool, got {module.bias!r}")
    check_param_dtype(module.param_dtype, who)


def cell_call(module: Any, mode: str, who: str, x: Any, h: Any) -> jax.Array:
    """One step of ``mode``'s kind inside a cell module's compact ``__call__``: check the
    call, declare (or read) ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih``,
    ``bias_hh`` (G*H,), run the kind's step. x (B, I) or (I,), h as x's rows by H."""
    x, h, _ = host_call_args(who, x, h, None)
    gates = GATE_COUNTS[mode]
    if module.has_variable("params", "weight_ih"):
        input_size = int(np.shape(module.get_variable("params", "weight_ih"))[-1])
        expected = lstm_cell_param_shapes(module.hidden_size, input_size, module.bias, gates)
        check_params(params_of(module.variables, who), expected, who)
    else:
        input_size = int(np.shape(x)[-1]) if np.ndim(x) else 0
    state_shape = check_cell_call(x, h, input_size, module.hidden_size, who, pair=False)
    batched = np.ndim(x) == 2
    init = lstm_init(module.hidden_size)
    shapes = lstm_cell_param_shapes(module.hidden_size, input_size, module.bias, gates)
    params = {
        name: module.param(name, init, shape, module.param_dtype) for name, shape in shapes.items()
    }
    compute_dtype = jnp.result_type(dtype_of(x), module.param_dtype)
    params = {k: v.astype(compute_dtype) for k, v in params.items()}
    x = jnp.asarray(x, compute_dtype)
    h = jnp.zeros(state_shape, compute_dtype) if h is None else jnp.asarray(h, compute_dtype)
    if not batched:
        x, h = x[None], h[None]
    kind = kinds.kind_of(mode)
    new, _ = kind.step(kind.weights(CellParams(**params)), h, x)
    return new if batched else new[0]


class _Cell(nn.Module):
    def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any:
        """``flax.linen.Module.apply``; ``variables`` must be ``{"params": {...}}``."""
        if variables != {}:
            params_of(variables, f"{type(self).__name__}.apply")
        return super().apply(variables, *args, **kwargs)


class GRUCell(_Cell):
    """``torch.nn.GRUCell`` with torch's parameter names, shapes and gate order (r, z, n).

    Attributes:
        hidden_size: H.
        bias: whether the cell has ``bias_ih`` and ``bias_hh`` (two biases, as torch).
        param_dtype: dtype of the parameters created by ``init``.

    Parameters (``variables["params"]``), I taken from the first input:
        ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih`` (3H,), ``bias_hh`` (3H,),
        drawn from U(-1/sqrt(H), 1/sqrt(H)) as torch does.

    The call ``(x, h=None)`` takes x (B, I) or unbatched (I,) and h (B, H) or (H,),
    zeros when None, and returns h' (B, H) ((H,) unbatched), torch's ``GRUCell(x, h)``.

    Unlike ``flax.linen.GRUCell`` (one folded bias, the reset gate applied to h before
    its product) this is torch's function: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    """

    hidden_size: int
    bias: bool = True
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check_cell_options(self, "GRUCell")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, h: jax.Array | None = None) -> jax.Array:
        return cell_call(self, "GRU", "GRUCell", x, h)


class RNNCell(_Cell):
    """``torch.nn.RNNCell``: h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu.

    Attributes:
        hidden_size: H.
        bias: whether the cell has ``bias_ih`` and ``bias_hh``.
        nonlinearity: "tanh" (default) or "relu".
        param_dtype: dtype of the parameters created by ``init``.

    Parameters: ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih`` (H,),
    ``bias_hh`` (H,), drawn from U(-1/sqrt(H), 1/sqrt(H)).

    The call ``(x, h=None)`` takes x (B, I) or (I,) and h (B, H) or (H,), zeros when
    None, and returns h' (B, H) ((H,) unbatched).
    """

    hidden_size: int
    bias: bool = True
    nonlinearity: str = "tanh"
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check_cell_options(self, "RNNCell")
        rnn_mode(self.nonlinearity, "RNNCell")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, h: jax.Array | None = None) -> jax.Array:
        return cell_call(self, rnn_mode(self.nonlinearity, "RNNCell"), "RNNCell", x, h)
