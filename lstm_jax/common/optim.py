"""Backend-neutral optimizer specs: one value configures torch.optim and Optax alike.

This module imports numpy alone, so ``lstm_torch`` shares it; a spec becomes an Optax
transformation through :func:`lstm_jax.as_optax` (``lstm_jax.train.optimizers``) and a
``torch.optim`` optimizer through :func:`lstm_torch.make_optimizer`.

- ``SGD(lr, momentum, nesterov, weight_decay)``: ``torch.optim.SGD`` (dampening 0)
  and ``chain(add_decayed_weights(wd), sgd(lr, momentum, nesterov))``;
- ``Adam(lr, betas, eps, weight_decay)``: ``torch.optim.Adam`` and
  ``chain(add_decayed_weights(wd), adam(lr, b1, b2, eps))``;
- ``AdamW(lr, betas, eps, weight_decay)``: ``torch.optim.AdamW`` and
  ``adamw(lr, b1, b2, eps, weight_decay=wd)``;
- ``clip_norm=c`` on any spec: ``torch.nn.utils.clip_grad_norm_(params, c)`` before
  the step, and :func:`lstm_jax.train.optimizers.clip_by_global_norm_torch` first in
  the Optax chain.

The update rules agree term by term (the documentation's training guide, "Optimizer
pairs", gives the formulas); only rounding differs. Two points need care:

- torch's momentum buffer starts as the first gradient and Optax's ``trace``
  starts at zeros; with torch's dampening 0 both give ``b1 = g1``,
  ``b_t = m*b_{t-1} + g_t``. Nonzero dampening has no Optax counterpart, so the
  specs have none.
- ``torch.nn.utils.clip_grad_norm_`` scales by ``min(c / (norm + 1e-6), 1)``,
  ``optax.clip_by_global_norm`` by ``c / norm`` when ``norm >= c``. The specs
  use :func:`lstm_jax.train.optimizers.clip_by_global_norm_torch`, torch's formula
  written for Optax.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

from lstm_jax.common.deprecation import REMOVED_IN, warn_deprecated

# torch.nn.utils.clip_grad_norm_'s guard against a zero norm: c / (norm + 1e-6).
TORCH_CLIP_EPS = 1e-6


def _check_number(spec: Any, name: str, positive: bool = False) -> None:
    """A finite float >= 0 (> 0 with ``positive``), stored back as a float."""
    value = getattr(spec, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{type(spec).__name__}: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{type(spec).__name__}: {name} must be finite and {bound}, got {value!r}")
    object.__setattr__(spec, name, value)


class _Spec:
    """Shared validation and conversions of the optimizer specs."""

    lr: float
    weight_decay: float
    clip_norm: float | None

    def _validate(self) -> None:
        _check_number(self, "lr")
        _check_number(self, "weight_decay")
        if self.clip_norm is not None:
            _check_number(self, "clip_norm", positive=True)

    def _validate_adam(self) -> None:
        betas = tuple(self.betas)  # type: ignore[attr-defined]
        if len(betas) != 2:
            raise ValueError(f"{type(self).__name__}: betas must be a pair, got {betas!r}")
        for k, beta in enumerate(betas):
            if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 <= beta < 1:
                raise ValueError(
                    f"{type(self).__name__}: betas[{k}] must lie in [0, 1), got {beta!r}"
                )
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        _check_number(self, "eps")

    def to_optax(self) -> Any:
        """Deprecated (to be removed in 0.4.0): use ``lstm_jax.as_optax(spec)``.

        Returns:
            The paired ``optax.GradientTransformation``: the very object
            ``lstm_jax.as_optax(spec)`` returns (the same one for equal specs).
        """
        warn_deprecated(
            f"{type(self).__name__}.to_optax() is deprecated and will be removed in {REMOVED_IN}; "
            "use lstm_jax.as_optax(spec) (lstm_jax.train.optimizers)",
            stacklevel=2,
        )
        # Imported by name, when called: this module is numpy-only (lstm_torch imports it
        # without JAX) and sits below the training layer that builds Optax chains, so a
        # static import would break the layer contract; the deprecated method alone reaches up.
        return importlib.import_module("lstm_jax.train.optimizers").as_optax(self)


@dataclass(frozen=True)
class SGD(_Spec):
    """``torch.optim.SGD(lr, momentum, dampening=0, weight_decay, nesterov)``.

    Attributes:
        lr: learning rate.
        momentum: momentum factor (0: plain SGD).
        nesterov: Nesterov momentum (needs momentum > 0).
        weight_decay: L2 penalty added to the gradient, ``g + wd * p``, before momentum.
        clip_norm: clip the gradients' global norm to this before the step (None: no clip).
    """

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        self._validate()
        _check_number(self, "momentum")
        if not isinstance(self.nesterov, bool):
            raise TypeError(f"SGD: nesterov must be a bool, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0")


@dataclass(frozen=True)
class Adam(_Spec):
    """``torch.optim.Adam(lr, betas, eps, weight_decay)`` (L2 penalty in the gradient).

    Attributes:
        lr: learning rate.
        betas: decay rates (b1, b2) of the first and second moment averages.
        eps: added to ``sqrt(v_hat)`` in the denominator (outside the square root).
        weight_decay: L2 penalty added to the gradient, ``g + wd * p``, before the moments.
        clip_norm: clip the gradients' global norm to this before the step (None: no clip).
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        self._validate()
        self._validate_adam()


@dataclass(frozen=True)
class AdamW(_Spec):
    """``torch.optim.AdamW(lr, betas, eps, weight_decay)``: decoupled decay ``p -= lr*wd*p``.

    The default ``weight_decay`` is torch's (0.01); ``optax.adamw``'s own default is 1e-4.

    Attributes:
        lr: learning rate, as :class:`Adam`'s.
        betas: decay rates (b1, b2) of the moment averages, as :class:`Adam`'s.
        eps: as :class:`Adam`'s.
        weight_decay: decoupled decay factor (multiplied by ``lr``, as in both libraries).
        clip_norm: clip the gradients' global norm to this before the step (None: no clip).
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        self._validate()
        self._validate_adam()


OptimizerSpec = SGD | Adam | AdamW


def is_spec(value: Any) -> bool:
    return isinstance(value, SGD | Adam | AdamW)
