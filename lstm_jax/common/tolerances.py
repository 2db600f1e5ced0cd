"""The project's parity tolerances, in one place (numpy only).

Every tolerance is relative to the reference's magnitude: ``actual`` agrees with
``reference`` when ``max|actual - reference| <= tol * max|reference|``. They are
tight enough to catch a swapped gate or a missing bias (those move results by
O(1e-1) of the output's scale).
"""

from __future__ import annotations

import numpy as np

# Forward outputs and final states.
FORWARD = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
# Gradients w.r.t. every parameter and the input (one backward pass more of rounding).
GRADIENT = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}
# Per-epoch losses and final parameters after a training run (hundreds of steps).
TRAINING = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
# bfloat16 compute (parameters, input and state cast to bfloat16, as
# ``fit(..., compute_dtype=jnp.bfloat16)``) against the float32 reference. bfloat16 keeps
# 8 significant bits (unit roundoff 2^-9 = 2e-3). On CPU the LSTM's cases of
# benchmarks/device_parity.py measured forward 7.4e-3 to 7.9e-3 and gradients 1.2e-2 to
# 2.9e-2 (the top: impl="scan", whose autodiff accumulates the weight gradients over the
# steps in bfloat16); torch's autocast 5e-3 and 1.0e-2 to 1.3e-2; swapped-gate controls
# 0.4 and 1.3.
BFLOAT16_COMPUTE = {"forward": 0.03, "gradient": 0.05}


def scaled_error(actual: object, reference: object) -> float:
    """``max|actual - reference| / max|reference|`` (0 when both are all zeros)."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"shapes differ: actual {a.shape}, reference {r.shape}")
    diff = float(np.max(np.abs(a - r), initial=0.0))
    scale = float(np.max(np.abs(r), initial=0.0))
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0 else float("inf")


def assert_close(actual: object, reference: object, tol: float, what: str = "value") -> None:
    """Raise ``AssertionError`` with the figures when the scaled error exceeds ``tol``."""
    err = scaled_error(actual, reference)
    if not err <= tol:
        raise AssertionError(f"{what}: scaled error {err:.3g} exceeds tolerance {tol:.1g}")


# Training with dropout: the two backends draw different masks, so only statistics
# compare. The mean per-epoch loss over the last half of a run, relative to torch's:
# two runs that differ only in their masks stay well inside it; a wrong learning rate
# or a missing layer moves it further.
DROPOUT_LOSS_BAND = 0.25
