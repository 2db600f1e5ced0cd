"""Deprecated: the old path of the checkpoints, moved to :mod:`lstm_jax.interop.checkpoint` in
0.2.0. ``import lstm_jax.checkpoint`` and its names keep working, with a ``FutureWarning``
naming each name's new home, until 0.4.0 (the compatibility rule in CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from lstm_jax.common.deprecation import MovedModule

_moved = MovedModule(
    __name__,
    {
        "lstm_jax.interop.checkpoint": (
            "save_checkpoint",
            "load_checkpoint",
            "CheckpointError",
            "build_model",
            "Model",
        ),
    },
    file=__file__,
)


def __getattr__(name: str) -> Any:
    return _moved.attribute(name)


def __dir__() -> list[str]:
    return _moved.names()
