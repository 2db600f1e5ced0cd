"""lstm_jax: PyTorch's LSTM and the lecture's LSTMModeler in JAX/Flax.

Parameters use torch's names, shapes and gate order (two biases), so weights
move between the backends with :func:`params_from_torch` / :func:`params_to_torch`.

Submodules load on first use (PEP 562), so ``lstm_jax.common.config`` (numpy only)
can serve ``lstm_torch`` without importing JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lstm_jax.common.version import __version__ as __version__

_EXPORTS = {
    "LSTMState": "lstm_jax.core.state",
    "CellParams": "lstm_jax.core.state",
    "LSTM": "lstm_jax.linen.modules",
    "LSTMModeler": "lstm_jax.linen.modules",
    "Linear": "lstm_jax.linen.modules",
    "LSTMCell": "lstm_jax.linen.cell",
    "BatchNorm1d": "lstm_jax.linen.batchnorm",
    "BatchNorm2d": "lstm_jax.linen.batchnorm",
    "GRU": "lstm_jax.linen.family",
    "RNN": "lstm_jax.linen.family",
    "GRUCell": "lstm_jax.linen.family_cells",
    "RNNCell": "lstm_jax.linen.family_cells",
    "LSTMConfig": "lstm_jax.common.config",
    "params_from_torch": "lstm_jax.interop.transfer",
    "params_to_torch": "lstm_jax.interop.transfer",
    "LeafRule": "lstm_jax.interop.leaf_rules",
    "register_layer": "lstm_jax.interop.leaf_rules",
    "CheckpointError": "lstm_jax.common.checkpoint_format",
    "save_checkpoint": "lstm_jax.interop.checkpoint",
    "load_checkpoint": "lstm_jax.interop.checkpoint",
    "ParityReport": "lstm_jax.interop.compare",
    "compare_with_torch": "lstm_jax.interop.compare",
    "TrainingReport": "lstm_jax.interop.compare_training",
    "compare_training": "lstm_jax.interop.compare_training",
    "streaming_step": "lstm_jax.linen.streaming",
    "fit": "lstm_jax.train.loop",
    "initialize_distributed": "lstm_jax.train.distributed",
    "batch_mesh": "lstm_jax.train.parallel",
    "make_train_step": "lstm_jax.train.loop",
    "as_optax": "lstm_jax.train.optimizers",
    "TrainingDiverged": "lstm_jax.common.errors",
    "WorkerLost": "lstm_jax.common.errors",
    "Preempted": "lstm_jax.common.errors",
    "TrainingInterrupted": "lstm_jax.common.errors",
    "CheckpointWriteError": "lstm_jax.common.errors",
    "CheckpointDirBusy": "lstm_jax.common.errors",
    "SGD": "lstm_jax.common.optim",
    "Adam": "lstm_jax.common.optim",
    "AdamW": "lstm_jax.common.optim",
    "epoch_orders": "lstm_jax.common.data",
    "find_nonfinite": "lstm_jax.common.finite",
    "check_finite": "lstm_jax.common.finite",
    "NonFinite": "lstm_jax.common.finite",
}

__all__ = [  # noqa: RUF022 - grouped by module, as _EXPORTS
    "CellParams",
    "LSTMState",
    "LSTM",
    "LSTMModeler",
    "Linear",
    "LSTMCell",
    "BatchNorm1d",
    "BatchNorm2d",
    "GRU",
    "RNN",
    "GRUCell",
    "RNNCell",
    "LSTMConfig",
    "params_from_torch",
    "params_to_torch",
    "LeafRule",
    "register_layer",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "ParityReport",
    "compare_with_torch",
    "TrainingReport",
    "compare_training",
    "streaming_step",
    "fit",
    "initialize_distributed",
    "batch_mesh",
    "make_train_step",
    "as_optax",
    "TrainingDiverged",
    "WorkerLost",
    "Preempted",
    "TrainingInterrupted",
    "CheckpointWriteError",
    "CheckpointDirBusy",
    "SGD",
    "Adam",
    "AdamW",
    "epoch_orders",
    "find_nonfinite",
    "check_finite",
    "NonFinite",
]

if TYPE_CHECKING:
    from lstm_jax.common.checkpoint_format import CheckpointError
    from lstm_jax.common.config import LSTMConfig
    from lstm_jax.common.data import epoch_orders
    from lstm_jax.common.errors import (
        CheckpointDirBusy,
        CheckpointWriteError,
        Preempted,
        TrainingDiverged,
        TrainingInterrupted,
        WorkerLost,
    )
    from lstm_jax.common.finite import NonFinite, check_finite, find_nonfinite
    from lstm_jax.common.optim import SGD, Adam, AdamW
    from lstm_jax.core.state import CellParams, LSTMState
    from lstm_jax.interop.checkpoint import load_checkpoint, save_checkpoint
    from lstm_jax.interop.compare import ParityReport, compare_with_torch
    from lstm_jax.interop.compare_training import TrainingReport, compare_training
    from lstm_jax.interop.leaf_rules import LeafRule, register_layer
    from lstm_jax.interop.transfer import params_from_torch, params_to_torch
    from lstm_jax.linen.batchnorm import BatchNorm1d, BatchNorm2d
    from lstm_jax.linen.cell import LSTMCell
    from lstm_jax.linen.family import GRU, RNN
    from lstm_jax.linen.family_cells import GRUCell, RNNCell
    from lstm_jax.linen.modules import LSTM, Linear, LSTMModeler
    from lstm_jax.linen.streaming import streaming_step
    from lstm_jax.train.distributed import initialize_distributed
    from lstm_jax.train.loop import fit, make_train_step
    from lstm_jax.train.optimizers import as_optax
    from lstm_jax.train.parallel import batch_mesh


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name == "nnx":  # the Flax NNX modules: lstm_jax.nnx.LSTM, ... (loaded on first use)
        return importlib.import_module("lstm_jax.nnx")
    raise AttributeError(f"module 'lstm_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "nnx"])
