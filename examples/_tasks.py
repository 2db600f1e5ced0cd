"""Small training tasks the JAX-only examples share (numpy only, so importing this
starts no JAX: ``data_parallel.py`` must set ``XLA_FLAGS`` first).

- the lecture's: three temperatures and the next day's (test: 27 -> 28);
- a synthetic sequence task with unit-scale inputs, as the parity tests' (T=20, I=3).
"""

from __future__ import annotations

import numpy as np

from lstm_jax.common.lecture import LECTURE_MODEL, LECTURE_X, LECTURE_Y

__all__ = ["LECTURE_MODEL", "LECTURE_X", "LECTURE_Y", "SYNTHETIC_MODEL", "synthetic_data"]

SYNTHETIC_MODEL = {"input_size": 3, "hidden_layer_size": 16, "output_size": 1, "num_layers": 2}


def synthetic_data(n: int, seq_len: int = 20, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """xs (N, T, 3) standard normal; ys (N, 1): a squashed sum of the last five steps'
    first feature plus a memory of the first step's second feature."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, seq_len, 3)).astype(np.float32)
    y = 0.5 * np.tanh(x[:, -5:, 0].sum(axis=1)) + 0.25 * x[:, 0, 1]
    return x, y[:, None].astype(np.float32)
