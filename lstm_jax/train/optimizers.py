"""The Optax side of the optimizer specs in :mod:`lstm_jax.common.optim`.

Each spec pairs with a ``torch.optim`` optimizer (built by ``lstm_torch.make_optimizer``)
and with the Optax chain built here that applies the same update rule.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lstm_jax.common.optim import SGD, TORCH_CLIP_EPS, Adam, OptimizerSpec, is_spec


def as_optax(optimizer: Any) -> optax.GradientTransformation:
    """The Optax transformation that ``lstm_jax.fit`` runs for an optimizer.

    Args:
        optimizer: an :mod:`lstm_jax.common.optim` spec, an ``optax.MultiSteps`` or an
            Optax ``GradientTransformation``.

    Returns:
        For a spec, its paired Optax chain (the same object for equal specs); for an
        ``optax.MultiSteps``, its ``init`` and ``update`` with extra arguments passed on
        (the same object for the same MultiSteps); a ``GradientTransformation`` as is."""
    if is_spec(optimizer):
        return spec_to_optax(optimizer)
    if isinstance(optimizer, optax.MultiSteps):
        return _multi_steps(optimizer)
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    raise TypeError(
        f"optimizer: expected an optax.GradientTransformation (or optax.MultiSteps) or an "
        f"lstm_jax.common.optim spec (SGD, Adam, AdamW), got {type(optimizer).__name__}"
    )


@functools.lru_cache(maxsize=64)
def _multi_steps(optimizer: optax.MultiSteps) -> optax.GradientTransformation:
    # not gradient_transformation(): a plain GradientTransformation, whose extra arguments
    # (value= for reduce_on_plateau) with_extra_args_support would drop; update passes them on
    return optax.GradientTransformationExtraArgs(optimizer.init, optimizer.update)


@functools.lru_cache(maxsize=256)
def with_extra_args(
    optimizer: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
    """``optimizer`` whose ``update`` takes extra keyword arguments (the batch loss as
    ``value=``, which ``optax.contrib.reduce_on_plateau`` needs; transformations that
    need none ignore it). The same object for the same ``optimizer``, so a compiled
    training run is reused."""
    return optax.with_extra_args_support(optimizer)


def clip_by_global_norm_torch(max_norm: float) -> Any:
    """``torch.nn.utils.clip_grad_norm_`` as an Optax transformation.

    Scales every update by ``min(max_norm / (global_norm + 1e-6), 1)``, torch's
    formula (``optax.clip_by_global_norm`` uses ``max_norm / global_norm`` and
    leaves updates alone when ``global_norm < max_norm``).
    """

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        norm = optax.tree.norm(updates)
        scale = jnp.minimum(max_norm / (norm + TORCH_CLIP_EPS), 1.0)
        return jax.tree.map(lambda u: u * scale.astype(u.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


@functools.lru_cache(maxsize=256)
def spec_to_optax(spec: OptimizerSpec) -> optax.GradientTransformation:
    """The Optax chain paired with an optimizer spec (the same object for equal specs,
    so a jitted training run compiled for it is reused)."""
    parts = []
    if spec.clip_norm is not None:
        parts.append(clip_by_global_norm_torch(spec.clip_norm))
    if isinstance(spec, SGD):
        if spec.weight_decay:
            parts.append(optax.add_decayed_weights(spec.weight_decay))
        momentum = spec.momentum if spec.momentum else None
        parts.append(optax.sgd(spec.lr, momentum=momentum, nesterov=spec.nesterov))
    elif isinstance(spec, Adam):
        if spec.weight_decay:
            parts.append(optax.add_decayed_weights(spec.weight_decay))
        b1, b2 = spec.betas
        parts.append(optax.adam(spec.lr, b1=b1, b2=b2, eps=spec.eps))
    else:
        b1, b2 = spec.betas
        parts.append(
            optax.adamw(spec.lr, b1=b1, b2=b2, eps=spec.eps, weight_decay=spec.weight_decay)
        )
    return parts[0] if len(parts) == 1 else optax.chain(*parts)
