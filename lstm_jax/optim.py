"""Public alias of :mod:`lstm_jax.common.optim` (numpy only): ``from lstm_jax.optim import SGD``.

``lstm_jax.optim.clip_by_global_norm_torch`` (an Optax transformation, so not numpy-only)
moved to :mod:`lstm_jax.train.optimizers` in 0.2.0; the old name keeps working with a
``FutureWarning`` until 0.4.0, loading JAX and Optax only when it is read.
"""

from typing import Any

from lstm_jax.common.deprecation import MovedModule
from lstm_jax.common.optim import SGD, TORCH_CLIP_EPS, Adam, AdamW, OptimizerSpec, is_spec

__all__ = ["SGD", "TORCH_CLIP_EPS", "Adam", "AdamW", "OptimizerSpec", "is_spec"]

_moved = MovedModule(
    __name__,
    {"lstm_jax.train.optimizers": ("clip_by_global_norm_torch",)},
    file=__file__,
    whole_module=False,
)


def __getattr__(name: str) -> Any:
    return _moved.attribute(name)
