"""``lstm_torch.fit``'s batch losses: the named ones, as ``lstm_jax.fit`` computes them, and
any callable.

The names are :data:`lstm_jax.common.data.LOSSES`, the one table both backends share;
each name means the same function of ``(prediction, target)`` on both sides:

- ``"mse"``: ``mean((prediction - target) ** 2)`` over all elements; the target has the
  prediction's shape (no broadcasting, which would average the wrong pairs).
- ``"cross_entropy"``: the mean over all positions of ``-log_softmax(prediction)[target]``
  with the classes on the LAST axis: prediction (..., C), integer labels of shape
  ``prediction.shape[:-1]``. For (B, C) that is ``nn.CrossEntropyLoss``; for per-step
  (B, T, C) logits it flattens the positions (``nn.CrossEntropyLoss`` would take the
  classes from axis 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lstm_jax.common.data import LOSSES, check_loss, layout_hint

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``"mse"``: the mean squared error of a prediction and a target of its shape."""
    _check_prediction("mse", prediction)
    if target.shape != prediction.shape:
        raise ValueError(
            f"mse: expected targets of the predictions' shape {tuple(prediction.shape)}, "
            f"got {tuple(target.shape)}{layout_hint(tuple(prediction.shape), tuple(target.shape))}"
        )
    return F.mse_loss(prediction, target)


def cross_entropy(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``"cross_entropy"``: logits (..., C), integer labels ``prediction.shape[:-1]`` in
    [0, C); the mean over all positions."""
    _check_prediction("cross_entropy", prediction)
    if target.shape != prediction.shape[:-1] or target.is_floating_point():
        raise ValueError(
            f"cross_entropy: expected integer labels of shape {tuple(prediction.shape[:-1])} "
            f"for predictions of shape {tuple(prediction.shape)}, got {target.dtype} "
            f"{tuple(target.shape)}{layout_hint(tuple(prediction.shape[:-1]), tuple(target.shape))}"
        )
    classes = prediction.shape[-1]
    if target.numel() and int(target.max()) >= classes:
        raise ValueError(
            f"ys: class labels must lie in [0, {classes}) (the prediction has {classes} "
            f"classes on its last axis), got values up to {int(target.max())}"
        )
    return F.cross_entropy(prediction.reshape(-1, classes), target.reshape(-1))


NAMED: dict[str, LossFunction] = {"mse": mse, "cross_entropy": cross_entropy}
if set(NAMED) != set(LOSSES):  # the shared table and this one must name the same losses
    raise ImportError(f"lstm_torch.losses: expected a torch loss for each of {sorted(LOSSES)}")


def _check_prediction(name: str, prediction: Any) -> None:
    if not isinstance(prediction, torch.Tensor):
        raise TypeError(
            f"{name}: expected the model's prediction as a tensor (its first output when it "
            f"returns a tuple), got {type(prediction).__name__}; a callable loss can read it"
        )


def loss_function(loss: Any) -> LossFunction:
    """A loss name (:data:`~lstm_jax.common.data.LOSSES`) -> its function; a callable
    ``loss(prediction, target)`` -> a function returning its scalar (an ``(scalar, aux)``
    result's aux is dropped).

    Raises:
        TypeError: a class instead of an instance, or a function of JAX arrays (optax's
            losses take JAX arrays, not the torch tensors training passes).
        ValueError: an unknown name.
    """
    loss = check_loss(loss)
    if not callable(loss):
        return NAMED[loss]
    module = getattr(loss, "__module__", None) or type(loss).__module__ or ""
    if module.split(".")[0] in ("jax", "optax", "flax"):
        name = getattr(loss, "__qualname__", None) or type(loss).__qualname__
        raise TypeError(
            f"loss: expected a function of torch tensors (or {', '.join(map(repr, LOSSES))}), "
            f"got {module}.{name}, which takes JAX arrays (lstm_jax.fit takes it; "
            f"torch.nn.functional has torch ones)"
        )

    def scalar(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = loss(prediction, target)
        value = out[0] if isinstance(out, tuple) and len(out) == 2 else out
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise TypeError(
                f"loss: expected the callable to return a scalar tensor (or (scalar, aux)), "
                f"got {type(value).__name__}"
            )
        return value

    return scalar


__all__ = ["NAMED", "cross_entropy", "loss_function", "mse"]
