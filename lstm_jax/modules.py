"""Deprecated: the old path of the Flax linen modules, moved to :mod:`lstm_jax.linen.modules`,
:mod:`lstm_jax.core.layout` in 0.2.0. ``import lstm_jax.modules`` and its names keep
working, with a ``FutureWarning`` naming each name's new home, until 0.4.0 (the
compatibility rule in CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from lstm_jax.common.deprecation import MovedModule

_moved = MovedModule(
    __name__,
    {
        "lstm_jax.linen.modules": (
            "LSTM",
            "LSTMModeler",
            "Linear",
        ),
        "lstm_jax.core.layout": (
            "StateLike",
            "lecture_view",
            "broadcast_hidden_cell",
        ),
    },
    file=__file__,
)


def __getattr__(name: str) -> Any:
    return _moved.attribute(name)


def __dir__() -> list[str]:
    return _moved.names()
