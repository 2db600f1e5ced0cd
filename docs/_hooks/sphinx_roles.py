"""Griffe extension: Sphinx roles in docstrings become (optional) cross-references.

The package's docstrings are read by two audiences: ``help()`` in a terminal, where
``:func:`fit``` reads fine, and mkdocstrings, where a role would be printed as is. This
extension rewrites each ``:role:`target``` (``func``, ``class``, ``meth``, ``mod``,
``data``, ``attr``, ``exc``, ``obj``) into an *optional* autorefs link: a link to the
target's entry when the reference pages document it, plain code otherwise (a
module-internal helper, say), so the strict build never fails on an internal name.
Relative targets are resolved in the scope of the object that holds the docstring.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj):`~?(?P<target>[^`]+)`")


def _identifier(obj: griffe.Object, target: str) -> str:
    """The full dotted path of ``target`` as seen from ``obj`` (``target`` when unknown)."""
    scopes = [obj, *([obj.parent] if obj.parent is not None else []), obj.module]
    head, _, rest = target.partition(".")
    for scope in scopes:
        try:
            resolved = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            continue
        return f"{resolved}.{rest}" if rest else resolved
    return target


def _link(obj: griffe.Object, match: re.Match[str]) -> str:
    target = match.group("target").strip()
    label = target.rsplit(".", 1)[-1] if match.group(0).count("~") else target
    identifier = html.escape(_identifier(obj, target.removesuffix("()")))
    code = f"<code>{html.escape(label)}</code>"
    return f'<autoref optional identifier="{identifier}">{code}</autoref>'


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles into autorefs links in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the roles in ``obj``'s docstring (griffe's ``on_instance`` event)."""
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = ROLE.sub(lambda m: _link(obj, m), obj.docstring.value)
