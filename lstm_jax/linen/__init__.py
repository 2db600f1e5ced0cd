"""Flax linen modules with torch's parameter names; they declare parameters and call the core."""

from lstm_jax.linen.cell import LSTMCell
from lstm_jax.linen.family import GRU, RNN
from lstm_jax.linen.family_cells import GRUCell, RNNCell
from lstm_jax.linen.modules import LSTM, Linear, LSTMModeler

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "LSTMModeler", "Linear", "RNNCell"]
