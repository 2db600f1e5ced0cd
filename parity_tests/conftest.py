"""pytest configuration for the parity suite: every test runs with pinned precision."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lstm_jax.interop.precision import pinned_precision


@pytest.fixture(autouse=True)
def _pinned_precision() -> Iterator[None]:
    """JAX matmuls at ``"highest"`` and every torch backend (CUDA, cuDNN, oneDNN) at
    full float32 during every test (:mod:`lstm_jax.interop.precision`)."""
    with pinned_precision():
        yield


def pytest_configure(config: pytest.Config) -> None:
    # torch says so for every LSTM with proj_size > 0 on CPU; it changes no result.
    config.addinivalue_line(
        "filterwarnings", "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
    )
