"""``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` in Flax linen, torch-exact in training too.

Called as Flax's ``nn.BatchNorm`` is (``use_running_average=`` as attribute or call
argument; the ``batch_stats`` collection mutable in training), with torch's constructor,
layout (channels on axis 1) and names: ``weight``, ``bias`` in ``params``;
``running_mean``, ``running_var``, ``num_batches_tracked`` in ``batch_stats``.

The math is :mod:`lstm_jax.core.batch_norm`: the running variance is updated with the
*unbiased* batch variance and ``momentum`` weights the *new* value (Flax's
``nn.BatchNorm(momentum=0.99)`` weights the old one, keeps the biased variance and no
counter: use these modules where training must match torch).

``num_batches_tracked`` is int64 in torch and int32 in JAX unless ``jax_enable_x64`` is
on; the transfer converts it exactly (and refuses a count int32 cannot hold).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.common.numbers import check_int
from lstm_jax.core.batch_norm import (
    RunningStats,
    batch_moments,
    normalize,
    update_running_stats,
)
from lstm_jax.core.layout import check_param_dtype

__all__ = ["BatchNorm1d", "BatchNorm2d", "check_batch_norm_input", "check_batch_norm_options"]


def counter_dtype() -> Any:
    """``num_batches_tracked``'s dtype: int64 with x64 on (as torch), else int32."""
    return jnp.int64 if jax.config.read("jax_enable_x64") else jnp.int32


def check_batch_norm_options(
    who: str, num_features: Any, eps: Any, momentum: Any, affine: Any, track: Any
) -> None:
    """torch's constructor arguments, or a ``TypeError``/``ValueError`` naming the bad one."""
    check_int(f"{who}: expected num_features", num_features, phrase="a positive int")
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
        raise ValueError(f"{who}: expected eps a positive float, got {eps!r}")
    if momentum is not None and (
        isinstance(momentum, bool) or not isinstance(momentum, int | float)
    ):
        raise TypeError(f"{who}: expected momentum a float or None, got {momentum!r}")
    for name, value in (("affine", affine), ("track_running_stats", track)):
        if not isinstance(value, bool):
            raise TypeError(f"{who}: expected {name} a bool, got {value!r}")


def check_batch_norm_input(who: str, x: Any, ranks: tuple[int, ...], num_features: int) -> None:
    """torch's input checks: the rank (``expected 2D or 3D input (got 4D input)``) and the
    channels on axis 1."""
    ndim = np.ndim(x)
    if ndim not in ranks:
        wanted = " or ".join(f"{r}D" for r in ranks)
        raise ValueError(f"{who}: expected {wanted} input (got {ndim}D input)")
    channels = np.shape(x)[1]
    if channels != num_features:
        raise ValueError(
            f"{who}: expected input with {num_features} channels on axis 1 (num_features), "
            f"got shape {tuple(np.shape(x))}"
        )


def values_per_channel(who: str, shape: tuple[int, ...]) -> int:
    """N·L (or N·H·W): torch refuses training on a single value per channel."""
    count = int(np.prod(shape)) // shape[1]
    if count < 2:
        raise ValueError(
            f"{who}: expected more than 1 value per channel when training, got input size "
            f"{tuple(shape)}"
        )
    return count


class _BatchNorm(nn.Module):
    """torch's ``_BatchNorm`` in linen; see :class:`BatchNorm1d`."""

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    track_running_stats: bool = True
    use_running_average: bool | None = None
    param_dtype: Any = jnp.float32

    _ranks: ClassVar[tuple[int, ...]] = ()  # torch's accepted input ranks

    def __post_init__(self) -> None:
        who = type(self).__name__
        check_batch_norm_options(
            who, self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats
        )
        check_param_dtype(self.param_dtype, who)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """Normalize ``x`` (torch's layout, channels on axis 1).

        Arguments:
            x: (N, C, ...) as torch's module takes it.
            use_running_average: True: eval mode (the running statistics); False:
                training mode (batch statistics, the running ones updated when
                ``batch_stats`` is mutable). Given here or as the attribute, not both.

        Returns:
            an array of ``x``'s shape, in ``x``'s and the parameters' common dtype.
        """
        who = type(self).__name__
        eval_mode = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        check_batch_norm_input(who, x, self._ranks, self.num_features)
        dtype = jnp.result_type(x, self.param_dtype)
        x = jnp.asarray(x, dtype)
        features = (self.num_features,)
        weight = bias = None
        if self.affine:
            weight = self.param("weight", nn.initializers.ones, features, self.param_dtype)
            bias = self.param("bias", nn.initializers.zeros, features, self.param_dtype)
            weight, bias = weight.astype(dtype), bias.astype(dtype)
        if not self.track_running_stats:  # torch: batch statistics in both modes
            mean, var = batch_moments(x)
            if not self.is_initializing():
                values_per_channel(who, x.shape)
            return normalize(x, mean, var, weight, bias, self.eps)
        holders = (
            self.variable("batch_stats", "running_mean", jnp.zeros, features, self.param_dtype),
            self.variable("batch_stats", "running_var", jnp.ones, features, self.param_dtype),
            self.variable("batch_stats", "num_batches_tracked", jnp.zeros, (), counter_dtype()),
        )
        if eval_mode:
            mean, var = holders[0].value, holders[1].value
            return normalize(x, mean.astype(dtype), var.astype(dtype), weight, bias, self.eps)
        mean, var = batch_moments(x)
        if not self.is_initializing():  # init gives torch's fresh buffers
            count = values_per_channel(who, x.shape)
            new = update_running_stats(
                RunningStats(*(v.value for v in holders)), mean, var, count, self.momentum
            )
            if self.is_mutable_collection("batch_stats"):
                for holder, value in zip(holders, new, strict=True):
                    holder.value = value
        return normalize(x, mean, var, weight, bias, self.eps)


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True)`` in linen.

    Attributes:
        num_features: C.
        eps: added to the variance.
        momentum: the new batch statistic's weight in the running ones (torch's
            convention), or None for the cumulative average (factor 1/num_batches_tracked).
        affine: whether the layer has ``weight`` (ones) and ``bias`` (zeros), each (C,).
        track_running_stats: whether it keeps ``running_mean`` (zeros), ``running_var``
            (ones), (C,), and ``num_batches_tracked`` (0) in ``batch_stats``; without,
            batch statistics are used in both modes.
        use_running_average: eval mode (as Flax's ``nn.BatchNorm``); or given per call.
        param_dtype: dtype of the parameters and running statistics.

    Call ``(x, use_running_average=None)``: x (N, C) or (N, C, L); returns x's shape.
    In training: ``y, updates = bn.apply(variables, x, use_running_average=False,
    mutable=["batch_stats"])``.
    """

    _ranks: ClassVar[tuple[int, ...]] = (2, 3)


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d`` in linen: as :class:`BatchNorm1d`, x (N, C, H, W)."""

    _ranks: ClassVar[tuple[int, ...]] = (4,)
