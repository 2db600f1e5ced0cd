"""dtype guards: float64 (JAX in its default 32-bit mode would silently round it) and
PRNG keys (what a ``rng``/``rngs`` argument must be)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def x64_enabled() -> bool:
    """Whether JAX computes in float64 (``jax_enable_x64``)."""
    return bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]


def check_float64_allowed(dtype: Any, what: str, alternative: str = "") -> None:
    """ValueError if ``dtype`` is float64 while JAX runs in 32-bit mode.

    Arguments:
        dtype: the dtype of what is about to reach JAX.
        what: its name, the subject of "... is float64" (e.g. "weight_ih_l0").
        alternative: a remedy besides enabling float64 (", or convert ... first").
    """
    if np.dtype(dtype) == np.float64 and not x64_enabled():
        raise ValueError(
            f"{what} is float64 but JAX runs in 32-bit mode and would round it: enable "
            f"float64 (jax.config.update('jax_enable_x64', True), or work inside "
            f"`with jax.enable_x64(True):`){alternative}"
        )


def is_prng_key(rng: Any) -> bool:
    """A typed key (``jax.random.key``) or a legacy uint32 one (``jax.random.PRNGKey``)."""
    dtype = getattr(rng, "dtype", None)
    if dtype is None:
        return False
    return bool(jnp.issubdtype(dtype, jax.dtypes.prng_key)) or (
        dtype == np.uint32 and np.ndim(rng) >= 1
    )
