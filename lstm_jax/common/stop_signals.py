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
ignored.
"""

from __future__ import annotations

import signal
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
        self._previous.clear()
        if self.active:
            _ACTIVE.remove(self)
        self.active = False

    @property
    def sigterm(self) -> bool:
        """The stop was asked by SIGTERM (else by Ctrl-C)."""
        return self.requested == signal.SIGTERM


_ACTIVE: list[StopRequests] = []  # the installed contexts, innermost last (main thread)


def current() -> StopRequests | None:
    """The innermost installed :class:`StopRequests` (None outside one): what a
    training loop asks at its step boundaries."""
    return _ACTIVE[-1] if _ACTIVE else None
