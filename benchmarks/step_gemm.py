"""The per-step product of an LSTM step against the machine's GEMM rate, both libraries.

    python benchmarks/step_gemm.py                 # the default shapes (2-core CPU: ~1 minute)
    python benchmarks/step_gemm.py --smoke --out /tmp/g.json

Each step of a layer multiplies ``[x_t, h]`` (B, K = I + H_out) by ``w_cat`` (K, 4H). This
times that product the way a recurrence runs it, back to back with each product
depending on the one before (a ``lax.scan`` of N products in one XLA program, a Python
loop of N ``torch.mm`` calls), in the row layout ``(B, K) @ (K, 4H)`` that
:func:`lstm_jax.core.cell.preactivations` uses and in the transposed layout
``W (4H, K) @ [x; h]^T (K, B)``, and the same product inside a whole step (the scan of
:func:`lstm_jax.core.cell.lstm_cell`, and the transposed product with its result
transposed back for the gates). The limit: an n x n GEMM (n = 2048) in each library.
GFLOP/s = 2*B*K*4H per product. Output: ``benchmarks/step_gemm_<cpu>_<n>cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jit_benchmark as jb
import numpy as np
from workloads import cpu_slug

ROOT = Path(__file__).resolve().parent.parent
# name: (B, I, H): the step of medium, long, the word LM's layers, streaming.
SHAPES = {
    "medium": (64, 32, 256),
    "long": (16, 32, 128),
    "lm": (20, 256, 256),
    "streaming": (1, 32, 256),
}
CHAIN = 64  # dependent products per program / per sample


def xla_chain(B: int, K: int, N: int, transposed: bool) -> Any:
    """A jitted scan of CHAIN dependent products; returns (fn, args)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((N, K)) / np.sqrt(K), jnp.float32)  # (4H, K)
    a = jnp.asarray(rng.standard_normal((B, K)), jnp.float32)

    def rows(a: Any, w: Any) -> Any:
        def body(a: Any, _: Any) -> tuple[Any, None]:
            return jnp.tanh(a @ w.T)[:, :K], None  # (B, K) @ (K, 4H)

        return jax.lax.scan(body, a, None, length=CHAIN)[0]

    def cols(a_t: Any, w: Any) -> Any:
        def body(a_t: Any, _: Any) -> tuple[Any, None]:
            return jnp.tanh(w @ a_t)[:K], None  # (4H, K) @ (K, B)

        return jax.lax.scan(body, a_t, None, length=CHAIN)[0]

    fn = jax.jit(cols if transposed else rows)
    args = (a.T if transposed else a, w)
    jax.block_until_ready(fn(*args))
    return fn, args


def xla_cell_chain(B: int, I: int, H: int, transposed: bool) -> Any:
    """CHAIN whole LSTM steps: the cell as it runs, or its product transposed."""
    import jax
    import jax.numpy as jnp

    from lstm_jax.core.cell import gate_update, lstm_cell, step_weights
    from lstm_jax.core.state import CellParams, LSTMState

    rng = np.random.default_rng(0)
    p = CellParams(
        *(jnp.asarray(rng.uniform(-0.06, 0.06, s), jnp.float32) for s in
          [(4 * H, I), (4 * H, H), (4 * H,), (4 * H,)])
    )  # fmt: skip
    x = jnp.asarray(rng.standard_normal((CHAIN, B, I)), jnp.float32)
    zeros = jnp.zeros((B, H), jnp.float32)

    def run(p: CellParams, x: Any) -> Any:
        w = step_weights(p)
        w_t = w.w_cat.T  # (4H, K)

        def body(state: LSTMState, x_t: Any) -> tuple[LSTMState, None]:
            if not transposed:
                return lstm_cell(w, state, x_t)[0], None
            z = (w_t @ jnp.concatenate([x_t, state.h], axis=-1).T).T + w.bias
            return gate_update(w, state, z)[0], None

        return jax.lax.scan(body, LSTMState(zeros, zeros), x)[0].h

    fn = jax.jit(run)
    jax.block_until_ready(fn(p, x))
    return fn, (p, x)


