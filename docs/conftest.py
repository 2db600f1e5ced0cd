"""The documentation's code blocks run as tests (Sybil's Markdown parser), one test per page.

Every ```python block of every page under ``docs/`` runs top to bottom, in the page's
own namespace, in a temporary working directory (pages write checkpoints). A page is
one pytest item, so its blocks stay together under pytest-xdist (``-n 2``), which would
otherwise send a page's later blocks to another worker than the blocks they build on.
A failure names the page, the block's line and the error. Blocks meant for the shell or
showing output are fenced ```bash / ```text and are not run; Python that must not run
here (a multi-host launch script, a global configuration change) is fenced ```py:
highlighted as Python, not run, not counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docs_snippets import CodeBlockFailed, run_code_blocks


class PageCodeBlocks(pytest.Item):
    """All ```python blocks of one page, as one test."""

    def runtest(self) -> None:
        run_code_blocks(self.path)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CodeBlockFailed):
            return super().repr_failure(excinfo, style="short")
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name}: code blocks"


class Page(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        if "```python\n" in self.path.read_text():
            yield PageCodeBlocks.from_parent(self, name="code blocks")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".md":
        return Page.from_parent(parent, path=file_path)
    return None
