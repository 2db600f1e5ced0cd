"""The API reference under ``docs/reference/`` documents every public name.

Each name in ``lstm_jax.__all__``, ``lstm_jax.nnx.__all__`` and ``lstm_torch.__all__``
must have a mkdocstrings directive (a line ``::: dotted.path``) on its namespace's
reference page, and that path must be the very object the namespace exports (so a
directive cannot point at a stale or wrong object). A name added to an ``__all__``
fails here until it is documented; the message says which page to add it to.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
DIRECTIVE = re.compile(r"^:::\s+(?P<path>[\w.]+)\s*$", re.MULTILINE)

# namespace -> its reference page (relative to the repository root)
PAGES = {
    "lstm_jax": "docs/reference/lstm_jax.md",
    "lstm_jax.nnx": "docs/reference/nnx.md",
    "lstm_torch": "docs/reference/lstm_torch.md",
}


def directives(page: str) -> list[str]:
    """The dotted paths of a page's ``::: path`` directives, in order."""
    return DIRECTIVE.findall((ROOT / page).read_text())


def resolve(path: str) -> object:
    """The object a dotted path names, as ``from a.b import c`` finds it: an attribute
    first (``lstm_jax.nnx.state_dict`` is the function, not the module of that name),
    a submodule when there is no such attribute."""
    first, *rest = path.split(".")
    obj: object = importlib.import_module(first)
    prefix = first
    for part in rest:
        prefix = f"{prefix}.{part}"
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(prefix)
    return obj


@pytest.mark.parametrize("namespace", sorted(PAGES))
def test_every_public_name_is_in_the_reference(namespace: str) -> None:
    page = PAGES[namespace]
    module = importlib.import_module(namespace)
    documented = {path.rsplit(".", 1)[-1]: path for path in directives(page)}
    missing = [name for name in module.__all__ if name not in documented]
    assert not missing, (
        f"{namespace}.__all__ has names the API reference does not document: {missing}. "
        f"Add a line '::: {namespace}.NAME' for each to {page} (under the section it "
        f"belongs to), and check that `mkdocs build --strict` passes."
    )
    wrong = {
        name: documented[name]
        for name in module.__all__
        if resolve(documented[name]) is not getattr(module, name)
    }
    assert not wrong, (
        f"{page}: these directives do not name the object {namespace} exports: {wrong}"
    )


@pytest.mark.parametrize("page", sorted(PAGES.values()))
def test_every_directive_resolves(page: str) -> None:
    """A directive that names nothing (a removed or renamed object) fails here, before
    the docs build does."""
    for path in directives(page):
        resolve(path)
