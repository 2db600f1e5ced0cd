"""lstm_torch: the PyTorch reference, the lecture's ``LSTMModeler`` and training loop.

Needs torch, never JAX (it shares only ``lstm_jax.specs``, which imports numpy alone).
"""

from lstm_torch.model import LSTMModeler

__all__ = ["LSTMModeler"]