def torch_chain(B: int, K: int, N: int, transposed: bool) -> Any:
    import torch

    g = torch.Generator().manual_seed(0)
    w = torch.randn(N, K, generator=g) / K**0.5
    w_t = w.T.contiguous()
    a = torch.randn(B, K, generator=g)
    a_t = a.T.contiguous()

    def rows() -> Any:
        x = a
        for _ in range(CHAIN):
            x = torch.tanh(x @ w_t)[:, :K]
        return x

    def cols() -> Any:
        x = a_t
        for _ in range(CHAIN):
            x = torch.tanh(w @ x)[:K]
        return x

    return cols if transposed else rows


def measure(settings: jb.Settings, shapes: dict[str, tuple[int, int, int]]) -> dict[str, Any]:
    import jax

    rows = {}
    for name, (B, I, H) in shapes.items():
        K, N = I + H, 4 * H
        runners = {}
        for transposed, tag in ((False, "rows"), (True, "cols")):
            fn, args = xla_chain(B, K, N, transposed)
            runners[f"xla_{tag}"] = jb.Runner(
                lambda fn=fn, args=args: fn(*args), jax.block_until_ready
            )
            runners[f"torch_{tag}"] = jb.Runner(torch_chain(B, K, N, transposed), lambda _: None)
            fn, args = xla_cell_chain(B, I, H, transposed)
            runners[f"xla_cell_{tag}"] = jb.Runner(
                lambda fn=fn, args=args: fn(*args), jax.block_until_ready
            )
        times = jb.interleaved(runners, settings.repeats, settings.min_sample)
        flops = 2 * B * K * N
        row: dict[str, Any] = {"B": B, "K": K, "N": N, "flops_per_product": flops}
        for key, t in times.items():
            per_product = t["median_s"] / CHAIN
            row[f"{key}_us"] = per_product * 1e6
            row[f"{key}_gflops"] = flops / per_product / 1e9
        rows[name] = row
        print(
            f"{name:<10} (B {B}, K {K}, 4H {N}) GFLOP/s: "
            + ", ".join(f"{k} {row[f'{k}_gflops']:.0f}" for k in times),
            flush=True,
        )
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-sample", type=float, default=0.05)
    p.add_argument("--threads", type=int, help="pin the process to this many CPUs")
    p.add_argument("--smoke", action="store_true", help="tiny shapes, 2 repeats")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    jb.pin_threads(args.threads)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = jb.Settings(
        shapes=[], repeats=2 if args.smoke else args.repeats,
        min_sample=0.0 if args.smoke else args.min_sample, threads=args.threads, smoke=args.smoke,
    )  # fmt: skip
    shapes = {"tiny": (2, 3, 4)} if args.smoke else SHAPES
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {
        "machine": jb.machine_info(settings),
        "versions": jb.versions(),
        "command": f"python benchmarks/step_gemm.py {argv_text}".strip(),
        "chain": CHAIN,
    }
    started = time.perf_counter()
    with jb.pinned_precision(False):
        results["gemm"] = jb.gemm_rate(settings)
        results["steps"] = measure(settings, shapes)
    limit = results["gemm"]["limit_gflops"]
    for row in results["steps"].values():
        for key in [k for k in row if k.endswith("_gflops")]:
            row[key.replace("_gflops", "_share_of_limit")] = row[key] / limit
    results["wall_s"] = time.perf_counter() - started
    slug = cpu_slug(results["machine"]["cpu"])
    cpus = results["machine"]["cpus_usable"]
    out = args.out or ROOT / "benchmarks" / f"step_gemm_{slug}_{cpus}cpu.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    g = results["gemm"]
    print(
        f"large GEMM (n {g['n']}): XLA {g['jax_gflops']:.0f}, torch {g['torch_gflops']:.0f} GFLOP/s"
    )
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
