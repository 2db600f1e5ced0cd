"""Matmul precision pinned on both backends: the one place that sets it.

Parity runs (the test suite's fixture, :func:`lstm_jax.compare_with_torch`) and the
benchmarks enter :func:`pinned_precision`. Without it, GPUs run float32 matmuls in TF32
(JAX's default precision, torch's cuDNN RNNs and convolutions) and oneDNN on the CPU
may run them in bf16 (after ``torch.set_float32_matmul_precision("medium")``): the two
sides would not compute the same function closely enough for the tolerances.

torch is imported when the context is entered, so ``import lstm_jax`` needs no torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["TORCH_FP32_BACKENDS", "pinned_precision", "precision_is_pinned"]

# torch's per-operation float32 settings (``fp32_precision``: "ieee", "tf32", "bf16" or
# "none" = inherit): CUDA matmuls, cuDNN convolutions and RNNs, oneDNN on the CPU.
TORCH_FP32_BACKENDS = (
    ("cuda", "matmul"),
    ("cudnn", "conv"),
    ("cudnn", "rnn"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
)


def _torch_settings(torch: Any) -> list[Any]:
    """The objects holding each ``fp32_precision`` of :data:`TORCH_FP32_BACKENDS`."""
    return [getattr(getattr(torch.backends, a), b) for a, b in TORCH_FP32_BACKENDS]


def _legacy_switches(torch: Any) -> list[tuple[Any, Any]]:
    """(setter, value) restoring torch's legacy switches that can be read now (torch
    refuses to read one that both APIs have set)."""
    backends = torch.backends
    switches = [
        (lambda v: setattr(backends.cuda.matmul, "allow_tf32", v), "cuda.matmul"),
        (lambda v: setattr(backends.cudnn, "allow_tf32", v), "cudnn"),
        (torch.set_float32_matmul_precision, "matmul"),
    ]
    getters = {
        "cuda.matmul": lambda: backends.cuda.matmul.allow_tf32,
        "cudnn": lambda: backends.cudnn.allow_tf32,
        "matmul": torch.get_float32_matmul_precision,
    }
    readable = []
    for setter, name in switches:
        try:
            readable.append((setter, getters[name]()))
        except RuntimeError:
            continue
    return readable


@contextlib.contextmanager
def pinned_precision(tf32: bool = False) -> Iterator[None]:
    """Full float32 arithmetic on both sides while inside; everything back on exit.

    JAX: ``jax.default_matmul_precision("highest")``. torch:
    ``backends.cuda.matmul.allow_tf32 = False``, ``backends.cudnn.allow_tf32 = False``,
    ``set_float32_matmul_precision("highest")``, then every backend's ``fp32_precision``
    (CUDA, cuDNN and oneDNN matmuls, convolutions and RNNs; the newer API, which also
    covers oneDNN's convolutions and RNNs) "ieee". Both APIs read consistently inside.
    On exit the legacy switches come back first, then the newer settings, so that both
    read as they did before.

    Arguments:
        tf32: allow TF32 instead on both sides (JAX "tensorfloat32"; torch's CUDA and
            cuDNN "tf32", oneDNN still "ieee"): the benchmarks' fast-GPU setting.
    """
    import jax
    import torch  # the torch extra; imported here so lstm_jax does not need it

    settings = _torch_settings(torch)
    saved = [s.fp32_precision for s in settings]
    legacy = _legacy_switches(torch)
    try:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        for (backend, _), s in zip(TORCH_FP32_BACKENDS, settings, strict=True):
            s.fp32_precision = "tf32" if tf32 and backend in ("cuda", "cudnn") else "ieee"
        with jax.default_matmul_precision("tensorfloat32" if tf32 else "highest"):
            yield
    finally:
        for setter, value in legacy:
            setter(value)
        for s, value in zip(settings, saved, strict=True):
            s.fp32_precision = value


def precision_is_pinned() -> bool:
    """Whether :func:`pinned_precision` (full float32) is in effect on both sides."""
    import jax
    import torch

    precision = jax.config.jax_default_matmul_precision  # type: ignore[attr-defined]
    return precision == "highest" and all(
        s.fp32_precision == "ieee" for s in _torch_settings(torch)
    )
