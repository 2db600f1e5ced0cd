"""MkDocs hook: pages whose tables are generated from the project's own sources.

- ``docs/reference/bad-input.md`` holds :data:`MARKER`; at build time it is replaced by
  the tables of ``parity_tests/test_bad_input_catalogue.py`` (its ``readme_tables()``, the
  same text ``python parity_tests/test_bad_input_catalogue.py`` prints), so the page shows
  exactly the rows the test runs and can never drift from them. Importing the test module
  imports torch, JAX and Flax (the ``torch`` extra is needed to build the docs).
- ``<!-- benchmark: benchmarks/FILE.json -->`` is replaced by that results file's table,
  rendered by the benchmark's own reporting code (``benchmarks/report.py`` for
  ``jit_benchmark_*.json``, ``benchmarks/workloads.py`` for ``workloads_*.json``; numpy
  only), so the performance page shows the committed results as they are.
- The committed plots ``benchmarks/*.png`` are served as ``explanation/*.png`` straight
  from ``benchmarks/`` (no copy under ``docs/`` to fall out of date).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

MARKER = "<!-- bad-input-catalogue -->"
ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "parity_tests" / "test_bad_input_catalogue.py"
BENCHMARKS = ROOT / "benchmarks"
BENCHMARK_MARKER = re.compile(r"<!-- benchmark: benchmarks/(?P<name>[\w.-]+\.json) -->")


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


def benchmark_markdown(name: str) -> str:
    """The table of one committed results file, by the benchmark's own reporting code.

    Args:
        name: a file in ``benchmarks/``: ``jit_benchmark_*.json`` or ``workloads_*.json``.

    Returns:
        The Markdown the benchmark's ``--report FILE`` prints for it.

    Raises:
        ValueError: a file of neither kind.
    """
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    results = json.loads((BENCHMARKS / name).read_text())
    if name.startswith("jit_benchmark"):
        import report

        return str(report.markdown(results))
    if name.startswith("workloads"):
        import workloads

        return str(workloads.report(results))
    raise ValueError(f"benchmark marker: no report for {name!r}")


def on_files(files: Any, config: Any, **_: Any) -> Any:
    """Add the benchmarks' committed plots to the site (MkDocs ``on_files`` event)."""
    from mkdocs.structure.files import File

    for plot in sorted(BENCHMARKS.glob("*.png")):
        files.append(File.generated(config, f"explanation/{plot.name}", abs_src_path=str(plot)))
    return files


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace the markers with the generated tables (MkDocs ``on_page_markdown`` event)."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, catalogue_markdown())
    return BENCHMARK_MARKER.sub(lambda m: benchmark_markdown(m.group("name")), markdown)
