"""Deprecated: the old path of the parity report, moved to :mod:`lstm_jax.interop.compare`,
:mod:`lstm_jax.interop.parity` in 0.2.0. ``import lstm_jax.compare`` and its names keep
working, with a ``FutureWarning`` naming each name's new home, until 0.4.0 (the
compatibility rule in CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from lstm_jax.common.deprecation import MovedModule

_moved = MovedModule(
    __name__,
    {
        "lstm_jax.interop.compare": (
            "compare_with_torch",
            "ParityReport",
            "Difference",
            "pinned_precision",
        ),
        "lstm_jax.interop.parity": ("GROUPS",),
    },
    file=__file__,
)


def __getattr__(name: str) -> Any:
    return _moved.attribute(name)


def __dir__() -> list[str]:
    return _moved.names()
