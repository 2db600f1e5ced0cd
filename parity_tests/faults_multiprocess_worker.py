"""``multiprocess_worker.py`` with a run made to be preempted (test helper).

    JAX_COORDINATOR_ADDRESS=... JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=k \\
        python parity_tests/faults_multiprocess_worker.py OUT_DIR preemptible --checkpoint-dir D

The run ``preemptible`` (150 epochs, each process its own samples, a checkpoint
every 30 epochs) looks for a stop request every 0.1 s of training, so that a
SIGTERM sent to one process lands between steps well before the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import multiprocess_worker as worker

worker.RUNS["preemptible"] = {"epochs": 150, "process_local": True, "checkpoint_every": 30}

if __name__ == "__main__":
    from lstm_jax.train import loop

    loop.STOP_CHECK_SECONDS = 0.1
    raise SystemExit(worker.main())
