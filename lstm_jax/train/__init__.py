"""Training with Optax: ``fit`` (compiled epochs, checkpoints), ``make_train_step``, data
parallelism; any Flax linen model (:mod:`lstm_jax.train.model`) and loss
(:mod:`lstm_jax.train.losses`)."""

from lstm_jax.train.loop import fit, make_train_step, step_update, update
from lstm_jax.train.model import TrainModel, as_train_model
from lstm_jax.train.optimizers import as_optax

__all__ = [
    "TrainModel",
    "as_optax",
    "as_train_model",
    "fit",
    "make_train_step",
    "step_update",
    "update",
]
