"""Training with Optax: ``fit`` (one compiled program), ``make_train_step``, data parallelism."""

from lstm_jax.train.loop import fit, make_train_step, update
from lstm_jax.train.optimizers import as_optax

__all__ = ["as_optax", "fit", "make_train_step", "update"]
