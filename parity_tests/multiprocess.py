"""Start N Python processes as one multi-process JAX job on localhost (test helper).

Each process gets ``JAX_COORDINATOR_ADDRESS`` (127.0.0.1 and a port free a moment
ago), ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` and one CPU device (no
``XLA_FLAGS``); :class:`Job` kills whatever is left of them when it closes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Job:
    """N processes of one job; use as a context manager (kills them on exit)."""

    argv: list[str]
    count: int
    cwd: Path
    # JAX's persistent compilation cache, shared by the jobs of a test module.
    cache: Path | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[tuple[Path, Path]] = field(default_factory=list)

    def __enter__(self) -> Job:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_PLATFORMS="cpu")
        env.update(JAX_NUM_PROCESSES=str(self.count), PYTHONUNBUFFERED="1")
        if self.cache is not None:
            env.update(
                JAX_COMPILATION_CACHE_DIR=str(self.cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
            )
        stamp = f"{port}"
        for k in range(self.count):
            out, err = self.cwd / f"p{k}.{stamp}.out", self.cwd / f"p{k}.{stamp}.err"
            self.logs.append((out, err))
            with open(out, "w") as o, open(err, "w") as e:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, *self.argv],
                        env={**env, "JAX_PROCESS_ID": str(k)},
                        cwd=self.cwd,
                        stdout=o,
                        stderr=e,
                        start_new_session=True,
                    )
                )
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def kill(self, k: int) -> None:
        os.killpg(self.processes[k].pid, signal.SIGKILL)
        self.processes[k].wait()

    def wait(self, k: int, timeout: float) -> Result:
        """Process k's exit status and output; AssertionError when it runs past ``timeout``."""
        try:
            code = self.processes[k].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"process {k} still running after {timeout} s:\n{self.read(k)[1][-3000:]}"
            ) from None
        out, err = self.read(k)
        return Result(code, out, err)

    def wait_all(self, timeout: float) -> list[Result]:
        deadline = time.monotonic() + timeout
        return [self.wait(k, max(0.0, deadline - time.monotonic())) for k in range(self.count)]

    def read(self, k: int) -> tuple[str, str]:
        out, err = self.logs[k]
        return out.read_text(), err.read_text()
