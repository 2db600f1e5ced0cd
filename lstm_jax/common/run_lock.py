"""One run per checkpoint directory: an exclusive lock held for a run's lifetime
(numpy only; both backends).

The lock is ``fcntl.flock`` on ``<checkpoint_dir>/.lstm_jax.lock``, a file that also
records the holder as JSON (host, pid, start time) for the message a second run
gets. The operating system releases a flock when its holder dies (also on kill -9),
so a crashed run never blocks the next one; the record it leaves behind is taken
over with a warning (a holder on the same host whose pid is gone, or a record
without a lock). A second run is refused at once (no waiting) with
:class:`~lstm_jax.common.errors.CheckpointDirBusy`, naming the holder.

On network filesystems ``flock`` may not exclude other hosts; the record is still
read and reported.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from lstm_jax.common.errors import CheckpointDirBusy

LOCK_NAME = ".lstm_jax.lock"
logger = logging.getLogger("lstm_jax.train")

__all__ = ["LOCK_NAME", "RunLock", "held"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read_record(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        record = json.loads(raw.decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


class RunLock:
    """The exclusive lock of one run on ``directory`` (created when missing).

    Arguments:
        directory: the checkpoint directory.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`CheckpointDirBusy` at once naming its holder."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_record(fd)
                os.close(fd)
                raise CheckpointDirBusy(self.directory, holder, self.path) from None
            # The holder before may have removed the file between our open and flock:
            # then the lock is on a deleted file; open the current one again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read_record(fd)
        if stale:
            here = stale.get("host") == socket.gethostname()
            dead = here and isinstance(stale.get("pid"), int) and not _pid_alive(stale["pid"])
            logger.warning(
                "checkpoint_dir %r: taking over the lock left by pid %s on host %s (started "
                "%s), %s",
                self.directory,
                stale.get("pid", "?"),
                stale.get("host", "?"),
                stale.get("started", "?"),
                "which is gone" if dead else "which no longer holds it",
            )
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Remove the record and let the lock go (nothing when not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def held(directory: str | os.PathLike[str] | None, *, take: bool = True) -> Iterator[None]:
    """``directory``'s lock for the body (nothing when ``directory`` is None or
    ``take`` is False: a process other than process 0 of a multi-process run)."""
    if directory is None or not take:
        yield
        return
    lock = RunLock(directory)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()
