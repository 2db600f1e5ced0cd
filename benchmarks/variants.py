"""Ways of writing one LSTM layer in JAX, each timed against torch.nn.LSTM in the same run.

    python benchmarks/variants.py                       # medium and long, wall clock
    python benchmarks/variants.py --threads 1 --clock cpu   # on a busy machine: CPU time, 1 CPU

The evidence behind ``lstm_jax.core.recurrence``'s knobs (see ``benchmarks/NOTES.md``). One
layer, one direction, float32, zero initial state; "forward" is the outputs (T, B, H),
"train" the gradient of ``sum(outputs * g)`` with respect to the weights and x
(torch: forward + ``backward``). Samples alternate between torch and each variant;
the ratio is the variant's median over torch's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

SHAPES = {"medium": (128, 64, 32, 256), "long": (1024, 16, 32, 128), "small": (32, 8, 8, 64)}


def variants() -> dict[str, Callable]:
    """name -> layer(params, x) -> outputs; params = (w_ih, w_hh, b_ih, b_hh).

    Each is the library's recurrence (``lstm_jax.core.recurrence.layer``) with explicit
    arguments, or a different arrangement of the matmuls around the library's cell
    (``lstm_jax.core.cell``): no variant writes gate math of its own."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from lstm_jax import core
    from lstm_jax.core import cell, recurrence, scan

    def zero_state(params: tuple, x: jax.Array) -> core.LSTMState:
        zeros = jnp.zeros((x.shape[1], params[1].shape[1]), x.dtype)
        return core.LSTMState(zeros, zeros)

    def hoisted_autodiff(params: tuple, x: jax.Array) -> jax.Array:
        """x @ W_ih^T + b for all steps at once, h @ W_hh^T per step, JAX's autodiff."""
        w = cell.step_weights(core.CellParams(*params))
        return scan.forward_scan(w, x, zero_state(params, x), None, hoisted=True)[0]

    def two_matmuls(params: tuple, x: jax.Array) -> jax.Array:
        """Per step x_t @ W_ih^T + h @ W_hh^T: two products, nothing hoisted."""
        w = cell.step_weights(core.CellParams(*params))

        def step(state: core.LSTMState, x_t: jax.Array) -> tuple:
            z = x_t @ w.w_ih_t + state.h @ w.w_hh_t + w.bias
            state, _ = cell.gate_update(w, state, z)
            return state, state.h

        return lax.scan(step, zero_state(params, x), x)[1]

    def library(impl: str, unroll: int = 1, remat: int = 0, **rows: int) -> Callable:
        """``recurrence.layer`` with these knobs (``backward_rows``: the hand-written
        backward's rows per chunk, default ``scan.BACKWARD_ROWS``)."""

        def layer(params: tuple, x: jax.Array) -> jax.Array:
            p = core.CellParams(*params)
            knobs = {"unroll": unroll, "impl": impl, "remat": remat, **rows}
            return recurrence.layer(p, x, zero_state(params, x), None, None, **knobs)[0]

        return layer

    return {
        "hoisted x@W_ih, autodiff (first core)": hoisted_autodiff,
        "two matmuls per step, autodiff": two_matmuls,
        "fused [x,h]@W per step, autodiff (impl=scan)": library("scan"),
        "fused, unroll 4, autodiff": library("scan", unroll=4),
        "fused, custom_vjp (impl=custom_vjp, kept)": library("custom_vjp"),
        "hoisted x@W_ih, custom_vjp (impl=hoisted)": library("hoisted"),
        "custom_vjp, whole-sequence weight gradients": library("custom_vjp", backward_rows=10**9),
        "custom_vjp, 1024-row chunks": library("custom_vjp", backward_rows=1024),
        "custom_vjp, unroll 2": library("custom_vjp", unroll=2),
        "custom_vjp, unroll 8": library("custom_vjp", unroll=8),
        "custom_vjp, remat 16": library("custom_vjp", remat=16),
        "custom_vjp, remat 32": library("custom_vjp", remat=32),
        "autodiff, remat 16": library("scan", remat=16),
    }


def measure(shape: str, repeats: int, clock: Callable[[], float], names: list[str]) -> list:
    import jax
    import jax.numpy as jnp
    import torch

    T, B, I, H = SHAPES[shape]
    torch.manual_seed(0)
    module = torch.nn.LSTM(I, H)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((T, B, I)).astype(np.float32)
    g_np = rng.standard_normal((T, B, H)).astype(np.float32)
    x_t, g_t = torch.from_numpy(x_np).requires_grad_(True), torch.from_numpy(g_np)
    params = tuple(jnp.asarray(v.detach().numpy()) for v in module.parameters())
    x, g = jnp.asarray(x_np), jnp.asarray(g_np)

    def torch_forward() -> None:
        with torch.inference_mode():
            module(x_t)

    def torch_train() -> None:
        module.zero_grad(set_to_none=True)
        x_t.grad = None
        (module(x_t)[0] * g_t).sum().backward()

    table = variants()
    rows = []
    for mode, torch_fn in (("forward", torch_forward), ("train", torch_train)):
        fns = {}
        for name in names:
            layer = table[name]
            if mode == "forward":
                fns[name] = jax.jit(layer)
            else:
                fns[name] = jax.jit(
                    jax.grad(lambda p, x, layer=layer: jnp.vdot(layer(p, x), g), argnums=(0, 1))
                )
            jax.block_until_ready(fns[name](params, x))
        torch_fn()
        samples: dict[str, list[float]] = {k: [] for k in [*names, "torch"]}
        for r in range(repeats):
            order = [*names, "torch"] if r % 2 == 0 else ["torch", *names]
            for k in order:
                start = clock()
                if k == "torch":
                    torch_fn()
                else:
                    jax.block_until_ready(fns[k](params, x))
                samples[k].append(clock() - start)
        t_torch = statistics.median(samples["torch"])
        for name in names:
            rows.append((shape, mode, name, statistics.median(samples[name]) / t_torch, t_torch))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="+", default=["medium", "long"], choices=list(SHAPES))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, help="pin to this many CPUs (before jax/torch load)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--only", nargs="+", help="variant names containing these words")
    args = p.parse_args(argv)
    if args.threads:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = list(variants())
    if args.only:
        names = [n for n in names if any(w in n for w in args.only)]
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"{'shape':<8}{'mode':<9}{'variant':<48}{'JAX/torch':>10}{'torch ms':>10}")
    for shape in args.shapes:
        for row in measure(shape, args.repeats, clock, names):
            print(f"{row[0]:<8}{row[1]:<9}{row[2]:<48}{row[3]:>10.2f}{row[4] * 1e3:>10.1f}")


if __name__ == "__main__":
    main()
