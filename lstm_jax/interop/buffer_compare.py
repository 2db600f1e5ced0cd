"""The buffers in a parity report: torch's running statistics against Flax's ``batch_stats``.

:func:`lstm_jax.compare_with_torch` adds, for a model with BatchNorm, one row per
buffer (group ``"buffers"``: the statistics the eval-mode forward used), and, with
``train_step=True``, one training-mode forward on both sides: its outputs (group
``"train forward"``) and the running statistics it leaves (group ``"train buffers"``).
Dropout is off on both sides for that step (its masks cannot match); torch's model is
copied, so the caller's keeps its buffers and mode. Needs torch.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from lstm_jax.common.tolerances import FORWARD
from lstm_jax.interop.parity import Difference, _difference
from lstm_jax.interop.transfer import BUFFER_NAMES
from lstm_jax.linen.modules import LSTM

# the keywords that put a Flax model in training mode, and their training values
TRAINING_KEYWORDS = {"train": True, "training": True, "deterministic": False}


def torch_buffers(torch_model: Any) -> dict[str, np.ndarray]:
    """``{key: numpy array}`` of a torch model's buffers."""
    return {k: v.detach().cpu().numpy() for k, v in torch_model.named_buffers()}


def buffer_differences(
    jax_buffers: Mapping[str, Any], torch_buffers: Mapping[str, np.ndarray], group: str = "buffers"
) -> list[Difference]:
    """One row per torch buffer (``running_mean``, ...), against the JAX side's
    ``{torch key: array}``; an error names a BatchNorm buffer that one side lacks (a
    buffer of one's own, a constant such as a positional table, that the Flax model
    computes instead of holding is not compared)."""
    torch_buffers = {
        k: v
        for k, v in torch_buffers.items()
        if k in jax_buffers or k.rsplit(".", 1)[-1] in BUFFER_NAMES
    }
    missing = sorted(set(torch_buffers) ^ set(jax_buffers))
    if missing:
        raise ValueError(
            f"compare_with_torch: expected the same buffers on both sides, got "
            f"{', '.join(missing)} on one side only (torch: {sorted(torch_buffers)}, JAX: "
            f"{sorted(jax_buffers)})"
        )
    rows = []
    for key, reference in torch_buffers.items():
        tol = FORWARD[np.dtype(np.float64 if reference.dtype == np.float64 else np.float32)]
        rows.append(_difference(key, group, np.asarray(jax_buffers[key]), reference, tol))
    return rows


def torch_train_step(torch_model: Any, call: Callable[[Any], Any]) -> tuple[Any, dict[str, Any]]:
    """One training-mode forward of a copy of ``torch_model`` (dropout off), without grad:
    ``(outputs, {buffer key: array after})``."""
    import torch

    model = copy.deepcopy(torch_model).train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.eval()
    for module in model.modules():  # the recurrent layers' inter-layer dropout
        if isinstance(module, torch.nn.RNNBase):
            module.dropout = 0.0
    with torch.no_grad():
        out = call(model)
    return out, torch_buffers(model)


def training_keywords(flax_model: nn.Module, given: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword that puts ``flax_model`` in training mode (``train=True``,
    ``deterministic=False``), or a ``TypeError`` when its ``__call__`` takes none."""
    params = inspect.signature(type(flax_model).__call__).parameters
    found = {k: v for k, v in TRAINING_KEYWORDS.items() if k in params and k not in given}
    if not found and not any(k in given for k in TRAINING_KEYWORDS):
        raise TypeError(
            f"compare_with_torch(train_step=True): expected {type(flax_model).__name__}.__call__ "
            f"to take train= or deterministic= (its training mode), got "
            f"({', '.join(list(params)[1:])})"
        )
    return found


def no_dropout(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
    """An ``nn.intercept_methods`` interceptor: Flax dropout off (torch's is, too)."""
    module = context.module
    if context.method_name == "__call__" and isinstance(module, nn.Dropout):
        return args[0]
    if context.method_name == "__call__" and isinstance(module, LSTM) and module.dropout:
        kwargs = {**kwargs, "deterministic": True}
    return next_fun(*args, **kwargs)


def flax_train_step(
    flax_model: nn.Module, variables: Mapping[str, Any], args: tuple, kwargs: Mapping[str, Any]
) -> tuple[Any, Mapping[str, Any]]:
    """One training-mode apply of ``flax_model`` (dropout off), its ``batch_stats``
    mutable: ``(outputs, the updated collections)``."""
    extra = training_keywords(flax_model, kwargs)
    with nn.intercept_methods(no_dropout):
        return flax_model.apply(variables, *args, **kwargs, **extra, mutable=["batch_stats"])


def output_differences(
    jax_out: Any, torch_out: Any, dtype: np.dtype, group: str
) -> list[Difference]:
    """Rows for every output leaf (tuples by position), named ``output``, ``output[0]``..."""
    import torch

    jax_leaves = jax.tree.leaves(jax_out)
    torch_leaves = [
        t.detach().cpu().numpy()
        for t in jax.tree.leaves(torch_out, is_leaf=lambda v: isinstance(v, torch.Tensor))
    ]
    if len(jax_leaves) != len(torch_leaves):
        raise ValueError(
            f"compare_with_torch: the training-mode outputs have {len(jax_leaves)} leaves in "
            f"JAX and {len(torch_leaves)} in torch"
        )
    single = len(jax_leaves) == 1
    return [
        _difference(
            "train output" if single else f"train output[{k}]",
            group,
            np.asarray(j),
            t,
            FORWARD[dtype],
        )
        for k, (j, t) in enumerate(zip(jax_leaves, torch_leaves, strict=True))
    ]
