"""``lstm_jax.interop.precision.pinned_precision``: both backends pinned inside, both of
torch's APIs (the legacy TF32 flags and the per-backend ``fp32_precision``) readable and
consistent inside, and everything as it was after, from any starting state."""

from __future__ import annotations

from collections.abc import Callable

import jax
import pytest
import torch

from lstm_jax.interop.precision import (
    TORCH_FP32_BACKENDS,
    pinned_precision,
    precision_is_pinned,
)

BACKENDS = torch.backends


def _leaves() -> dict[str, str]:
    return {
        f"{a}.{b}": getattr(getattr(BACKENDS, a), b).fp32_precision for a, b in TORCH_FP32_BACKENDS
    }


def _legacy() -> dict[str, object]:
    """The legacy switches, "unreadable" where torch refuses to read them."""
    out: dict[str, object] = {}
    for name, get in [
        ("cuda.matmul.allow_tf32", lambda: BACKENDS.cuda.matmul.allow_tf32),
        ("cudnn.allow_tf32", lambda: BACKENDS.cudnn.allow_tf32),
        ("float32_matmul_precision", torch.get_float32_matmul_precision),
    ]:
        try:
            out[name] = get()
        except RuntimeError:
            out[name] = "unreadable"
    return out


def _set_new_api_fast() -> None:
    BACKENDS.cuda.matmul.fp32_precision = "tf32"
    BACKENDS.cudnn.rnn.fp32_precision = "tf32"
    BACKENDS.mkldnn.matmul.fp32_precision = "bf16"
    BACKENDS.mkldnn.rnn.fp32_precision = "bf16"


STARTS: dict[str, Callable[[], None]] = {
    "as they are": lambda: None,
    "legacy medium": lambda: torch.set_float32_matmul_precision("medium"),
    "legacy tf32 flags": lambda: setattr(BACKENDS.cuda.matmul, "allow_tf32", True),
    "newer API tf32 and bf16": _set_new_api_fast,
}


@pytest.fixture
def restore_torch() -> object:
    """Put torch's switches back after a test that changes its starting state."""
    leaves, legacy = _leaves(), _legacy()
    yield
    if legacy["cuda.matmul.allow_tf32"] != "unreadable":
        BACKENDS.cuda.matmul.allow_tf32 = legacy["cuda.matmul.allow_tf32"]
    if legacy["cudnn.allow_tf32"] != "unreadable":
        BACKENDS.cudnn.allow_tf32 = legacy["cudnn.allow_tf32"]
    if legacy["float32_matmul_precision"] != "unreadable":
        torch.set_float32_matmul_precision(legacy["float32_matmul_precision"])
    for (a, b), value in zip(TORCH_FP32_BACKENDS, leaves.values(), strict=True):
        getattr(getattr(BACKENDS, a), b).fp32_precision = value


@pytest.mark.parametrize("start", list(STARTS), ids=list(STARTS))
def test_pins_both_backends_and_restores_everything(start: str, restore_torch: object) -> None:
    with jax.default_matmul_precision("bfloat16"):  # the suite's fixture pinned it: undo
        STARTS[start]()
        leaves, legacy = _leaves(), _legacy()
        with pinned_precision():
            assert precision_is_pinned()
            assert jax.config.jax_default_matmul_precision == "highest"
            assert set(_leaves().values()) == {"ieee"}
            assert _legacy() == {
                "cuda.matmul.allow_tf32": False,
                "cudnn.allow_tf32": False,
                "float32_matmul_precision": "highest",
            }
        assert jax.config.jax_default_matmul_precision == "bfloat16"
        assert not precision_is_pinned()
        assert _leaves() == leaves
        assert _legacy() == legacy


def test_tf32_mode_allows_tf32_on_gpus_only(restore_torch: object) -> None:
    leaves = _leaves()
    with pinned_precision(tf32=True):
        assert not precision_is_pinned()
        assert jax.config.jax_default_matmul_precision == "tensorfloat32"
        got = _leaves()
        assert {k: v for k, v in got.items() if k.startswith("mkldnn")} == dict.fromkeys(
            ["mkldnn.matmul", "mkldnn.conv", "mkldnn.rnn"], "ieee"
        )
        assert {v for k, v in got.items() if not k.startswith("mkldnn")} == {"tf32"}
        assert BACKENDS.cudnn.allow_tf32 is True
    assert _leaves() == leaves
    assert precision_is_pinned()  # the suite's fixture's pinning is back


def test_restores_after_an_error_inside() -> None:
    leaves = _leaves()
    with pytest.raises(ZeroDivisionError), pinned_precision(tf32=True):
        1 / 0  # noqa: B018
    assert _leaves() == leaves
    assert precision_is_pinned()
