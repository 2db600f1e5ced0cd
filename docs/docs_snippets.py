"""Running a Markdown page's ```python blocks (Sybil's parser): the documentation's
tests (``docs/conftest.py``) and the README's (``docs/test_readme.py``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser

SYBIL = Sybil(parsers=[PythonCodeBlockParser()])


class CodeBlockFailed(Exception):
    """A page's code block raised: the page, the block's line, the error."""


def run_code_blocks(page: Path) -> int:
    """Run every ```python block of ``page`` in order, in one namespace, in a temporary
    directory.

    Args:
        page: a Markdown file.

    Returns:
        How many blocks ran.

    Raises:
        CodeBlockFailed: a block raised (chained to its exception).
    """
    document = SYBIL.parse(page)
    cwd = os.getcwd()
    count = 0
    with tempfile.TemporaryDirectory(prefix="lstm_jax_docs_") as tmp:
        os.chdir(tmp)
        try:
            for example in document:
                try:
                    example.evaluate()
                except Exception as error:
                    raise CodeBlockFailed(
                        f"{page.name}, the ```python block at line {example.line}: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                count += 1
        finally:
            os.chdir(cwd)
    return count
