"""The recurrence's speed knobs, checked (what they mean: :mod:`lstm_jax.core.recurrence`)."""

from __future__ import annotations

from lstm_jax.common.numbers import check_int

IMPLS = ("auto", "scan", "custom_vjp", "hoisted", "cudnn", "wavefront")


def check_options(
    impl: object, remat: object, unroll: object, who: str = "LSTM", proj_size: int = 0
) -> None:
    """ValueError for an unknown ``impl``; TypeError/ValueError for a ``remat`` that is not
    an int >= 0 or an ``unroll`` that is not an int >= 1; ValueError for ``impl="cudnn"``
    with options cuDNN cannot run (:func:`why_not_cudnn_options`)."""
    if impl not in IMPLS:
        raise ValueError(f"{who}: expected impl in {IMPLS}, got {impl!r}")
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
