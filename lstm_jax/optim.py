"""Public alias of :mod:`lstm_jax.common.optim` (numpy only): ``from lstm_jax.optim import SGD``."""

from lstm_jax.common.optim import SGD, Adam, AdamW, OptimizerSpec, is_spec

__all__ = ["SGD", "Adam", "AdamW", "OptimizerSpec", "is_spec"]
