"""The README's ```python blocks run as the documentation's do: top to bottom, one
namespace, in a temporary directory (``docs/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

from docs_snippets import run_code_blocks

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_code_blocks_run() -> None:
    assert run_code_blocks(README) >= 2, "README.md lost its tour"
