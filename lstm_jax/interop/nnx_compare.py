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
from dataclasses import replace
from typing import Any

import jax
import numpy as np
from flax import nnx

from lstm_jax.common.config import check_param_shapes
from lstm_jax.core.state import LSTMState
from lstm_jax.interop import parity
from lstm_jax.interop.buffer_compare import (
    buffer_differences,
    output_differences,
    torch_buffers,
    torch_train_step,
)
from lstm_jax.interop.nnx_transfer import state_dict, torch_leaves, variable_at


def compare_nnx_with_torch(
    torch_model: Any,
    module: nnx.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    initial_state: tuple[Any, Any] | None,
    seed: int,
    train_step: bool = False,
) -> parity.ParityReport:
    """See :func:`lstm_jax.compare_with_torch`; the module docstring for what differs."""
    dtype = parity._torch_dtype(torch_model)
    torch_params = dict(torch_model.named_parameters())
    everything = state_dict(module)  # parameters and buffers
    all_leaves = torch_leaves(module)
    leaves = {k: v for k, v in all_leaves.items() if k in torch_params}
    params = {k: v for k, v in everything.items() if k in torch_params}
    # Flax's nnx.BatchNorm keeps no counter: torch's is not compared (it is only read)
    flax_bn = [k for k, leaf in all_leaves.items() if leaf.variable is None]
    buffers = {k: v for k, v in everything.items() if k not in torch_params and k not in flax_bn}
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
        report = parity.compare_function_with_torch(
            torch_model,
            torch_call,
            jax_call,
            params,
            torch_params,
            inputs,
            kind=f"nnx.{type(module).__name__}",
            seed=seed,
        )
        torch_held = {k: v for k, v in torch_buffers(torch_model).items() if k not in flax_bn}
        rows = buffer_differences(buffers, torch_held)
        if train_step and flax_bn:
            raise ValueError(
                f"compare_with_torch(train_step=True): the module holds Flax's nnx.BatchNorm "
                f"({', '.join(flax_bn)} absent), whose training update is not torch's: expected "
                f"lstm_jax.nnx.BatchNorm1d / BatchNorm2d for a training-mode comparison"
            )
        if train_step:
            rows += _train_step_rows(torch_model, graphdef, state, call, dtype)
        return replace(report, differences=report.differences + tuple(rows))
    finally:
        if stateful:
            torch_model.hidden_cell = saved


def _train_step_rows(
    torch_model: Any, graphdef: Any, state: Any, call: Any, dtype: Any
) -> list[parity.Difference]:
    """One training-mode call of a copy of the module (dropout off) against torch's."""
    import torch

    with parity._x64_if(dtype):
        model: Any = nnx.merge(graphdef, state, copy=True)
        model.train()
        for _, node in nnx.iter_graph(model):
            if isinstance(node, nnx.Dropout):
                node.deterministic = True  # torch's dropout is off too: masks cannot match
        a, k = call.rebuild(call.floating, np.asarray)
        if hasattr(model, "hidden_cell"):
            model.hidden_cell = None
        out = model(*a, **k)
        sd = state_dict(model)
    device = next(torch_model.parameters()).device
    ta, tk = call.rebuild(
        {n: torch.from_numpy(np.array(v)).to(device) for n, v in call.floating.items()},
        lambda v: torch.from_numpy(v.copy()).to(device),
    )

    def run(m: Any) -> Any:
        if hasattr(m, "hidden_cell"):
            m.hidden_cell = None
        return m(*ta, **tk)

    torch_out, torch_after = torch_train_step(torch_model, run)
    after = {k: v for k, v in sd.items() if k in torch_after}
    rows = output_differences(out, torch_out, dtype, "train forward")
    return rows + buffer_differences(after, torch_after, "train buffers")
