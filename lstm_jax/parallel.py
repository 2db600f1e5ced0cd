"""Deprecated: the old path of the data-parallel helpers, moved to
:mod:`lstm_jax.train.parallel`, :mod:`lstm_jax.train.distributed` in 0.2.0. ``import
lstm_jax.parallel`` and its names keep working, with a ``FutureWarning`` naming each name's
new home, until 0.4.0 (the compatibility rule in CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from lstm_jax.common.deprecation import MovedModule

_moved = MovedModule(
    __name__,
    {
        "lstm_jax.train.parallel": (
            "batch_mesh",
            "BATCH_AXIS",
            "check_divisible",
            "auto_mesh",
        ),
        "lstm_jax.train.distributed": ("initialize_distributed",),
    },
    file=__file__,
)


def __getattr__(name: str) -> Any:
    return _moved.attribute(name)


def __dir__() -> list[str]:
    return _moved.names()
