"""Stop a training loop cleanly on SIGTERM or Ctrl-C (numpy only; both backends).

:class:`StopRequests` is a context manager around a training loop. Inside it,
SIGTERM (a preemption: SLURM, Kubernetes, spot machines send it, then SIGKILL
after a grace period) and SIGINT (Ctrl-C, a notebook's "interrupt") only set a
flag; the loop reads :attr:`StopRequests.requested` at each step (or chunk)
boundary, saves, and raises :class:`~lstm_jax.common.errors.Preempted` (exit
status 143) or :class:`~lstm_jax.common.errors.TrainingInterrupted` (a
``KeyboardInterrupt``). A second Ctrl-C while stopping raises ``KeyboardInterrupt``
at once (for a save that hangs). On leaving, the previous handlers are restored.

Handlers can only be installed in the main thread: elsewhere (a worker thread)
the context does nothing and signals keep their usual effect. A signal ignored
when the context is entered (``SIG_IGN``: ``nohup``, a shell's background job) stays
ignored. A handler installed outside Python (JAX's preemption notifier installs one
for SIGTERM in ``jax.distributed.initialize``) is put back as it was too (Linux:
through ``sigaction``, which Python's ``signal`` module cannot see).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopRequests", "current"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """Catch SIGTERM and SIGINT as a request to stop at the next boundary.

    Attributes:
        requested: the first signal received (``signal.SIGTERM`` or
            ``signal.SIGINT``), or None while none arrived.
        received_at: ``time.monotonic()`` when it arrived (None before).
        active: True when the handlers are installed (main thread only).
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self.received_at: float | None = None
        self.active = False
        self._previous: dict[int, Any] = {}
        self._native: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        import time

        if self.requested is None:
            self.requested = signum
            self.received_at = time.monotonic()
        elif signum == signal.SIGINT:  # Ctrl-C twice: out now, whatever it costs
            raise KeyboardInterrupt

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is not threading.main_thread():
            return self
        _ACTIVE.append(self)
        for signum in _SIGNALS:
            if signal.getsignal(signum) == signal.SIG_IGN:  # ignored on purpose (nohup, &)
                continue
            self._native[signum] = _native_action(signum)
            self._previous[signum] = signal.signal(signum, self._handle)
        self.active = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            _restore_native(signum, self._native.get(signum))
        self._previous.clear()
        self._native.clear()
        if self.active:
            _ACTIVE.remove(self)
        self.active = False

    @property
    def sigterm(self) -> bool:
        """The stop was asked by SIGTERM (else by Ctrl-C)."""
        return self.requested == signal.SIGTERM


_SIGACTION_BYTES = 256  # more than glibc's struct sigaction (152 bytes on x86-64)


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _native_action(signum: int) -> Any:
    """The process's current action for ``signum`` as raw bytes (None off Linux)."""
    libc = _libc()
    if libc is None:
        return None
    old = ctypes.create_string_buffer(_SIGACTION_BYTES)
    return old if libc.sigaction(signum, None, old) == 0 else None


def _restore_native(signum: int, action: Any) -> None:
    """Put back an action saved by :func:`_native_action` (Python's view unchanged)."""
    libc = _libc()
    if libc is not None and action is not None:
        libc.sigaction(signum, action, None)


_ACTIVE: list[StopRequests] = []  # the installed contexts, innermost last (main thread)


def current() -> StopRequests | None:
    """The innermost installed :class:`StopRequests` (None outside one): what a
    training loop asks at its step boundaries."""
    return _ACTIVE[-1] if _ACTIVE else None
