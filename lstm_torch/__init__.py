"""lstm_torch: the PyTorch reference, the lecture's ``LSTMModeler`` and training loop.

Needs torch, never JAX: it shares only ``lstm_jax.common`` (numpy and safetensors alone).
"""

from lstm_jax.common.finite import check_finite, find_nonfinite
from lstm_torch.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lstm_torch.model import LSTMModeler
from lstm_torch.train import TrainingDiverged, fit, make_optimizer

__all__ = [
    "CheckpointError",
    "LSTMModeler",
    "TrainingDiverged",
    "check_finite",
    "find_nonfinite",
    "fit",
    "load_checkpoint",
    "make_optimizer",
    "save_checkpoint",
]
