"""bfloat16 compute with float32 master parameters, against float32, on two tasks.

    python examples/mixed_precision.py

``lstm_jax.fit(..., compute_dtype=jnp.bfloat16)`` runs each forward and backward
pass in bfloat16 (parameters and inputs cast down), computes the loss in
float32, and lets the optimizer update float32 master parameters. Each task
trains twice from the same initial weights and data order, float32 and
bfloat16 compute:

- the lecture's: ``LSTMModeler(1, 10, 1)`` on three temperatures, SGD lr 0.001,
  batch 1, 100 epochs, shuffled;
- the synthetic one of the parity tests: T=20, I=3, H=16, 2 layers, N=40 in
  batches of 8, Adam lr 0.003, 60 epochs (300 steps).

It prints both runs' losses at a few epochs, the final losses and their ratio,
the master parameters' dtype, and saves both loss curves per task in
``out/mixed_precision.png``. On a CPU bfloat16 is no faster (XLA:CPU computes
bfloat16 elementwise math in float32); the point here is the numerics. On
GPUs and TPUs bfloat16 matmuls are what gives the speed.

Options (``--help``): ``--lecture-epochs``, ``--synthetic-epochs``, ``--seed``,
``--plot PATH`` / ``--no-plot``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _plotting import add_plot_arguments, pyplot, save
from _tasks import LECTURE_MODEL, LECTURE_X, LECTURE_Y, SYNTHETIC_MODEL, synthetic_data

import lstm_jax


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lecture-epochs", type=int, default=100, help="epochs, lecture task")
    p.add_argument("--synthetic-epochs", type=int, default=60, help="epochs, synthetic task")
    p.add_argument("--seed", type=int, default=0, help="init and shuffle seed")
    add_plot_arguments(p, "mixed_precision.png", "the loss curves")
    return p.parse_args(argv)


@dataclass
class Comparison:
    """One task trained in float32 and with bfloat16 compute from the same start."""

    name: str
    f32_losses: np.ndarray
    bf16_losses: np.ndarray
    master_dtypes: set[str]

    @property
    def ratio(self) -> float:
        return float(self.bf16_losses[-1] / self.f32_losses[-1])


def compare(
    name: str,
    model_options: dict[str, Any],
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    seed: int,
    **fit_options: Any,
) -> Comparison:
    """Train ``LSTMModeler(**model_options)`` in float32 and with bfloat16 compute."""
    model = lstm_jax.LSTMModeler(**model_options)
    variables = model.init(jax.random.key(seed), xs[0])
    options = {"shuffle_seed": seed, **fit_options}
    _, f32 = lstm_jax.fit(model, variables, xs, ys, **options)
    trained, bf16 = lstm_jax.fit(model, variables, xs, ys, compute_dtype=jnp.bfloat16, **options)
    dtypes = {str(leaf.dtype) for leaf in jax.tree.leaves(trained)}
    return Comparison(name, f32, bf16, dtypes)


def run_tasks(lecture_epochs: int, synthetic_epochs: int, seed: int) -> list[Comparison]:
    xs, ys = synthetic_data(40)
    with jax.default_matmul_precision("highest"):  # float32's reference at full precision
        return [
            compare(
                "lecture (SGD, batch 1)",
                LECTURE_MODEL,
                LECTURE_X,
                LECTURE_Y,
                seed=seed,
                optimizer=lstm_jax.SGD(0.001),
                epochs=lecture_epochs,
            ),
            compare(
                "synthetic (Adam, batch 8)",
                SYNTHETIC_MODEL,
                xs,
                ys,
                seed=seed,
                optimizer=lstm_jax.Adam(0.003),
                epochs=synthetic_epochs,
                batch_size=8,
            ),
        ]


def save_plot(path: Path, comparisons: list[Comparison]) -> None:
    fig, axes = pyplot().subplots(1, len(comparisons), figsize=(11, 4))
    for ax, c in zip(np.atleast_1d(axes), comparisons, strict=True):
        epochs = np.arange(1, len(c.f32_losses) + 1)
        ax.plot(epochs, c.f32_losses, label="float32", linewidth=2.5, alpha=0.6)
        ax.plot(epochs, c.bf16_losses, label="bfloat16 compute, float32 master", linestyle="--")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (sum of batch losses)")
        ax.set_title(c.name)
        ax.legend()
    save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    comparisons = run_tasks(args.lecture_epochs, args.synthetic_epochs, args.seed)
    for c in comparisons:
        epochs = len(c.f32_losses)
        print(f"\n{c.name}, {epochs} epochs")
        print(f"{'epoch':>6} {'float32':>12} {'bfloat16':>12}")
        for e in sorted({1, epochs // 4, epochs // 2, epochs} - {0}):
            print(f"{e:>6} {c.f32_losses[e - 1]:>12.6g} {c.bf16_losses[e - 1]:>12.6g}")
        print(
            f"final loss: float32 {c.f32_losses[-1]:.6g}, bfloat16 {c.bf16_losses[-1]:.6g} "
            f"(ratio {c.ratio:.3f}); master parameters: {', '.join(sorted(c.master_dtypes))}"
        )
    if not args.no_plot:
        save_plot(args.plot, comparisons)
        print(f"saved {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
