"""``compare_with_torch`` for a Flax NNX module: ``compare_with_torch(torch_model, module, *args)``.

The module holds its parameters (no variables argument). Its parameters pair with the
torch model's by the NNX leaf rules (:mod:`lstm_jax.interop.nnx_transfer`); a copy of
the module runs in eval mode, so the module itself is left as it was. A module with the
lecture's stored ``hidden_cell`` is compared as the built-in pair is: both models start
from ``initial_state`` (zeros when None) and their new ``hidden_cell`` is compared as the
final state; the torch model's ``hidden_cell`` is put back afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from lstm_jax.common.config import check_param_shapes
from lstm_jax.core.state import LSTMState
from lstm_jax.interop import parity
from lstm_jax.interop.nnx_transfer import state_dict, torch_leaves, variable_at


def compare_nnx_with_torch(
    torch_model: Any,
    module: nnx.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    initial_state: tuple[Any, Any] | None,
    seed: int,
) -> parity.ParityReport:
    """See :func:`lstm_jax.compare_with_torch`; the module docstring for what differs."""
    dtype = parity._torch_dtype(torch_model)
    leaves = torch_leaves(module)
    params = state_dict(module)
    torch_params = dict(torch_model.named_parameters())
    check_param_shapes(
        {k: tuple(v.shape) for k, v in torch_params.items()},
        {k: v.shape for k, v in params.items()},
        f"the NNX {type(module).__name__}'s parameters (expected: the torch model's)",
    )
    stateful = hasattr(module, "hidden_cell") and hasattr(torch_model, "hidden_cell")
    if initial_state is not None and not stateful:
        raise TypeError(
            "compare_with_torch: initial_state is the stored hidden_cell of the lecture's "
            "model; pass other models' state as one of their arguments"
        )
    graphdef, state = nnx.split(module)
    with parity._x64_if(dtype):
        call = parity._Call.of(args, kwargs, dtype)
        inputs = dict(call.floating)
        if initial_state is not None:
            h0, c0 = initial_state
            inputs |= {"h_0": parity._array(h0, dtype, "h_0")}
            inputs |= {"c_0": parity._array(c0, dtype, "c_0")}

    def jax_call(p: Mapping[str, jax.Array], i: Mapping[str, jax.Array]) -> Any:
        model: Any = nnx.merge(graphdef, state, copy=True)
        model.eval()
        for key, leaf in leaves.items():
            variable_at(model, leaf.path).set_value(leaf.rule.from_torch(p[key]))
        a, k = call.rebuild(i, np.asarray)
        if not stateful:
            return model(*a, **k)
        model.hidden_cell = (i["h_0"], i["c_0"]) if "h_0" in i else None
        out = model(*a, **k)
        return out, LSTMState(*model.hidden_cell)

    def torch_call(i: Mapping[str, Any]) -> Any:
        import torch

        device = next(torch_model.parameters()).device
        a, k = call.rebuild(i, lambda v: torch.from_numpy(v.copy()).to(device))
        if not stateful:
            return torch_model(*a, **k)
        torch_model.hidden_cell = (i["h_0"], i["c_0"]) if "h_0" in i else None
        out = torch_model(*a, **k)
        return out, tuple(torch_model.hidden_cell)

    saved = getattr(torch_model, "hidden_cell", None)
    try:
        return parity.compare_function_with_torch(
            torch_model,
            torch_call,
            jax_call,
            params,
            torch_params,
            inputs,
            kind=f"nnx.{type(module).__name__}",
            seed=seed,
        )
    finally:
        if stateful:
            torch_model.hidden_cell = saved
