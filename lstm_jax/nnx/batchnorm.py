"""``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` in Flax NNX, torch-exact in training too.

Parameters ``weight``, ``bias`` (``nnx.Param``) and buffers ``running_mean``,
``running_var``, ``num_batches_tracked`` (``nnx.BatchStat``), torch's names. A new
module is in training mode, as a torch module; ``module.eval()`` / ``module.train()``
switch it (``use_running_average``, as Flax's ``nnx.BatchNorm``). The math and its
conventions: :mod:`lstm_jax.core.batch_norm` and :mod:`lstm_jax.linen.batchnorm`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_jax.core.batch_norm import RunningStats, batch_moments, normalize, update_running_stats
from lstm_jax.linen.batchnorm import (
    check_batch_norm_input,
    check_batch_norm_options,
    counter_dtype,
    values_per_channel,
)
from lstm_jax.nnx.modules import check_nnx_param_dtype
from lstm_jax.nnx.state_dict import TorchStateDict

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(TorchStateDict, nnx.Module):
    """torch's ``_BatchNorm`` in NNX; see :class:`BatchNorm1d`."""

    _ranks: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ) -> None:
        who = type(self).__name__
        check_batch_norm_options(who, num_features, eps, momentum, affine, track_running_stats)
        check_nnx_param_dtype(param_dtype, who)
        del rngs  # the initial values are constants, as torch's
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.use_running_average = False  # training mode, as a new torch module
        features = (num_features,)
        if affine:
            self.weight = nnx.Param(jnp.ones(features, param_dtype))
            self.bias = nnx.Param(jnp.zeros(features, param_dtype))
        if track_running_stats:
            self.running_mean = nnx.BatchStat(jnp.zeros(features, param_dtype))
            self.running_var = nnx.BatchStat(jnp.ones(features, param_dtype))
            self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), counter_dtype()))

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """Normalize ``x`` (N, C, ...); in training mode the running statistics are updated.

        Arguments:
            x: torch's layout, channels on axis 1.
            use_running_average: overrides the module's mode for this call.
        """
        who = type(self).__name__
        eval_mode = self.use_running_average if use_running_average is None else use_running_average
        check_batch_norm_input(who, x, self._ranks, self.num_features)
        weight = bias = None
        if self.affine:
            weight, bias = self.weight.get_value(), self.bias.get_value()
        dtype = jnp.result_type(x, weight.dtype if weight is not None else x)
        x = jnp.asarray(x, dtype)
        if weight is not None and bias is not None:
            weight, bias = weight.astype(dtype), bias.astype(dtype)
        if not self.track_running_stats:
            values_per_channel(who, x.shape)
            mean, var = batch_moments(x)
            return normalize(x, mean, var, weight, bias, self.eps)
        holders = (self.running_mean, self.running_var, self.num_batches_tracked)
        if eval_mode:
            mean, var = (h.get_value().astype(dtype) for h in holders[:2])
            return normalize(x, mean, var, weight, bias, self.eps)
        count = values_per_channel(who, x.shape)
        mean, var = batch_moments(x)
        new = update_running_stats(
            RunningStats(*(h.get_value() for h in holders)), mean, var, count, self.momentum
        )
        for holder, value in zip(holders, new, strict=True):
            holder.set_value(value)
        return normalize(x, mean, var, weight, bias, self.eps)


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True)`` in NNX: x (N, C) or (N, C, L).

    ``momentum`` weights the new batch statistic (None: the cumulative average); the
    running variance is updated with the unbiased batch variance; ``num_batches_tracked``
    counts training batches (int32 unless x64 is on; int64 in torch).
    """

    _ranks: ClassVar[tuple[int, ...]] = (2, 3)


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d`` in NNX: as :class:`BatchNorm1d`, x (N, C, H, W)."""

    _ranks: ClassVar[tuple[int, ...]] = (4,)
