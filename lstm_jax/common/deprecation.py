"""Old import paths kept working for one minor release after a move (PEP 562 shims).

A module that moved leaves a small module at its old path; it builds a
:class:`MovedModule` and hands its module-level ``__getattr__`` and ``__dir__`` to it::

    _moved = MovedModule(__name__, {"lstm_jax.train.parallel": ("batch_mesh",)})

    def __getattr__(name: str) -> Any:
        return _moved.attribute(name)

    def __dir__() -> list[str]:
        return _moved.names()

Importing the old module warns once (``FutureWarning``: its names' new homes); reading a
name from it warns again, naming that name's new home (the top-level ``lstm_jax`` when it
is exported there), and returns the very object the new home holds. Nothing is copied.

The new homes are imported by name (:func:`importlib.import_module`), when a name is
read: this module is numpy-only and sits in the lowest layer, the shims above everything;
an old path to a training helper must not pull JAX into ``lstm_torch``'s imports.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

# The release that removes the old paths (one minor release after the deprecation).
REMOVED_IN = "0.4.0"

# Source files whose frames a warning skips to point at the user's line: this one, the
# shims that registered and importlib.import_module's (warnings.warn itself skips the
# frozen importlib._bootstrap frames an import statement runs through).
_SKIPPED_FILES: set[str] = {__file__, os.path.abspath(importlib.__file__ or "")}


def _is_importlib(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return "importlib" in filename and "_bootstrap" in filename


def warn_deprecated(message: str, stacklevel: int = 1) -> None:
    """``warnings.warn(message, FutureWarning)`` attributed to the user's line.

    ``FutureWarning``, not ``DeprecationWarning``: Python shows it by default, so the
    users of a moved path see it without turning warnings on.

    Args:
        message: what is deprecated, when it goes and what to use instead.
        stacklevel: as ``warnings.warn``'s, counted from the caller (1: the caller's
            line, 2: its caller's); frames in the shims beyond it are skipped too.
    """
    frame: FrameType | None = sys._getframe(stacklevel)
    level = stacklevel + 1  # warnings.warn counts from this function's frame
    while frame is not None and (
        frame.f_code.co_filename in _SKIPPED_FILES or _is_importlib(frame)
    ):
        if not _is_importlib(frame):
            level += 1
        frame = frame.f_back
    warnings.warn(message, FutureWarning, stacklevel=level)


class MovedModule:
    """The old module path ``old``, whose names now live in other modules.

    Args:
        old: the old module's name (the shim's ``__name__``), e.g. ``"lstm_jax.parallel"``.
        homes: each new module and the old names it now holds, e.g.
            ``{"lstm_jax.train.parallel": ("batch_mesh", "BATCH_AXIS")}``.
        package: the package whose ``__all__`` a name may also be imported from
            (suggested first when it exports the same object).
        file: the shim's ``__file__`` (its frames are skipped when warning).
        whole_module: the old module itself is deprecated (warn now, while it is
            imported); False for a module that stays and lost only the names in ``homes``.
    """

    def __init__(
        self,
        old: str,
        homes: Mapping[str, Sequence[str]],
        *,
        package: str = "lstm_jax",
        file: str | None = None,
        whole_module: bool = True,
    ) -> None:
        self.old = old
        self.package = package
        self.whole_module = whole_module
        self.home_of = {name: new for new, names in homes.items() for name in names}
        if file is not None:
            _SKIPPED_FILES.add(file)
        if whole_module:
            warn_deprecated(
                f"{old} is deprecated and will be removed in {REMOVED_IN}; "
                f"import its names from {self._modules_text()} (see CHANGELOG.md)"
            )

    def _modules_text(self) -> str:
        modules = list(dict.fromkeys(self.home_of.values()))
        return modules[0] if len(modules) == 1 else ", ".join(modules[:-1]) + " or " + modules[-1]

    def new_home(self, name: str) -> str:
        """Where to import ``name`` from now: ``"lstm_jax (lstm_jax.train.parallel)"``
        when the package exports it, else its module, ``"lstm_jax.common.tolerances"``.

        Raises:
            KeyError: ``name`` is not one of the old module's names.
        """
        module = self.home_of[name]
        package = sys.modules.get(self.package) or importlib.import_module(self.package)
        if name in getattr(package, "__all__", ()):
            exported = getattr(package, name)
            if exported is getattr(importlib.import_module(module), name):
                return f"{self.package} ({module})"
        return module

    def attribute(self, name: str) -> Any:
        """The object ``name`` at its new home, after a ``FutureWarning`` naming the home.

        Raises:
            AttributeError: ``name`` was never one of the old module's public names (or
                was an internal helper that no longer exists).
        """
        if name not in self.home_of:
            moved = f" ({self.old} is deprecated; its names moved to {self._modules_text()})"
            raise AttributeError(
                f"module {self.old!r} has no attribute {name!r}"
                + (moved if self.whole_module else "")
            )
        what = self.old if self.whole_module else f"{self.old}.{name}"
        warn_deprecated(
            f"{what} is deprecated and will be removed in {REMOVED_IN}; "
            f"import {name} from {self.new_home(name)}"
        )
        return getattr(importlib.import_module(self.home_of[name]), name)

    def names(self) -> list[str]:
        """The old module's names, for ``dir()`` and completion."""
        return sorted(self.home_of)
