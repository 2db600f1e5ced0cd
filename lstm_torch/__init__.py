"""lstm_torch: the PyTorch reference, the lecture's ``LSTMModeler`` and training loop.

Needs torch, never JAX (it shares only ``lstm_jax.specs`` and ``lstm_jax.checkpoint_format``,
which import numpy and safetensors alone).
"""

from lstm_torch.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lstm_torch.model import LSTMModeler

__all__ = ["CheckpointError", "LSTMModeler", "load_checkpoint", "save_checkpoint"]
