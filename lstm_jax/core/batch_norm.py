"""torch's batch normalization as pure functions (``torch.nn.functional.batch_norm``).

Layout as torch: the channel axis is 1 ((N, C), (N, C, L), (N, C, H, W)); statistics
are taken over every other axis. Training normalizes with the batch's biased variance
and updates the running variance with the *unbiased* one; ``momentum`` weights the
new value (``running = (1 - momentum) * running + momentum * batch``), and
``momentum=None`` is the cumulative average, factor ``1 / num_batches_tracked``.
(Flax's ``nn.BatchNorm`` differs: its ``momentum`` weights the old value, it keeps the
biased variance and no counter.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class RunningStats(NamedTuple):
    """torch's buffers of one BatchNorm layer.

    Attributes:
        running_mean: (C,).
        running_var: (C,).
        num_batches_tracked: () integer (int64 in torch; int32 in JAX unless x64 is on).
    """

    running_mean: jax.Array
    running_var: jax.Array
    num_batches_tracked: jax.Array


def reduction_axes(ndim: int) -> tuple[int, ...]:
    """Every axis but the channel axis 1."""
    return (0, *range(2, ndim))


def channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    """(1, C, 1, ...): a (C,) vector broadcast along the channel axis 1."""
    return (1, channels) + (1,) * (ndim - 2)


def batch_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The per-channel mean and biased variance of ``x`` (N, C, ...), each (C,)."""
    axes = reduction_axes(x.ndim)
    mean = jnp.mean(x, axis=axes)
    centered = x - mean.reshape(channel_shape(x.ndim, mean.shape[0]))
    return mean, jnp.mean(jnp.square(centered), axis=axes)


def normalize(
    x: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    weight: jax.Array | None,
    bias: jax.Array | None,
    eps: float,
) -> jax.Array:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` along the channel axis 1."""
    shape = channel_shape(x.ndim, mean.shape[0])
    y = (x - mean.reshape(shape)) * jax.lax.rsqrt(var + eps).reshape(shape)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def update_running_stats(
    stats: RunningStats,
    mean: jax.Array,
    biased_var: jax.Array,
    count: int,
    momentum: float | None,
) -> RunningStats:
    """torch's running-statistics update after one training batch.

    Arguments:
        stats: the buffers before the batch.
        mean, biased_var: the batch's moments (C,) (:func:`batch_moments`).
        count: values per channel in the batch (N·L, N·H·W); at least 2.
        momentum: the new value's weight, or None for the cumulative average.

    Returns:
        the buffers after the batch; the counter incremented first, as torch does.
    """
    tracked = stats.num_batches_tracked + 1
    factor = (
        jnp.asarray(1.0, stats.running_mean.dtype) / tracked.astype(stats.running_mean.dtype)
        if momentum is None
        else momentum
    )
    unbiased = biased_var * (count / (count - 1))
    return RunningStats(
        running_mean=(1 - factor) * stats.running_mean
        + factor * mean.astype(stats.running_mean.dtype),
        running_var=(1 - factor) * stats.running_var
        + factor * unbiased.astype(stats.running_var.dtype),
        num_batches_tracked=tracked,
    )
