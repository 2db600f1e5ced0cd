"""Root pytest configuration: the measured slow tier (``parity_tests/tiers.py``)."""

from __future__ import annotations

import pytest

from parity_tests.tiers import listed_slow


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow = listed_slow()
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)
