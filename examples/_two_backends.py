"""What the real-data examples share: train one model in both backends, predict with each.

Not a script: ``examples/sunspots.py`` and ``examples/digits.py`` import it
(Python puts the script's folder on ``sys.path``).

:func:`train_both` builds ``lstm_torch.LSTMModeler`` with ``torch.manual_seed(seed)``,
copies its initial weights into ``lstm_jax.LSTMModeler`` (``params_from_torch``),
and trains each with its ``fit`` on the same data in the same order
(``shuffle_seed``). Callers pin precision on both sides with
``lstm_jax.interop.precision.pinned_precision``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import torch

import lstm_jax
import lstm_torch


@dataclass
class Trained:
    """Both trained models and their per-epoch losses and wall times (seconds)."""

    torch_model: lstm_torch.LSTMModeler
    torch_losses: np.ndarray
    torch_seconds: float
    jax_model: lstm_jax.LSTMModeler
    variables: dict[str, Any]
    jax_losses: np.ndarray
    jax_seconds: float  # the first call: compilation included

    def times(self, torch_threads: int) -> str:
        """The wall-time line the examples print."""
        return (
            f"wall time: torch fit {self.torch_seconds:.1f} s ({torch_threads} thread(s)); "
            f"jax fit {self.jax_seconds:.1f} s (one compiled program, compilation included)"
        )

    def predict_torch(self, xs: np.ndarray) -> np.ndarray:
        """xs (N, T, I) -> (N, O), ``hidden_cell`` from zeros."""
        x = torch.from_numpy(np.ascontiguousarray(np.swapaxes(xs, 0, 1)))
        model = self.torch_model
        with torch.no_grad():
            model.eval()
            model.hidden_cell = model.zero_hidden_cell(len(xs))
            return model(x).numpy()

    def predict_jax(self, xs: np.ndarray) -> np.ndarray:
        """xs (N, T, I) -> (N, O), ``hidden_cell`` from zeros."""
        y, _ = jax.jit(self.jax_model.apply)(self.variables, np.swapaxes(xs, 0, 1))
        return np.asarray(y)


def train_both(
    input_size: int,
    hidden: int,
    output_size: int,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    seed: int,
    **fit_options: Any,
) -> Trained:
    """Train ``LSTMModeler(input_size, hidden, output_size)`` with ``lstm_torch.fit`` and,
    from a copy of the same initial weights, with ``lstm_jax.fit``.

    Arguments:
        xs: (N, T, I) float32 sequences; ys: (N, O) targets or (N,) labels.
        seed: ``torch.manual_seed`` for the initial weights, and the shuffle seed.
        fit_options: ``optimizer``, ``epochs``, ``batch_size``, ``loss``, passed to both.
    """
    torch.manual_seed(seed)
    torch_model = lstm_torch.LSTMModeler(input_size, hidden, output_size)
    initial = {k: v.detach().clone() for k, v in torch_model.state_dict().items()}
    options = {"shuffle_seed": seed, **fit_options}

    start = time.perf_counter()
    torch_losses = lstm_torch.fit(torch_model, xs, ys, progress=True, **options)
    torch_seconds = time.perf_counter() - start

    jax_model = lstm_jax.LSTMModeler(input_size, hidden, output_size)
    start = time.perf_counter()
    variables, jax_losses = lstm_jax.fit(
        jax_model, lstm_jax.params_from_torch(initial), xs, ys, **options
    )
    jax.block_until_ready(variables)
    jax_seconds = time.perf_counter() - start
    return Trained(
        torch_model, torch_losses, torch_seconds, jax_model, variables, jax_losses, jax_seconds
    )
