"""The JAX core: the LSTM as pure functions over pytrees, in PyTorch's layout.

``state`` (the named carry and weights), ``cell`` (one step), ``recurrence`` (one
layer-direction over time: scan, hand-written backward, remat, cuDNN), ``stack``
(layers and directions), ``init`` (torch's initialisation). Nothing here imports
Flax, Optax or torch.
"""

from lstm_jax.core.stack import (
    cell_from_projection,
    cell_params,
    dropout,
    input_projection,
    last_valid_step,
    linear,
    lstm,
    lstm_cell,
    lstm_layer,
    reverse_padded,
    zero_state,
)
from lstm_jax.core.state import CellParams, LSTMState

__all__ = [
    "CellParams",
    "LSTMState",
    "cell_from_projection",
    "cell_params",
    "dropout",
    "input_projection",
    "last_valid_step",
    "linear",
    "lstm",
    "lstm_cell",
    "lstm_layer",
    "reverse_padded",
    "zero_state",
]
