"""Checkpoints of Flax NNX modules: the same safetensors files, under torch's keys.

``lstm_jax.save_checkpoint(path, module)`` / ``lstm_jax.load_checkpoint(path, module)``
come here for an ``nnx.Module``. Generic over ``flax.nnx``: a module carrying an
``LSTMConfig`` as ``config`` is recorded as the built-in kind it mirrors
(``"LSTMModeler"`` with ``output_size``, else ``"LSTM"``), so ``lstm_torch.load_checkpoint``
rebuilds the torch model from the file alone; any other module is kind ``"model"``.
Loading writes the tensors into the module (all or nothing, bitwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from lstm_jax.common import checkpoint_format as fmt
from lstm_jax.common.checkpoint_format import MODEL, CheckpointHeader, PathLike
from lstm_jax.common.config import LSTMConfig
from lstm_jax.interop.nnx_transfer import load_state_dict, state_dict, torch_leaves


def nnx_header(
    module: nnx.Module, dtype: Any, tied: Mapping[str, str] | None = None
) -> CheckpointHeader:
    """The checkpoint header of an NNX module (see the module docstring), with the torch
    model's ``tied`` keys for a model of one's own."""
    config = getattr(module, "config", None)
    if isinstance(config, LSTMConfig) and config.input_size is not None:
        output_size = getattr(module, "output_size", None)
        if isinstance(output_size, int):
            return CheckpointHeader("LSTMModeler", config, output_size, np.dtype(dtype))
        return CheckpointHeader("LSTM", config, None, np.dtype(dtype))
    return CheckpointHeader(
        MODEL, None, None, np.dtype(dtype), type(module).__name__, dict(tied or {})
    )


def save_nnx(path: PathLike, module: nnx.Module, tied: Mapping[str, str] | None = None) -> None:
    """Write ``module``'s parameters to ``path`` (safetensors, atomically).

    Arguments:
        tied: ``{torch key: key it shares}``, the torch model's ties where the module
            holds the tensor once (as for the linen ``save_checkpoint``).
    """
    arrays = state_dict(module)
    header = nnx_header(module, fmt.common_dtype(arrays, "save_checkpoint"), tied)
    if tied and header.kind != MODEL:
        raise ValueError(f"save_checkpoint: {type(module).__name__} has no tied weights")
    for alias, source in (tied or {}).items():
        if source not in arrays:
            raise ValueError(f"tied: {alias!r} shares {source!r}, which the module lacks")
        arrays[alias] = arrays[source]
    fmt.save(path, arrays, header)


def load_nnx(path: PathLike, module: nnx.Module) -> tuple[nnx.Module, nnx.State]:
    """Read ``path`` into ``module``'s parameters; return ``(module, nnx.state(module))``.

    Raises:
        CheckpointError: a file of another configuration or kind than the module's.
        ValueError / TypeError: as ``load_state_dict`` (keys, shapes, dtypes).
    """
    header, arrays = fmt.load(path)
    own = nnx_header(module, header.dtype)
    if header.kind != MODEL or own.kind != MODEL:
        fmt.check_fits(header, own, path)
    expected = torch_leaves(module)
    for alias, key in (header.tied or {}).items():  # a tie stored once, held twice here
        if alias in expected and alias not in arrays and key in arrays:
            arrays[alias] = arrays[key]
    load_state_dict(module, arrays, strict=True)
    return module, nnx.state(module)
