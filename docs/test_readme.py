"""The README's ```python blocks run as the documentation's do: top to bottom, one
namespace, in a temporary directory (see ``docs/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_code_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    document = Sybil(parsers=[PythonCodeBlockParser()]).parse(README)
    examples = list(document)
    assert examples, "README.md has no ```python block"
    for example in examples:
        example.evaluate()
