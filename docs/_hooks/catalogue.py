"""MkDocs hook: the bad-input catalogue page is generated from the catalogue test itself.

``docs/reference/bad-input.md`` holds the marker below; at build time it is replaced by
the tables of ``parity_tests/test_bad_input_catalogue.py`` (its ``readme_tables()``, the
same text ``python parity_tests/test_bad_input_catalogue.py`` prints), so the page shows
exactly the rows the test runs and can never drift from them. Importing the test module
imports torch, JAX and Flax (the ``torch`` extra is needed to build the docs).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

MARKER = "<!-- bad-input-catalogue -->"
ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "parity_tests" / "test_bad_input_catalogue.py"


def load_catalogue() -> ModuleType:
    """Import ``parity_tests/test_bad_input_catalogue.py`` by path (it is not a package).

    Returns:
        The test module, whose ``SECTIONS`` hold the catalogue and whose
        ``readme_tables()`` renders it as Markdown.
    """
    name = "_lstm_jax_bad_input_catalogue"
    if name in sys.modules:
        return sys.modules[name]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(name, CATALOGUE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def catalogue_markdown() -> str:
    """The catalogue's tables, one per section, as Markdown.

    Returns:
        The Markdown that replaces :data:`MARKER`.
    """
    return load_catalogue().readme_tables()


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace the marker with the catalogue's tables (MkDocs ``on_page_markdown`` event)."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, catalogue_markdown())
