"""The package's import graph: no cycles between any two of its modules (import-linter's
layer contracts in pyproject.toml check the direction between subpackages; this checks
every pair of modules, imports inside functions included)."""

from __future__ import annotations

import grimp


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("lstm_jax", "lstm_torch")
    ours = ("lstm_jax", "lstm_torch")
    cycles = []
    for module in sorted(graph.modules):
        if not module.startswith(ours):
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == module or not imported.startswith(ours):
                continue
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(f"{module} -> {' -> '.join(back)}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
