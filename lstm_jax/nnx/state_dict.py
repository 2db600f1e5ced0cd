"""torch's ``state_dict()`` / ``load_state_dict()`` as methods of lstm_jax's NNX modules.

The functions, for any NNX model whose attributes carry torch's names, live in
:mod:`lstm_jax.interop.nnx_transfer` (the leaf rules, strictness, dtypes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lstm_jax.interop.nnx_transfer import IncompatibleKeys, load_state_dict, state_dict

__all__ = ["IncompatibleKeys", "TorchStateDict", "load_state_dict", "state_dict"]


class TorchStateDict:
    """Mixin giving an NNX module torch's ``state_dict()`` and ``load_state_dict()``."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{torch key: numpy array}`` of this module's parameters, bitwise."""
        return state_dict(self)  # type: ignore[arg-type]

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """torch's ``load_state_dict``, all or nothing; see
        :func:`lstm_jax.interop.nnx_transfer.load_state_dict`."""
        return load_state_dict(self, state_dict, strict)  # type: ignore[arg-type]
