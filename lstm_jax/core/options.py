"""The recurrence's speed knobs, checked (what they mean: :mod:`lstm_jax.core.recurrence`)."""

from __future__ import annotations

from lstm_jax.common.numbers import check_int

IMPLS = ("auto", "scan", "custom_vjp", "hoisted", "cudnn", "wavefront")


def check_options(impl: object, remat: object, unroll: object, who: str = "LSTM") -> None:
    """ValueError for an unknown ``impl``; TypeError/ValueError for a ``remat`` that is not
    an int >= 0 or an ``unroll`` that is not an int >= 1."""
    if impl not in IMPLS:
        raise ValueError(f"{who}: expected impl in {IMPLS}, got {impl!r}")
    check_int("remat", remat, least=0, who=who)
    check_int("unroll", unroll, least=1, who=who)
