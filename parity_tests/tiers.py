"""The test tiers: which tests the contributor's default run leaves out by measured time.

Tests marked ``@pytest.mark.slow`` by hand (subprocesses, several processes, kill and
resume, examples' defaults) are left out of the default ``pytest`` run. So are the tests
listed in ``parity_tests/slow_tier.txt``: those that took :data:`SECONDS` or more in the
last measured full run on 2 cores with 2 workers, so that the default tier stays within
about 3 minutes there (CONTRIBUTING.md, "Tests"). CI runs every test either way.

Regenerate the list after adding heavy tests (about 25 minutes on 2 cores)::

    python -m pytest -q -n 2 -m "slow or not slow" --durations=0 --durations-min=0.5 \\
        > durations.log
    python parity_tests/tiers.py durations.log
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

SECONDS = 1.0  # setup + call + teardown, measured under `-n 2` on 2 cores
LIST = Path(__file__).with_name("slow_tier.txt")
_ROW = re.compile(r"\s*([\d.]+)s (?:call|setup|teardown)\s+(.+?)\s*$")


def measured_slow(log_text: str, seconds: float = SECONDS) -> list[str]:
    """The node ids whose setup, call and teardown took ``seconds`` or more together,
    read from pytest's ``--durations`` report in ``log_text``."""
    total: collections.Counter[str] = collections.Counter()
    for line in log_text.splitlines():
        match = _ROW.match(line)
        if match:
            total[match[2]] += float(match[1])
    return sorted(node for node, spent in total.items() if spent >= seconds)


def listed_slow() -> frozenset[str]:
    """The node ids of :data:`LIST` (empty lines and ``#`` comments skipped)."""
    if not LIST.exists():
        return frozenset()
    lines = (line.strip() for line in LIST.read_text().splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python parity_tests/tiers.py DURATIONS_LOG", file=sys.stderr)
        return 2
    nodes = measured_slow(Path(argv[0]).read_text())
    header = (
        f"# tests that took {SECONDS} s or more under `-n 2` on 2 cores: left out of the\n"
        "# default tier (parity_tests/tiers.py says how to regenerate this list)\n"
    )
    LIST.write_text(header + "".join(f"{node}\n" for node in nodes))
    print(f"{len(nodes)} tests listed in {LIST}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
