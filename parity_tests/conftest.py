"""pytest configuration for the parity suite: every test runs with pinned precision."""

from __future__ import annotations

from collections.abc import Iterator

import helpers
import pytest


@pytest.fixture(autouse=True)
def _pinned_precision() -> Iterator[None]:
    """JAX matmuls at ``"highest"`` and torch without TF32 during every test."""
    with helpers.pinned_precision():
        yield


def pytest_configure(config: pytest.Config) -> None:
    # torch says so for every LSTM with proj_size > 0 on CPU; it changes no result.
    config.addinivalue_line(
        "filterwarnings", "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
    )
