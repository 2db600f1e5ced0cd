"""Several processes (hosts) training together: start-up, and a lost worker reported.

:func:`initialize_distributed` is ``jax.distributed.initialize`` (which finds the
coordinator, the number of processes and this process's id in
``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, or
detects SLURM, Open MPI, Kubernetes or Cloud TPU itself) plus a watchdog.

Why a watchdog: when a process dies, JAX's own failure detection (its heartbeat,
100 s by default) ends every other process with a C++ ``Check failure`` abort
(exit 134, ``Task 1 heartbeat timeout`` inside a stack trace), and a survivor whose
coordinator died may first wait out the 300 s shutdown timeout. The client's
``missed_heartbeat_callback`` that would let Python report it is not usable from
jax 0.10.2 (``jax.distributed.initialize`` does not pass it; passing one fails
with ``std::bad_cast``). So each process also beats in JAX's key-value store
(a counter per process, every second) and watches the others' beats:

- a process whose counter stops for ``heartbeat_timeout_seconds``, or the
  coordination service itself unreachable that long (process 0 died), is lost;
- a process that ends with an uncaught exception says so in the store first, and
  the others report it at once (with its error);
- a process that ends normally marks itself done and is not watched any more.

On a loss every survivor prints ``lstm_jax: lost process 1 of 2 (host h, pid p):
...`` to stderr and exits with status :data:`WORKER_LOST_EXIT` (75, EX_TEMPFAIL:
"try again"), so a launcher's restart policy can rerun the job; ``fit`` with
``checkpoint_dir=`` then resumes from the last checkpoint. A ``fit`` whose
collective fails (its peer gone; CPU collectives notice at once) waits for the
watchdog's verdict and raises :class:`~lstm_jax.common.errors.WorkerLost` with the
same message first. JAX's own heartbeat is set longer than the watchdog's
(:data:`JAX_HEARTBEAT_FACTOR`), as a backstop.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import jax

from lstm_jax.common.errors import WorkerLost

# Seconds without a beat after which a process counts as lost (fit fails within it).
HEARTBEAT_TIMEOUT = 20
# Exit status of a process that lost a peer (sysexits.h EX_TEMPFAIL).
WORKER_LOST_EXIT = 75
# JAX's own heartbeat timeout, as a multiple of ours (ours reports first).
JAX_HEARTBEAT_FACTOR = 3
# Seconds between beats.
BEAT_INTERVAL = 1.0
# After reporting a loss, seconds the main thread gets to raise WorkerLost from fit.
GRACE = 5.0
_PREFIX = "lstm_jax/watchdog/"

__all__ = [
    "HEARTBEAT_TIMEOUT",
    "WORKER_LOST_EXIT",
    "initialize_distributed",
    "lost_workers_reported",
]


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"{name} must be an integer, got {value!r}") from error


def initialize_distributed(
    *,
    heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT,
    watchdog: bool = True,
    **kwargs: Any,
) -> None:
    """``jax.distributed.initialize`` from the environment, and the lost-worker watchdog.

    Call it once per process, before any other JAX call. ``JAX_COORDINATOR_ADDRESS``
    (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` are
    read when set; otherwise JAX detects the cluster (SLURM, Open MPI, Kubernetes,
    Cloud TPU).

    Arguments:
        heartbeat_timeout_seconds: a process silent this long is lost: every other
            process reports it (stderr, and :class:`~lstm_jax.common.errors.WorkerLost`
            from a running ``fit``) and exits with status 75. JAX's own heartbeat
            timeout is set to ``3 *`` this. A process blocked longer than this
            without releasing Python (it never is while JAX computes) would be
            reported falsely: keep it well above such pauses.
        watchdog: False: plain ``jax.distributed.initialize`` (JAX's heartbeat with
            ``heartbeat_timeout_seconds``, its abort on a loss).
        kwargs: more arguments of ``jax.distributed.initialize`` (e.g.
            ``coordinator_address``, ``local_device_ids``).
    """
    if isinstance(heartbeat_timeout_seconds, bool) or not (
        isinstance(heartbeat_timeout_seconds, int) and heartbeat_timeout_seconds >= 2
    ):
        raise ValueError(
            f"heartbeat_timeout_seconds: expected an int >= 2, got {heartbeat_timeout_seconds!r}"
        )
    for key, name in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        value = _int_env(name)
        if value is not None:
            kwargs.setdefault(key, value)
    factor = JAX_HEARTBEAT_FACTOR if watchdog else 1
    jax.distributed.initialize(
        heartbeat_timeout_seconds=factor * heartbeat_timeout_seconds, **kwargs
    )
    if watchdog and jax.process_count() > 1:
        _Watchdog.start(heartbeat_timeout_seconds)


class _Watchdog:
    """Beats for this process and watches the others' (see the module docstring)."""

    current: _Watchdog | None = None

    def __init__(self, client: Any, timeout: float) -> None:
        self.client = client
        self.timeout = float(timeout)
        self.me = jax.process_index()
        self.count = jax.process_count()
        self.where: dict[int, str] = {}
        self.lost: str | None = None
        self.gone: set[int] = set()
        self.found = threading.Event()
        self.claimed = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lstm_jax-watchdog", daemon=True)

    @classmethod
    def start(cls, timeout: float) -> None:
        from jax._src import distributed as jax_distributed  # the client JAX started

        client: Any = jax_distributed.global_state.client
        watchdog = cls(client, timeout)
        client.key_value_set(
            f"{_PREFIX}where/{watchdog.me}", f"host {socket.gethostname()}, pid {os.getpid()}"
        )
        wait_ms = int(1000 * max(60.0, 3 * timeout))
        for p in range(watchdog.count):
            watchdog.where[p] = client.blocking_key_value_get(f"{_PREFIX}where/{p}", wait_ms)
        cls.current = watchdog
        watchdog.thread.start()
        # atexit runs the latest registration first: this runs before JAX's own shutdown.
        atexit.register(watchdog._at_exit)

    def name(self, process: int) -> str:
        where = self.where.get(process)
        return f"process {process} of {self.count}" + (f" ({where})" if where else "")

    def _run(self) -> None:
        last_beats: dict[int, str | None] = {}
        last_change = {p: time.monotonic() for p in range(self.count) if p != self.me}
        last_contact = time.monotonic()
        beat = f"{_PREFIX}beat/{self.me}"
        while not self.stopped.is_set():
            now = time.monotonic()
            try:
                self.client.key_value_increment(beat, 1)
                beats = dict(self.client.key_value_dir_get(f"{_PREFIX}beat/"))
                done = dict(self.client.key_value_dir_get(f"{_PREFIX}done/"))
                failed = dict(self.client.key_value_dir_get(f"{_PREFIX}failed/"))
                last_contact = now
            except Exception as error:  # the coordination service is unreachable
                if now - last_contact > self.timeout:
                    self._report(
                        f"lost {self.name(0)}, the coordinator: its service has not answered "
                        f"for {now - last_contact:.0f} s (heartbeat_timeout_seconds="
                        f"{self.timeout:.0f}; {str(error).splitlines()[0]})",
                        0,
                    )
                    return
                self.stopped.wait(BEAT_INTERVAL)
                continue
            for key, message in failed.items():
                process = int(key.rsplit("/", 1)[1])
                if process != self.me:
                    self._report(f"lost {self.name(process)}: it failed: {message}", process)
                    return
            for process in list(last_change):
                if f"{_PREFIX}done/{process}" in done:
                    del last_change[process]
                    continue
                value = beats.get(f"{_PREFIX}beat/{process}")
                if value != last_beats.get(process):
                    last_beats[process] = value
                    last_change[process] = now
                elif now - last_change[process] > self.timeout:
                    self._report(
                        f"lost {self.name(process)}: no heartbeat for "
                        f"{now - last_change[process]:.0f} s (heartbeat_timeout_seconds="
                        f"{self.timeout:.0f}); it died or hangs",
                        process,
                    )
                    return
            self.stopped.wait(BEAT_INTERVAL)

    def _report(self, message: str, process: int) -> None:
        self.gone.add(process)
        self.lost = (
            f"lstm_jax: {message}. Stopping {self.name(self.me)} with exit status "
            f"{WORKER_LOST_EXIT}; restart every process to go on (fit(checkpoint_dir=...) "
            f"resumes from the last checkpoint)"
        )
        print(self.lost, file=sys.stderr, flush=True)
        self.found.set()
        if not self.claimed.wait(GRACE) and not self.stopped.is_set():
            self._exit(WORKER_LOST_EXIT, f"stopped: {message}")

    def _mark(self, kind: str, text: str) -> None:
        try:
            self.client.key_value_set(f"{_PREFIX}{kind}/{self.me}", text[:500])
        except Exception:  # the service is gone: nobody to tell
            pass

    def _exit(self, code: int, why: str) -> None:
        """Tell the others, let process 0 (the service) outlive them, and exit now: JAX's
        shutdown barrier would wait for the lost process in vain."""
        self.stopped.set()
        self._mark("failed", why)
        if self.me == 0:
            self._wait_for_others()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def _wait_for_others(self) -> None:
        """Until every other live process has said it is done or failed (bounded)."""
        deadline = time.monotonic() + self.timeout + GRACE + 5
        while time.monotonic() < deadline:
            try:
                said = {
                    int(key.rsplit("/", 1)[1])
                    for kind in ("done", "failed")
                    for key, _ in self.client.key_value_dir_get(f"{_PREFIX}{kind}/")
                }
            except Exception:
                return
            if set(range(self.count)) - said - self.gone - {self.me} == set():
                return
            time.sleep(0.2)

    def _at_exit(self) -> None:
        uncaught = getattr(sys, "last_value", None)
        if uncaught is not None and not isinstance(uncaught, WorkerLost):
            first_line = (str(uncaught).splitlines() or [""])[0]
            self._exit(1, f"{type(uncaught).__name__}: {first_line}")
        if self.lost is not None:
            self._exit(WORKER_LOST_EXIT, "stopped: " + self.lost)
        self._mark("done", "1")
        # Stopped before JAX's shutdown (and Python's end, which would kill the thread
        # inside a call of JAX's client and abort the process).
        self.stopped.set()
        self.thread.join(timeout=self.timeout)

    def verdict(self) -> str | None:
        """Wait (up to the heartbeat timeout and a little) for a reported loss."""
        if self.found.wait(self.timeout + 3 * BEAT_INTERVAL):
            self.claimed.set()
            return self.lost
        return None


# The status codes XLA puts first in the message of a runtime failure ("UNKNOWN: Gloo
# AllGather failed: ... Connection reset by peer"); some collectives raise such a failure
# as a ValueError rather than a JaxRuntimeError.
_RUNTIME_STATUSES = frozenset(
    {"UNKNOWN", "UNAVAILABLE", "INTERNAL", "ABORTED", "CANCELLED", "DEADLINE_EXCEEDED",
     "FAILED_PRECONDITION", "DATA_LOSS"}
)  # fmt: skip


def _runtime_failure(error: BaseException) -> bool:
    """Whether ``error`` is the runtime's (a collective whose peer is gone may be), not a
    mistake of the caller's."""
    if isinstance(error, jax.errors.JaxRuntimeError):
        return True
    return isinstance(error, ValueError) and str(error).split(":", 1)[0] in _RUNTIME_STATUSES


@contextlib.contextmanager
def lost_workers_reported() -> Iterator[None]:
    """Around a computation over several processes: a failure of it that the watchdog
    explains as a lost process is raised as :class:`WorkerLost`, naming the process."""
    try:
        yield
    except (jax.errors.JaxRuntimeError, ValueError) as error:
        if not _runtime_failure(error):
            raise
        watchdog = _Watchdog.current
        if watchdog is None:
            raise
        message = watchdog.verdict()
        if message is None:
            raise
        raise WorkerLost(message) from error
