"""``lstm_jax.fit`` over 2 real processes on localhost (one CPU device each, gloo).

The worker (``multiprocess_worker.py``) trains ``LSTMModeler(3, 16, 1, num_layers=2)``
(Adam, N = 56 in batches of 16, a remainder batch of 8, shuffled) with
``mesh=batch_mesh()`` over both processes' devices:

- ``replicated``: every process passes the whole data set;
- ``local``: ``process_local=True``, process 0 passes samples 0..23, process 1
  samples 24..55 (unequal shares);

and both must give the one-process run's losses and parameters within
``tolerances.TRAINING`` (the gradient sum is split in two), the same in both
processes, and (same batches, same order) the same bits as each other. A killed
worker must make the survivor stop within 60 s, naming it, and a restart must
resume from the last checkpoint and end bitwise as the uninterrupted run.

Every job is bounded (``Job.wait`` timeouts) and its processes killed on exit;
the jobs share a JAX compilation cache so the later ones skip compiling.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import jax
import multiprocess_worker as worker
import numpy as np
import pytest
from multiprocess import Job, Result

from lstm_jax.common.errors import WorkerLost
from lstm_jax.common.tolerances import TRAINING, scaled_error
from lstm_jax.train import distributed
from lstm_jax.train.distributed import WORKER_LOST_EXIT

WORKER = str(Path(__file__).with_name("multiprocess_worker.py"))
F32 = np.dtype(np.float32)
JOB_TIMEOUT = 240  # seconds a whole job may take (2 loaded cores, compiling)
LOST_WITHIN = 60  # seconds after the kill the survivor must have stopped


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multiprocess")


def job(workdir: Path, name: str, *args: str) -> Job:
    """The 2 processes of the worker with ``args``; results and logs in workdir/name."""
    out = workdir / name
    out.mkdir()
    return Job([WORKER, str(out), *args], 2, out, cache=workdir / "jax_cache")


def load(workdir: Path, run: str, process: int) -> dict[str, np.ndarray]:
    with np.load(workdir / f"{run}.{process}.npz") as f:
        return dict(f)


def assert_ok(results: list) -> None:
    for k, r in enumerate(results):
        assert r.returncode == 0, f"process {k} exited {r.returncode}:\n{r.stderr[-4000:]}"


@pytest.fixture(scope="module")
def two_processes(workdir: Path) -> Path:
    """The replicated, process-local and (uninterrupted) long runs over 2 processes."""
    out = "uninterrupted"
    with job(workdir, out, "replicated", "local", "long", "--checkpoint-dir", "checkpoints") as j:
        assert_ok(j.wait_all(JOB_TIMEOUT))
    return workdir / out


@pytest.fixture(scope="module")
def one_process() -> dict[str, np.ndarray]:
    """The same training in this process on its one device, the whole data set."""
    return worker.flat(*worker.train("replicated", None))


@pytest.mark.slow
@pytest.mark.parametrize("run", ["replicated", "local"])
def test_two_processes_train_as_one(
    two_processes: Path, one_process: dict[str, np.ndarray], run: str
) -> None:
    for process in (0, 1):
        got = load(two_processes, run, process)
        assert got.keys() == one_process.keys()
        for key, reference in one_process.items():
            err = scaled_error(got[key], reference)
            assert err <= TRAINING[F32], f"{run}, process {process}, {key}: {err:.3g}"
    losses = one_process["losses"]
    assert losses[-1] < 0.9 * losses[0]  # it trains
    # Two devices do not sum the gradient as one does: the runs did differ in rounding.
    got = load(two_processes, run, 0)
    assert any(not np.array_equal(got[k], one_process[k]) for k in one_process if k != "losses")


@pytest.mark.slow
def test_both_processes_hold_the_same_result(two_processes: Path) -> None:
    for run in ("replicated", "local", "long"):
        zero, one = load(two_processes, run, 0), load(two_processes, run, 1)
        assert all(np.array_equal(zero[k], one[k]) for k in zero), run


@pytest.mark.slow
def test_process_local_is_the_replicated_run_bit_for_bit(two_processes: Path) -> None:
    """The processes' own shares, gathered per batch, are the same batches in the same
    order: the very same run."""
    replicated, local = load(two_processes, "replicated", 0), load(two_processes, "local", 0)
    for key in replicated:
        assert np.array_equal(local[key], replicated[key]), key


@pytest.mark.slow
def test_differing_data_is_a_clear_error(workdir: Path) -> None:
    """Replicated data that differs between processes: both stop with a ValueError
    naming what differs (not a hang, not JAX's whole-array comparison)."""
    with job(workdir, "differ", "replicated", "--differ") as j:
        results = j.wait_all(JOB_TIMEOUT)
    for k, r in enumerate(results):
        assert r.returncode == 1, f"process {k}: {r.returncode}\n{r.stderr[-3000:]}"
        assert "ValueError: fit: every process must pass the same" in r.stderr, r.stderr[-3000:]
        assert "differs between process 0 and process(es) [1]" in r.stderr, r.stderr[-3000:]
        assert "process_local=True" in r.stderr


@pytest.mark.slow
def test_a_failing_process_is_named_by_the_others(workdir: Path) -> None:
    """Process 1 raises before fit; process 0, waiting for it in fit's first collective,
    stops within a few seconds naming it and its error (not a hang, not JAX's abort)."""
    with job(workdir, "fail", "replicated", "--fail", "1") as j:
        survivor, failed = j.wait_all(LOST_WITHIN)
    assert failed.returncode == 1 and "RuntimeError: injected failure" in failed.stderr
    assert survivor.returncode == WORKER_LOST_EXIT, survivor.stderr[-3000:]
    assert re.search(
        r"lstm_jax: lost process 1 of 2 \(host \S+, pid \d+\): it failed: "
        r"RuntimeError: injected failure",
        survivor.stderr,
    ), survivor.stderr[-3000:]
    assert "Check failure stack trace" not in survivor.stderr


def checkpoints(directory: Path) -> list[int]:
    return sorted(int(p.name) for p in directory.glob("*") if p.name.isdigit())


def kill_during_training(workdir: Path, name: str, victim: int) -> tuple[Result, float, Path]:
    """Start the long run, SIGKILL ``victim`` once a checkpoint is saved; the other
    process's result (it must stop within LOST_WITHIN), the seconds it took to, and the
    checkpoint directory."""
    directory = workdir / f"{name}_checkpoints"
    with job(workdir, name, "long", "--checkpoint-dir", str(directory)) as j:
        deadline = time.monotonic() + JOB_TIMEOUT
        while not checkpoints(directory):
            assert time.monotonic() < deadline, f"no checkpoint in {directory}"
            assert all(p.poll() is None for p in j.processes), j.read(0)[1][-3000:]
            time.sleep(0.05)
        j.kill(victim)
        killed_at = time.monotonic()
        survivor = j.wait(1 - victim, LOST_WITHIN)
        return survivor, time.monotonic() - killed_at, directory


@pytest.mark.slow
def test_lost_worker_stops_the_job_clearly_and_a_restart_resumes_bitwise(
    workdir: Path, two_processes: Path
) -> None:
    survivor, stopped_after, directory = kill_during_training(workdir, "killed", victim=1)
    assert survivor.returncode == WORKER_LOST_EXIT, survivor.stderr[-4000:]
    assert stopped_after < LOST_WITHIN
    message = re.search(r"lstm_jax: lost process 1 of 2 \(host \S+, pid \d+\): .*", survivor.stderr)
    assert message, survivor.stderr[-4000:]
    assert "no heartbeat for" in message[0] and "heartbeat_timeout_seconds=5" in message[0]
    assert "restart every process" in message[0] and "checkpoint" in message[0]
    # Killed inside fit's collective: fit raised WorkerLost with it (the watchdog alone
    # prints it otherwise); never JAX's C++ abort.
    assert "Traceback" not in survivor.stderr or (
        "lstm_jax.common.errors.WorkerLost: lstm_jax: lost process 1" in survivor.stderr
    ), survivor.stderr[-4000:]
    assert "Check failure stack trace" not in survivor.stderr
    saved = checkpoints(directory)
    assert saved and saved[-1] < worker.RUNS["long"]["epochs"], saved

    with job(workdir, "restarted", "long", "--checkpoint-dir", str(directory)) as j:
        results = j.wait_all(JOB_TIMEOUT)
    assert_ok(results)
    resumed = re.search(r"resumed from epoch (\d+) of 36", results[0].stderr)
    assert resumed and int(resumed[1]) == saved[-1], (saved, results[0].stderr[-3000:])
    uninterrupted = load(two_processes, "long", 0)
    for process in (0, 1):
        again = load(workdir / "restarted", "long", process)
        for key in uninterrupted:
            assert np.array_equal(again[key], uninterrupted[key]), (process, key)


@pytest.mark.slow
def test_lost_coordinator_stops_the_job_fast(workdir: Path, two_processes: Path) -> None:
    """Process 0 killed takes JAX's coordination service with it: the survivor's JAX
    client ends it at once (its C++ abort: no Python hook exists in jax 0.10.2, see
    lstm_jax.train.distributed), well within the bound, saying the service failed."""
    survivor, stopped_after, _ = kill_during_training(workdir, "coordinator_killed", victim=0)
    assert survivor.returncode != 0
    assert stopped_after < LOST_WITHIN
    assert "JAX distributed service detected fatal errors" in survivor.stderr, survivor.stderr[
        -3000:
    ]


class FakeWatchdog:
    """Stands in for the running watchdog: its verdict is ``lost`` (None: no loss seen)."""

    def __init__(self, lost: str | None) -> None:
        self.lost, self.asked = lost, 0

    def verdict(self) -> str | None:
        self.asked += 1
        return self.lost


@pytest.mark.parametrize(
    "error",
    [
        ValueError("UNKNOWN: Gloo AllGather failed: [pair.cc:538] Read error: Connection reset"),
        jax.errors.JaxRuntimeError("UNAVAILABLE: connection closed by peer"),
    ],
    ids=["ValueError with a runtime status", "JaxRuntimeError"],
)
def test_a_collective_failing_with_its_peer_gone_is_a_worker_lost(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """Gloo's collectives fail as a ValueError carrying XLA's status as well as a
    JaxRuntimeError: both are the watchdog's to explain (CI once lost exit status 75 to
    JAX's abort when the ValueError went by uncaught)."""
    watchdog = FakeWatchdog("lstm_jax: lost process 1 of 2: no heartbeat for 6 s")
    monkeypatch.setattr(distributed._Watchdog, "current", watchdog)
    with pytest.raises(WorkerLost, match="lost process 1 of 2") as raised:
        with distributed.lost_workers_reported():
            raise error
    assert raised.value.__cause__ is error and watchdog.asked == 1


def test_a_callers_mistake_in_a_collective_is_raised_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ValueError of the caller's (no runtime status) is not waited on: the watchdog is
    not asked."""
    watchdog = FakeWatchdog(None)
    monkeypatch.setattr(distributed._Watchdog, "current", watchdog)
    with pytest.raises(ValueError, match="expected xs of"):
        with distributed.lost_workers_reported():
            raise ValueError("seq_lengths: expected xs of (N, T, ...) sequences, got (3,)")
    assert watchdog.asked == 0
    with pytest.raises(ValueError, match="UNKNOWN: Gloo"):  # a runtime failure, no loss seen
        with distributed.lost_workers_reported():
            raise ValueError("UNKNOWN: Gloo AllGather failed")
    assert watchdog.asked == 1


@pytest.mark.parametrize("timeout", [1, 2.5, True, "20"])
def test_heartbeat_timeout_is_checked(timeout: object) -> None:
    from lstm_jax import initialize_distributed

    with pytest.raises(ValueError, match=r"heartbeat_timeout_seconds: expected an int >= 2"):
        initialize_distributed(heartbeat_timeout_seconds=timeout)  # type: ignore[arg-type]


def test_process_variables_must_be_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_jax import initialize_distributed

    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match=r"JAX_NUM_PROCESSES must be an integer, got 'two'"):
        initialize_distributed()
