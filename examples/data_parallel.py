"""Data-parallel training with a device mesh: the same run on one device and on all of them.

    python examples/data_parallel.py --simulate-devices 8
    python examples/data_parallel.py --processes 2 [--process-local]

trains ``lstm_jax.LSTMModeler(3, 16, 1, num_layers=2)`` on the synthetic task
of the parity tests (N = 512 random sequences of T = 20 steps, I = 3, targets a
fixed function of them; Adam lr 0.003, batch 64, 10 epochs, shuffled) twice from the same initial
weights: with ``lstm_jax.fit(...)`` on one device, and with ``lstm_jax.fit(...,
mesh=lstm_jax.train.parallel.batch_mesh())``, every batch split over all devices. It
prints the largest differences between the two runs' losses and parameters
(float32 rounding: the gradient sums are ordered differently), the first
(compiling) call's time, and the throughput of the compiled program (samples
per second, median of ``--repeats`` calls) on one device and on the mesh.

``--simulate-devices N`` makes XLA show N CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``, set before JAX starts).
They share this machine's cores, so the mesh run shows the partitioned program
working, not a speed-up: with 2 cores, 8 simulated devices run slower than one
(more, smaller matmuls plus the all-reduce). ``--simulate-devices 0`` uses the
devices JAX finds (e.g. several GPUs), where the mesh is what scales.

``--processes N`` is the multi-process (multi-host) path on this machine: it
launches N processes of this script, each with ``JAX_COORDINATOR_ADDRESS``
(127.0.0.1 and a free port), ``JAX_NUM_PROCESSES=N``, ``JAX_PROCESS_ID=k`` and
one CPU device pinned to core k mod the machine's cores, calling
``lstm_jax.initialize_distributed()`` and ``fit(..., mesh=batch_mesh())`` over
all N devices (gloo CPU collectives); with ``--process-local`` each process
passes only its own 1/N of the samples. The baseline is ONE process on N cores
(``fit`` without a mesh, XLA's threads over those cores). It prints both runs'
first call and samples/s (median of ``--repeats``) and the difference of the
trained parameters. Each process is bounded by ``--timeout`` seconds and killed
if it runs past it; a process that dies is reported with its exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from _tasks import synthetic_data


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--simulate-devices",
        type=int,
        default=8,
        help="CPU devices XLA simulates (0: the real devices)",
    )
    p.add_argument("--samples", type=int, default=512, help="N, training sequences")
    p.add_argument("--seq-len", type=int, default=20, help="T")
    p.add_argument("--hidden", type=int, default=16, help="hidden_layer_size")
    p.add_argument("--layers", type=int, default=2, help="num_layers")
    p.add_argument("--batch-size", type=int, default=64, help="global batch size")
    p.add_argument("--epochs", type=int, default=10, help="epochs")
    p.add_argument("--lr", type=float, default=0.003, help="Adam learning rate")
    p.add_argument("--repeats", type=int, default=5, help="timed calls of the compiled run")
    p.add_argument("--seed", type=int, default=0, help="data, init and shuffle seed")
    p.add_argument(
        "--processes", type=int, default=0, help="N processes x 1 CPU device on this machine"
    )
    p.add_argument(
        "--process-local", action="store_true", help="each process passes only its samples"
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds per launched process")
    p.add_argument(
        "--no-pin", action="store_true", help="leave the processes on every core (no affinity)"
    )
    p.add_argument("--role", choices=["worker", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def simulate_devices(count: int) -> None:
    """Ask XLA for ``count`` CPU devices; only works before JAX initializes its backends."""
    if "jax" in sys.modules:
        import jax

        if jax.device_count() >= count:
            return
        raise RuntimeError(
            f"--simulate-devices {count}: JAX already started with {jax.device_count()} "
            f"device(s); run this script as its own process"
        )
    flag = f"--xla_force_host_platform_device_count={count}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def timed_fit(fit, repeats: int) -> tuple[tuple, float, float]:
    """(result, first call's seconds, median seconds of ``repeats`` later calls)."""
    import jax
    import numpy as np

    start = time.perf_counter()
    result = jax.block_until_ready(fit())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fit())
        times.append(time.perf_counter() - start)
    return result, first, float(np.median(times))


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run the baseline (1 process, N cores), then N processes x 1 device; compare."""
    import json
    import subprocess
    import tempfile

    import numpy as np

    n = args.processes
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, __file__, *argv, "--out", out]

        def run(role: str, count: int, extra: dict[str, str]) -> list[int]:
            procs = [
                subprocess.Popen(
                    [*command, "--role", role],
                    env={**env, **extra, "JAX_PROCESS_ID": str(k)},
                    start_new_session=True,
                )
                for k in range(count)
            ]
            try:
                return [p.wait(timeout=args.timeout) for p in procs]
            except subprocess.TimeoutExpired:
                print(f"data_parallel: a {role} process ran past --timeout {args.timeout} s")
                return [-9] * count
            finally:
                for p in procs:
                    if p.poll() is None:
                        os.killpg(p.pid, 9)
                        p.wait()

        codes = run("baseline", 1, {})
        coordinator = f"127.0.0.1:{free_port()}"
        codes += run(
            "worker",
            n,
            {"JAX_COORDINATOR_ADDRESS": coordinator, "JAX_NUM_PROCESSES": str(n)},
        )
        if any(codes):
            names = ["baseline"] + [f"process {k}" for k in range(n)]
            print(
                "data_parallel: failed: "
                + ", ".join(f"{w} exit {c}" for w, c in zip(names, codes, strict=True) if c)
            )
            return 1
        base, many = (json.load(open(f"{out}/{r}.json")) for r in ("baseline", "worker"))
        a, b = np.load(f"{out}/baseline.npz"), np.load(f"{out}/worker.npz")
        from lstm_jax.common.tolerances import scaled_error

        error = max(scaled_error(b[k], a[k]) for k in a)
    samples = args.samples * args.epochs
    print(
        f"\ndata_parallel --processes {n}{' --process-local' if args.process_local else ''}: "
        f"{os.cpu_count()} CPU cores; LSTMModeler(3, {args.hidden}, 1, num_layers={args.layers}), "
        f"N={args.samples}, T={args.seq_len}, batch {args.batch_size}, {args.epochs} epochs"
    )
    print(f"parameters, {n} processes against 1 process: scaled error {error:.2e}")
    print(f"\n{'run':<40} {'first call (s)':>15} {'compiled (s)':>13} {'samples/s':>11}")
    if args.no_pin:
        labels = ("1 process, every core", f"{n} processes x 1 device, cores shared")
    else:
        labels = (f"1 process on {n} cores", f"{n} processes x 1 device, 1 core each")
    for name, r in zip(labels, (base, many), strict=True):
        print(f"{name:<40} {r['first']:>15.2f} {r['median']:>13.3f} {samples / r['median']:>11.0f}")
    print(f"ratio ({n} processes / 1 process): {base['median'] / many['median']:.2f}x samples/s")
    return 0


def role(args: argparse.Namespace) -> int:
    """One launched process: the baseline, or process k of the multi-process run."""
    import json

    import numpy as np

    n = args.processes
    cores = os.cpu_count() or 1
    if args.no_pin:
        pass
    elif args.role == "worker":
        os.sched_setaffinity(0, {int(os.environ["JAX_PROCESS_ID"]) % cores})
    else:
        os.sched_setaffinity(0, set(range(min(n, cores))))
    import jax

    import lstm_jax
    from lstm_jax.train.parallel import batch_mesh

    if args.role == "worker":
        lstm_jax.initialize_distributed()
    xs, ys = synthetic_data(args.samples, args.seq_len)
    model = lstm_jax.LSTMModeler(3, args.hidden, 1, num_layers=args.layers)
    variables = model.init(jax.random.key(args.seed), xs[0])
    options = {
        "optimizer": lstm_jax.Adam(args.lr),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "shuffle_seed": args.seed,
    }
    if args.role == "worker":
        options["mesh"] = batch_mesh()
        if args.process_local:
            k, share = jax.process_index(), -(-args.samples // n)
            xs, ys = xs[k * share : (k + 1) * share], ys[k * share : (k + 1) * share]
            options["process_local"] = True
    with jax.default_matmul_precision("highest"):
        (trained, _), first, median = timed_fit(
            lambda: lstm_jax.fit(model, variables, xs, ys, **options), args.repeats
        )
    if jax.process_index() == 0:
        with open(f"{args.out}/{args.role}.json", "w") as f:
            json.dump({"first": first, "median": median}, f)
        np.savez(f"{args.out}/{args.role}.npz", **lstm_jax.params_to_torch(trained))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.role:
        return role(args)
    if args.processes:
        return launch(args, argv)
    if args.simulate_devices:
        simulate_devices(args.simulate_devices)
    import jax

    import lstm_jax
    from lstm_jax.common.tolerances import scaled_error
    from lstm_jax.train.parallel import batch_mesh

    xs, ys = synthetic_data(args.samples, args.seq_len)
    model = lstm_jax.LSTMModeler(3, args.hidden, 1, num_layers=args.layers)
    variables = model.init(jax.random.key(args.seed), xs[0])
    mesh = batch_mesh()
    options = {
        "optimizer": lstm_jax.Adam(args.lr),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "shuffle_seed": args.seed,
    }
    devices = jax.devices()
    print(
        f"data_parallel: {len(devices)} {devices[0].platform} device(s)"
        + (" (simulated)" if args.simulate_devices else "")
        + f"; LSTMModeler(3, {args.hidden}, 1, num_layers={args.layers}), N={args.samples}, "
        f"T={args.seq_len}, batch {args.batch_size} ({args.batch_size // len(devices)} per "
        f"device on the mesh), {args.epochs} epochs"
    )
    with jax.default_matmul_precision("highest"):
        (one, one_losses), one_first, one_time = timed_fit(
            lambda: lstm_jax.fit(model, variables, xs, ys, **options), args.repeats
        )
        (many, many_losses), many_first, many_time = timed_fit(
            lambda: lstm_jax.fit(model, variables, xs, ys, mesh=mesh, **options), args.repeats
        )

    params_error = max(
        scaled_error(a, b) for a, b in zip(jax.tree.leaves(many), jax.tree.leaves(one), strict=True)
    )
    print(f"final epoch loss: one device {one_losses[-1]:.6f}, mesh {many_losses[-1]:.6f}")
    print(
        f"mesh against one device: losses scaled error "
        f"{scaled_error(many_losses, one_losses):.2e}, parameters {params_error:.2e}"
    )
    print(f"parameters after the mesh run: {jax.tree.leaves(many)[0].sharding}")
    samples = args.samples * args.epochs
    print(f"\n{'run':<22} {'first call (s)':>15} {'compiled (s)':>13} {'samples/s':>11}")
    for name, first, seconds in (
        ("one device", one_first, one_time),
        (f"mesh of {len(devices)}", many_first, many_time),
    ):
        print(f"{name:<22} {first:>15.2f} {seconds:>13.3f} {samples / seconds:>11.0f}")
    if args.simulate_devices:
        print(
            f"\n(simulated devices share this machine's {os.cpu_count()} CPU core(s): "
            "no speed-up is expected; run with --simulate-devices 0 on a multi-GPU host)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
