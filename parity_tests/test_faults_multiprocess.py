"""A preempted 2-process run (slow tier): SIGTERM to one process of
``lstm_jax.fit`` over 2 real processes (localhost, one CPU device each, gloo;
``parity_tests/multiprocess.py``) stops both at the same step with one
checkpoint, both exit with status 143, and restarting both resumes and ends
bitwise as the uninterrupted 2-process run.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from multiprocess import Job

pytestmark = pytest.mark.slow

WORKER = str(Path(__file__).with_name("faults_multiprocess_worker.py"))
JOB_TIMEOUT = 300  # seconds a whole job may take (2 loaded cores, compiling)
STOPPED = re.compile(r"SIGTERM: stopped at epoch (\d+), batch (\d+) \(global step (\d+)\)")


def job(workdir: Path, name: str, directory: Path) -> Job:
    out = workdir / name
    out.mkdir()
    args = [WORKER, str(out), "preemptible", "--checkpoint-dir", str(directory)]
    return Job(args, 2, out, cache=workdir / "jax_cache")


def load(out: Path, process: int) -> dict[str, np.ndarray]:
    with np.load(out / f"preemptible.{process}.npz") as f:
        return dict(f)


def test_one_process_sigterm_stops_both_at_one_step_and_the_restart_resumes_bitwise(
    tmp_path: Path,
) -> None:
    with job(tmp_path, "uninterrupted", tmp_path / "ref") as j:
        results = j.wait_all(JOB_TIMEOUT)
    for k, r in enumerate(results):
        assert r.returncode == 0, f"process {k}: {r.stderr[-3000:]}"

    directory = tmp_path / "preempted-checkpoints"
    with job(tmp_path, "preempted", directory) as j:
        deadline = time.monotonic() + JOB_TIMEOUT
        while "epoch 30 of 150" not in j.read(1)[1]:  # training, past its first save
            assert time.monotonic() < deadline, j.read(1)[1][-3000:]
            assert j.processes[1].poll() is None, j.read(1)[1][-3000:]
            time.sleep(0.02)
        j.processes[1].send_signal(signal.SIGTERM)
        results = j.wait_all(JOB_TIMEOUT)
    stops = []
    for k, r in enumerate(results):
        assert r.returncode == 143, f"process {k} exited {r.returncode}: {r.stderr[-3000:]}"
        found = STOPPED.search(r.stderr)
        assert found, r.stderr[-3000:]
        stops.append(found.groups())
    assert stops[0] == stops[1], stops  # the same step in both
    epoch = int(stops[0][0])
    assert 30 <= epoch < 150, stops
    assert (directory / "stopped" / stops[0][2]).is_dir()

    with job(tmp_path, "restarted", directory) as j:
        results = j.wait_all(JOB_TIMEOUT)
    for k, r in enumerate(results):
        assert r.returncode == 0, f"process {k}: {r.stderr[-3000:]}"
    assert "resumed from epoch" in results[0].stderr, results[0].stderr[-3000:]
    reference = load(tmp_path / "uninterrupted", 0)
    for process in (0, 1):
        again = load(tmp_path / "restarted", process)
        for key in reference:
            assert np.array_equal(again[key], reference[key]), (process, key)
