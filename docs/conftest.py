"""The documentation's code blocks run as tests (Sybil), one namespace per page.

Every ```python block of every page under ``docs/`` runs top to bottom, in the page's
own namespace, in a temporary working directory (pages write checkpoints). Blocks meant
for the shell or showing output are fenced ```bash / ```text and are not run; Python
that cannot run here (a multi-host launch script) is fenced ```py: highlighted as Python,
not run, and not counted as a test.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser

_CWD_KEY = "__docs_cwd__"


def _enter_tmpdir(namespace: dict[str, Any]) -> None:
    """Run the page in a fresh temporary directory (what it writes goes away)."""
    tmp = tempfile.TemporaryDirectory(prefix="lstm_jax_docs_")
    namespace[_CWD_KEY] = (os.getcwd(), tmp)
    os.chdir(tmp.name)


def _leave_tmpdir(namespace: dict[str, Any]) -> None:
    cwd, tmp = namespace.pop(_CWD_KEY)
    os.chdir(cwd)
    tmp.cleanup()


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser()],
    patterns=["*.md"],
    setup=_enter_tmpdir,
    teardown=_leave_tmpdir,
).pytest()
