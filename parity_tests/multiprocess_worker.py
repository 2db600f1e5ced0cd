"""One process of a multi-process ``lstm_jax.fit`` run on localhost (started by
``parity_tests/multiprocess.py``; one CPU device per process, JAX's gloo CPU
collectives).

    JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=k \\
        python parity_tests/multiprocess_worker.py OUT_DIR RUN [RUN ...] [--checkpoint-dir D]

Each RUN is a name of :data:`RUNS`: ``fit``'s options for it; ``"local"`` runs pass
only this process's share of the samples (``process_local=True``). Process k writes
``OUT_DIR/<run>.<k>.npz`` (the losses and the parameters under torch's names).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

# N = 56 in batches of 16: three full batches and a remainder of 8 per epoch.
SAMPLES, STEPS, FEATURES = 56, 12, 3
# Process k's own samples with process_local=True: unequal shares, in process order.
SHARES = (24, 32)
RUNS: dict[str, dict[str, Any]] = {
    "replicated": {"epochs": 6},
    "local": {"epochs": 6, "process_local": True},
    # The lost-worker test's run: long enough to be killed in the middle; its chunks
    # of 6 epochs are the compiled program of "local" (one compilation for both).
    "long": {"epochs": 36, "process_local": True, "checkpoint_every": 6},
}


def task() -> tuple[np.ndarray, np.ndarray]:
    """The training data: xs (N, T, I), ys (N, 1), the same in every process."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((SAMPLES, STEPS, FEATURES)).astype(np.float32)
    ys = np.tanh(xs[:, -3:, 0].sum(1, keepdims=True)).astype(np.float32)
    return xs, ys


def share(process: int, count: int) -> slice:
    """Process ``process``'s rows of the data set (of ``count`` processes)."""
    if count == 1:
        return slice(0, SAMPLES)
    start = sum(SHARES[:process])
    return slice(start, start + SHARES[process])


def train(run: str, checkpoint_dir: str | None, differ: bool = False) -> tuple[Any, np.ndarray]:
    """``lstm_jax.fit`` with :data:`RUNS`'s options for ``run`` over every process's
    device (one process: its own device, no mesh). ``differ``: process 1 changes one
    target (a mistake fit must catch)."""
    import jax

    import lstm_jax
    from lstm_jax.train.parallel import batch_mesh

    xs, ys = task()
    if differ and jax.process_index() == 1:
        ys[5] += 1
    model = lstm_jax.LSTMModeler(FEATURES, 16, 1, num_layers=2)
    variables = model.init(jax.random.key(0), xs[0])
    options = dict(RUNS[run])
    local = options.get("process_local", False)
    if jax.process_count() > 1:
        options["mesh"] = batch_mesh()
        if local:
            rows = share(jax.process_index(), jax.process_count())
            xs, ys = xs[rows], ys[rows]
    else:
        options.pop("process_local", None)
    if "checkpoint_every" in options:
        if checkpoint_dir is None:
            options.pop("checkpoint_every")
        else:
            options["checkpoint_dir"] = checkpoint_dir
    with jax.default_matmul_precision("highest"):
        return lstm_jax.fit(
            model,
            variables,
            xs,
            ys,
            optimizer=lstm_jax.Adam(0.003),
            batch_size=16,
            shuffle_seed=0,
            **options,
        )


def flat(trained: Any, losses: np.ndarray) -> dict[str, np.ndarray]:
    import lstm_jax

    return {"losses": np.asarray(losses), **lstm_jax.params_to_torch(trained)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("runs", nargs="+", choices=sorted(RUNS))
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--heartbeat-timeout", type=int, default=5)
    p.add_argument("--differ", action="store_true", help="process 1 passes other targets")
    p.add_argument("--fail", type=int, default=None, help="this process raises before fit")
    args = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("lstm_jax").setLevel(logging.INFO)

    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # jax 0.10's default
    import lstm_jax

    lstm_jax.initialize_distributed(heartbeat_timeout_seconds=args.heartbeat_timeout)
    me = jax.process_index()
    print(f"process {me} of {jax.process_count()}: devices {jax.devices()}", flush=True)
    for run in args.runs:
        if args.fail == me:
            raise RuntimeError("injected failure")
        trained, losses = train(run, args.checkpoint_dir, args.differ)
        np.savez(args.out / f"{run}.{me}.npz", **flat(trained, losses))
        print(f"process {me}: {run} done, final loss {losses[-1]:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
