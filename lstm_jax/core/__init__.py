"""The JAX core: the LSTM as pure functions over pytrees, in PyTorch's layout.

``state`` (the named carry and weights), ``cell`` (one step and its derivative: the one
place of the gate math), ``recurrence`` (one layer-direction over time: the ``impl`` /
``remat`` knobs and their dispatch to ``scan``, ``remat`` and ``cudnn``), ``stack``
(layers and directions), ``init`` (torch's initialisation). Nothing here imports
Flax, Optax or torch.
"""

from lstm_jax.core.cell import StepWeights, lstm_cell, split_gates, step_weights
from lstm_jax.core.stack import (
    cell_params,
    dropout,
    last_valid_step,
    linear,
    lstm,
    lstm_layer,
    reverse_padded,
    zero_state,
)
from lstm_jax.core.state import CellParams, LSTMState

__all__ = [
    "CellParams",
    "LSTMState",
    "StepWeights",
    "cell_params",
    "dropout",
    "last_valid_step",
    "linear",
    "lstm",
    "lstm_cell",
    "lstm_layer",
    "reverse_padded",
    "split_gates",
    "step_weights",
    "zero_state",
]
