"""The process ``test_faults_processes.py`` sends real signals to (test helper).

    python parity_tests/faults_worker.py ROOT STOP_CHECK_SECONDS [EPOCHS]

trains a small model (``LSTMModeler(2, 40, 1, num_layers=2, dropout=0.25)`` with a
dropout key, Adam, 45 sequences of 30 steps in batches of 4: eleven full batches and
a remainder, shuffled; 30 epochs unless EPOCHS is given, a checkpoint every third of
them) with ``fit(checkpoint_dir=...)``, windows of about ``STOP_CHECK_SECONDS``, and
answers on stdout, one JSON line per request read from stdin:

- ``ref``: an uninterrupted run into ROOT/ref: ``{"digest", "losses", "seconds"}``;
- ``go NAME``: says ``{"started": NAME}``, then runs into ROOT/NAME; the test sends
  SIGTERM or SIGINT meanwhile; ``{"stopped": "Preempted" | "TrainingInterrupted" |
  null, "step", "checkpoint"}`` (null: the run ended before the signal);
- ``resume NAME``: the same call again: ``{"digest", "losses", "resumed"}``;
- ``exit NAME``: runs into ROOT/NAME without catching anything (SIGTERM ends the
  process with fit's exit status).

A signal that lands outside ``fit`` is recorded (``late``), not fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EPOCHS = 30
late: list[int] = []


class Resumed(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main() -> None:
    root, seconds = Path(sys.argv[1]), float(sys.argv[2])
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else EPOCHS
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, f: late.append(s))
    log = Resumed()
    logging.getLogger("lstm_jax.train").addHandler(log)
    logging.getLogger("lstm_jax.train").setLevel(logging.INFO)

    import jax

    import lstm_jax
    from lstm_jax.train import loop

    loop.STOP_CHECK_SECONDS = seconds
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((45, 30, 2)).astype(np.float32)
    ys = np.tanh(xs[:, -2:, 0].sum(1, keepdims=True)).astype(np.float32)
    model = lstm_jax.LSTMModeler(2, 40, 1, num_layers=2, dropout=0.25)
    variables = model.init(jax.random.key(0), xs[0])

    def train(name: str) -> tuple[Any, np.ndarray]:
        return lstm_jax.fit(
            model,
            variables,
            xs,
            ys,
            optimizer=lstm_jax.Adam(0.01),
            epochs=epochs,
            batch_size=4,
            shuffle_seed=0,
            rng=jax.random.key(1),
            checkpoint_dir=root / name,
            checkpoint_every=epochs // 3,
        )

    def digest(trained: Any) -> str:
        named = lstm_jax.params_to_torch(trained)
        h = hashlib.sha256()
        for key in sorted(named):
            h.update(key.encode() + np.ascontiguousarray(named[key]).tobytes())
        return h.hexdigest()

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    for line in sys.stdin:
        request, _, name = line.strip().partition(" ")
        if request == "ref":
            began = time.monotonic()
            trained, losses = train("ref")
            say(digest=digest(trained), losses=losses.tolist(), seconds=time.monotonic() - began)
        elif request == "go":
            say(started=name)
            try:
                train(name)
                say(stopped=None, late=late[-1:])
            except (lstm_jax.Preempted, lstm_jax.TrainingInterrupted) as stop:
                say(stopped=type(stop).__name__, step=stop.global_step, checkpoint=stop.checkpoint)
        elif request == "resume":
            log.lines.clear()
            trained, losses = train(name)
            resumed = [m for m in log.lines if m.startswith("resumed from")]
            say(digest=digest(trained), losses=losses.tolist(), resumed=resumed)
        elif request == "exit":
            say(started=name)
            train(name)
            say(stopped=None)


if __name__ == "__main__":
    main()
