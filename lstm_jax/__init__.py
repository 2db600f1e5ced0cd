"""lstm_jax: PyTorch's LSTM and the lecture's LSTMModeler in JAX/Flax.

Parameters use torch's names, shapes and gate order (two biases), so weights
move between the backends with :func:`params_from_torch` / :func:`params_to_torch`.

Submodules load on first use (PEP 562), so ``lstm_jax.specs`` (numpy only)
can serve ``lstm_torch`` without importing JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "LSTMState": "lstm_jax.core",
    "CellParams": "lstm_jax.core",
    "LSTM": "lstm_jax.modules",
    "LSTMModeler": "lstm_jax.modules",
    "Linear": "lstm_jax.modules",
    "LSTMConfig": "lstm_jax.specs",
    "params_from_torch": "lstm_jax.transfer",
    "params_to_torch": "lstm_jax.transfer",
    "CheckpointError": "lstm_jax.checkpoint_format",
    "save_checkpoint": "lstm_jax.checkpoint",
    "load_checkpoint": "lstm_jax.checkpoint",
    "ParityReport": "lstm_jax.compare",
    "compare_with_torch": "lstm_jax.compare",
    "fit": "lstm_jax.train",
    "make_train_step": "lstm_jax.train",
    "as_optax": "lstm_jax.train",
    "TrainingDiverged": "lstm_jax.errors",
    "SGD": "lstm_jax.optim",
    "Adam": "lstm_jax.optim",
    "AdamW": "lstm_jax.optim",
    "epoch_orders": "lstm_jax.data",
    "find_nonfinite": "lstm_jax.checks",
    "check_finite": "lstm_jax.checks",
    "NonFinite": "lstm_jax.checks",
}

__all__ = [  # noqa: RUF022 - grouped by module, as _EXPORTS
    "CellParams",
    "LSTMState",
    "LSTM",
    "LSTMModeler",
    "Linear",
    "LSTMConfig",
    "params_from_torch",
    "params_to_torch",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "ParityReport",
    "compare_with_torch",
    "fit",
    "make_train_step",
    "as_optax",
    "TrainingDiverged",
    "SGD",
    "Adam",
    "AdamW",
    "epoch_orders",
    "find_nonfinite",
    "check_finite",
    "NonFinite",
]

if TYPE_CHECKING:
    from lstm_jax.checkpoint import load_checkpoint, save_checkpoint
    from lstm_jax.checkpoint_format import CheckpointError
    from lstm_jax.checks import NonFinite, check_finite, find_nonfinite
    from lstm_jax.compare import ParityReport, compare_with_torch
    from lstm_jax.core import CellParams, LSTMState
    from lstm_jax.data import epoch_orders
    from lstm_jax.errors import TrainingDiverged
    from lstm_jax.modules import LSTM, Linear, LSTMModeler
    from lstm_jax.optim import SGD, Adam, AdamW
    from lstm_jax.specs import LSTMConfig
    from lstm_jax.train import as_optax, fit, make_train_step
    from lstm_jax.transfer import params_from_torch, params_to_torch


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lstm_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
