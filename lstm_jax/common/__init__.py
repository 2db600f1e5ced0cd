"""The numpy-only part shared by both backends: ``lstm_torch`` imports it without JAX.

``config`` (nn.LSTM's options, torch parameter names and shapes, input checks),
``data`` (data order, batches), ``optim`` (optimizer specs), ``checkpoint_format``,
``tolerances``, ``errors``, ``finite`` (non-finite input checks). Nothing here
imports jax, flax, optax or torch (import-linter checks it).
"""
