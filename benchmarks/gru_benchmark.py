"""Time lstm_jax's GRU and RNN against PyTorch's (oneDNN on CPU) in one run: ratios.

    python benchmarks/gru_benchmark.py                 # medium shape, GRU and RNN, ~1-2 min
    python benchmarks/gru_benchmark.py --smoke         # tiny shape, seconds (no timing asserted)
    python benchmarks/gru_benchmark.py --kinds GRU --impls scan hoisted --repeats 9

For the shape (T, B, I, H) (``medium``: 128, 64, 32, 256, one layer, as the LSTM's
row of ``jit_benchmark.py``), both sides with the same weights, float32, precision
pinned, it times

- forward: ``jax.jit(model.apply)`` against torch's module under ``inference_mode``;
- a training step: forward, loss ``mean(out**2)``, backward, an SGD update (lr 1e-3).
  JAX: one jitted step, parameters donated. torch: ``zero_grad``, forward, ``backward``,
  ``step``.

Method as ``jit_benchmark.py``'s: warm-up (compilation excluded), each sample a
calibrated number of back-to-back calls ending in ``block_until_ready``, torch and
JAX samples alternating, the median of ``--repeats`` samples. The ratio is JAX's time
over torch's (< 1: JAX faster). Record the CPU's name with each figure.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch

import lstm_jax
from lstm_jax.interop.precision import pinned_precision

SHAPES = {"smoke": (6, 2, 3, 8), "medium": (128, 64, 32, 256)}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def interleaved(runners: dict[str, Callable[[], object]], repeats: int, min_sample: float) -> dict:
    """Median seconds per call of each runner, samples alternating between runners."""
    calls = {}
    for name, run in runners.items():
        run()
        once = max(timed(run, 1), 1e-6)
        calls[name] = max(1, int(min_sample / once))
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            samples[name].append(timed(run, calls[name]))
    return {name: statistics.median(v) for name, v in samples.items()}


def pair(kind: str, shape: tuple[int, ...], impl: str) -> tuple:
    T, B, I, H = shape
    torch.manual_seed(0)
    if kind == "GRU":
        tm, jm = torch.nn.GRU(I, H), lstm_jax.GRU(H, impl=impl)
    else:
        tm, jm = torch.nn.RNN(I, H), lstm_jax.RNN(H, impl=impl)
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    return tm, jm, variables, x


def jax_runners(jm: object, variables: dict, x: np.ndarray) -> tuple[Callable, Callable]:
    xj = jnp.asarray(x)
    forward = jax.jit(lambda v, x: jm.apply(v, x)[0])  # type: ignore[attr-defined]

    def loss(params: dict, x: jax.Array) -> jax.Array:
        return jnp.mean(jm.apply({"params": params}, x)[0] ** 2)  # type: ignore[attr-defined]

    @jax.jit
    def train(params: dict, x: jax.Array) -> dict:
        grads = jax.grad(loss)(params, x)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)

    state = {"params": jax.tree.map(jnp.array, variables["params"])}

    def run_forward() -> None:
        jax.block_until_ready(forward(variables, xj))

    def run_train() -> None:
        state["params"] = jax.block_until_ready(train(state["params"], xj))

    return run_forward, run_train


def torch_runners(tm: torch.nn.Module, x: np.ndarray) -> tuple[Callable, Callable]:
    xt = torch.from_numpy(x)
    opt = torch.optim.SGD(tm.parameters(), lr=1e-3)

    def run_forward() -> None:
        with torch.inference_mode():
            tm(xt)

    def run_train() -> None:
        opt.zero_grad()
        tm(xt)[0].square().mean().backward()
        opt.step()

    return run_forward, run_train


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="medium")
    p.add_argument("--smoke", action="store_true", help="the tiny shape, 1 repeat")
    p.add_argument("--kinds", nargs="+", choices=("GRU", "RNN"), default=["GRU", "RNN"])
    p.add_argument(
        "--impls",
        nargs="+",
        choices=("scan", "custom_vjp", "hoisted"),
        default=["scan", "custom_vjp", "hoisted"],
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-sample", type=float, default=0.3, help="seconds per sample")
    args = p.parse_args(argv)
    shape = SHAPES["smoke" if args.smoke else args.shape]
    repeats, min_sample = (1, 0.0) if args.smoke else (args.repeats, args.min_sample)
    print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()}; shape (T, B, I, H) {shape}")
    results: dict = {}
    with pinned_precision():
        for kind in args.kinds:
            for impl in args.impls:
                tm, jm, variables, x = pair(kind, shape, impl)
                jf, jt = jax_runners(jm, variables, x)
                tf, tt = torch_runners(tm, x)
                times = interleaved(
                    {"jax forward": jf, "torch forward": tf, "jax train": jt, "torch train": tt},
                    repeats,
                    min_sample,
                )
                row = {
                    "forward ratio": times["jax forward"] / times["torch forward"],
                    "train ratio": times["jax train"] / times["torch train"],
                    **{f"{k} ms": 1e3 * v for k, v in times.items()},
                }
                results[f"{kind} impl={impl}"] = row
                print(
                    f"{kind:4s} impl={impl:8s} forward {row['jax forward ms']:8.2f} ms vs torch "
                    f"{row['torch forward ms']:8.2f} ms (x{row['forward ratio']:.2f}); train step "
                    f"{row['jax train ms']:8.2f} ms vs torch {row['torch train ms']:8.2f} ms "
                    f"(x{row['train ratio']:.2f})"
                )
    return results


if __name__ == "__main__":
    main()
