"""The recurrence's speed knobs, checked once, and the ``impl`` table: which kinds each
implementation runs and where (what they mean: :mod:`lstm_jax.core.recurrence`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lstm_jax.common.config import MODES, MODULE_NAMES
from lstm_jax.common.numbers import check_int

ALL_MODES = MODES
LSTM_ONLY = ("LSTM",)


@dataclass(frozen=True)
class Impl:
    """One ``impl`` value.

    Attributes:
        modes: the kinds (torch's modes) it runs.
        whole_stack: it runs every layer and direction itself (``lstm_jax.core.stack``
            hands it the stack), rather than one layer-direction at a time.
    """

    modes: tuple[str, ...]
    whole_stack: bool = False


# The one table of implementations; "auto" resolves per kind through AUTO.
IMPL_TABLE: dict[str, Impl] = {
    "auto": Impl(ALL_MODES),
    "scan": Impl(ALL_MODES),
    "custom_vjp": Impl(ALL_MODES),
    "hoisted": Impl(ALL_MODES),
    "cudnn": Impl(LSTM_ONLY, whole_stack=True),
    "wavefront": Impl(LSTM_ONLY, whole_stack=True),
}
IMPLS = tuple(IMPL_TABLE)
# What "auto" runs for each kind (measured: benchmarks/NOTES.md).
AUTO = {mode: "custom_vjp" for mode in ALL_MODES}


def supported_impls(mode: str) -> tuple[str, ...]:
    """The ``impl`` values a kind runs."""
    return tuple(name for name, impl in IMPL_TABLE.items() if mode in impl.modes)


def check_options(
    impl: object,
    remat: object,
    unroll: object,
    who: str = "LSTM",
    proj_size: int = 0,
    mode: str = "LSTM",
) -> None:
    """ValueError for an unknown ``impl`` or one the kind (``mode``) has not;
    TypeError/ValueError for a ``remat`` that is not an int >= 0 or an ``unroll`` that is
    not an int >= 1; ValueError for ``impl="cudnn"`` with options cuDNN cannot run
    (:func:`why_not_cudnn_options`). Checked once per distinct set of options."""
    try:
        key = tuple((type(v), v) for v in (impl, remat, unroll, who, proj_size, mode))
        hash(key)
    except TypeError:  # unhashable: check (and fail) without the cache
        _check_options(impl, remat, unroll, who, proj_size, mode)
        return
    _cached_check(key)


@functools.lru_cache(maxsize=256)
def _cached_check(key: tuple) -> None:
    _check_options(*(value for _, value in key))


def _check_options(
    impl: object, remat: object, unroll: object, who: str, proj_size: int, mode: str
) -> None:
    if impl not in IMPL_TABLE:
        raise ValueError(f"{who}: expected impl in {IMPLS}, got {impl!r}")
    if mode not in IMPL_TABLE[impl].modes:  # type: ignore[index]
        only = "/".join(MODULE_NAMES[m] for m in IMPL_TABLE[impl].modes)  # type: ignore[index]
        raise ValueError(
            f"{who}: impl={impl!r} supports only {only}; got it for a {MODULE_NAMES[mode]} "
            f"(expected impl in {supported_impls(mode)})"
        )
    chunk_steps = check_int("remat", remat, least=0, who=who)
    check_int("unroll", unroll, least=1, who=who)
    why = why_not_cudnn_options(proj_size, chunk_steps) if impl == "cudnn" else None
    if why is not None:
        raise ValueError(f"{who}: impl='cudnn' {why}; use impl='auto' or 'custom_vjp'")


def why_not_cudnn_options(proj_size: int, remat: int) -> str | None:
    """None if cuDNN's LSTM can run a stack with these options, else why not (its dtype is
    checked at the call: :func:`lstm_jax.core.cudnn.why_not_cudnn`)."""
    if proj_size:
        return f"cannot run projections (proj_size={proj_size}): cuDNN's LSTM has none"
    if remat:
        return f"cannot rematerialize (remat={remat})"
    return None
