"""Everything that faces torch: weight transfer, the parity report, checkpoints.

The only part of ``lstm_jax`` that may touch torch, and only lazily (inside functions).
"""
