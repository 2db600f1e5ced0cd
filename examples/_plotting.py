"""Plot plumbing the examples share: the ``--plot PATH`` / ``--no-plot`` options,
matplotlib on the Agg backend (no display needed), and saving a figure."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# Where the examples write what they make: a folder git ignores (.gitignore), so running
# an example leaves ``git status`` clean. Relative to the working directory.
OUTPUT_DIR = Path("out")


def add_plot_arguments(parser: argparse.ArgumentParser, filename: str, what: str) -> None:
    """``--plot PATH`` (default ``out/<filename>``) and ``--no-plot``."""
    parser.add_argument(
        "--plot", type=Path, default=OUTPUT_DIR / filename, help=f"where to save {what} (PNG)"
    )
    parser.add_argument("--no-plot", action="store_true", help="do not save the plot")


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> None:
    """Lay out, write ``path`` (creating its folder) and close ``fig``."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
