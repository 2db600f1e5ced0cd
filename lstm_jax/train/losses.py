"""Batch losses: the named ones (torch's means) and any callable.

A loss is ``"mse"``, ``"cross_entropy"`` or a callable
``loss(prediction, target) -> scalar`` or ``-> (scalar, aux)``; :func:`loss_and_aux`
evaluates any of them as ``(scalar, aux)`` (aux ``None`` for the named ones).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from lstm_jax.common.data import check_loss, layout_hint

Array = jax.Array


def check_jax_loss(loss: Any) -> Any:
    """:func:`~lstm_jax.common.data.check_loss`, and not a torch loss (it takes torch
    tensors, not the JAX arrays training traces)."""
    loss = check_loss(loss)
    module = getattr(loss, "__module__", None) or type(loss).__module__
    if callable(loss) and module.split(".")[0] == "torch":
        name = getattr(loss, "__qualname__", None) or type(loss).__qualname__
        raise TypeError(
            f"loss: expected a function of JAX arrays (or 'mse', 'cross_entropy'), got torch's "
            f"{module}.{name}, which takes torch tensors (optax.losses has JAX ones; "
            f"lstm_torch.fit takes torch losses)"
        )
    return loss


def loss_value(loss: str, prediction: Array, target: Array) -> Array:
    """A named batch loss, a scalar.

    Arguments:
        loss: ``"mse"``: ``mean((prediction - target)**2)`` over all elements (as
            ``nn.MSELoss``); ``"cross_entropy"``: the mean over all positions of
            ``-log_softmax(prediction)[target]`` (as ``nn.CrossEntropyLoss`` on the
            flattened positions).
        prediction: (B, O), or any (..., O).
        target: floats of the prediction's shape for ``"mse"``; integer labels of
            shape ``prediction.shape[:-1]`` ((B,) for (B, O)) for ``"cross_entropy"``.
    """
    if not hasattr(prediction, "shape"):
        raise TypeError(
            f"{loss}: expected the model's prediction as an array (its first output when it "
            f"returns a tuple), got {type(prediction).__name__}; a callable loss can read it"
        )
    if loss == "mse":
        if target.shape != prediction.shape:
            raise ValueError(
                f"mse: expected targets of the predictions' shape {prediction.shape}, "
                f"got {target.shape}{layout_hint(prediction.shape, target.shape)}"
            )
        return jnp.mean(jnp.square(prediction - target))
    if target.shape != prediction.shape[:-1] or not jnp.issubdtype(target.dtype, jnp.integer):
        raise ValueError(
            f"cross_entropy: expected integer labels of shape {prediction.shape[:-1]} for "
            f"predictions of shape {prediction.shape}, got {target.dtype} {target.shape}"
            f"{layout_hint(prediction.shape[:-1], target.shape)}"
        )
    return optax.losses.softmax_cross_entropy_with_integer_labels(prediction, target).mean()


def loss_and_aux(loss: Any, prediction: Array, target: Array) -> tuple[Array, Any]:
    """Any loss (a name or a callable) as ``(scalar, aux)``."""
    if not callable(loss):
        return loss_value(loss, prediction, target), None
    out = loss(prediction, target)
    value, aux = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
    if not hasattr(value, "dtype") and not isinstance(value, float | int):
        raise TypeError(
            f"loss: expected the callable to return a float scalar (or (scalar, aux)), got "
            f"{type(value).__name__}"
        )
    value = jnp.asarray(value)
    if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(
            f"loss: expected the callable to return a float scalar (or (scalar, aux)), got "
            f"{value.dtype} of shape {value.shape}"
        )
    return value, aux


__all__ = ["check_jax_loss", "check_loss", "loss_and_aux", "loss_value"]
