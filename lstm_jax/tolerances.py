"""Deprecated: the old path of the parity tolerances, moved to
:mod:`lstm_jax.common.tolerances` in 0.2.0. ``import lstm_jax.tolerances`` and its names
keep working, with a ``FutureWarning`` naming each name's new home, until 0.4.0 (the
compatibility rule in CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from lstm_jax.common.deprecation import MovedModule

_moved = MovedModule(
    __name__,
    {
        "lstm_jax.common.tolerances": (
            "FORWARD",
            "GRADIENT",
            "TRAINING",
            "scaled_error",
            "assert_close",
        ),
    },
    file=__file__,
)


def __getattr__(name: str) -> Any:
    return _moved.attribute(name)


def __dir__() -> list[str]:
    return _moved.names()
