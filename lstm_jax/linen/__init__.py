"""Flax linen modules with torch's parameter names; they declare parameters and call the core."""

from lstm_jax.linen.cell import LSTMCell
from lstm_jax.linen.modules import LSTM, Linear, LSTMModeler

__all__ = ["LSTM", "LSTMCell", "LSTMModeler", "Linear"]
