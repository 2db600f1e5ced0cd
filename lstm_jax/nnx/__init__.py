"""Flax NNX modules with torch's constructors, parameter names and ``state_dict`` methods.

``LSTM``, ``GRU``, ``RNN``, their cells, ``Linear`` and the lecture's ``LSTMModeler``
(with its stored ``hidden_cell`` as module state); ``state_dict`` / ``load_state_dict`` for any NNX
model whose attributes carry torch's names; ``from_linen`` / ``to_linen`` between
linen variables and NNX modules of the same configuration.
"""

from lstm_jax.nnx.batchnorm import BatchNorm1d, BatchNorm2d
from lstm_jax.nnx.cell import LSTMCell
from lstm_jax.nnx.convert import from_linen, to_linen
from lstm_jax.nnx.family import GRU, RNN, GRUCell, RNNCell
from lstm_jax.nnx.modules import LSTM, HiddenCell, Linear, LSTMModeler
from lstm_jax.nnx.state_dict import IncompatibleKeys, load_state_dict, state_dict

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "BatchNorm1d",
    "BatchNorm2d",
    "GRUCell",
    "HiddenCell",
    "IncompatibleKeys",
    "LSTMCell",
    "LSTMModeler",
    "Linear",
    "RNNCell",
    "from_linen",
    "load_state_dict",
    "state_dict",
    "to_linen",
]
