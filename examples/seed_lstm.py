"""The lecture's notebook in both backends: same initial weights, same data order.

    python examples/seed_lstm.py

trains the lecture's ``LSTMModeler`` (hidden 10, SGD lr 0.001, 100 epochs,
batch 1, shuffled) on three temperatures with ``lstm_torch.fit`` and, from a
copy of the same initial weights, with ``lstm_jax.fit`` (one compiled program);
prints both per-epoch losses every 10 epochs, each model's prediction for 27
(y_true 28), the largest loss and parameter differences and the wall times
(torch loop, twice; JAX's first call, "(compiled)" or "(loaded from the
compilation cache)" as JAX reports it; JAX's second call, already compiled),
and saves the two loss curves overlaid in ``out/seed_lstm_losses.png`` (a folder
git ignores; ``--plot PATH`` to choose).

Options (``--help``): ``--hidden``, ``--lr``, ``--epochs``, ``--batch-size``,
``--seed`` (torch's init and the shuffling), ``--optimizer sgd|adam|adamw``
(``--momentum``, ``--weight-decay``, ``--clip-norm``), ``--float64``,
``--plot PATH`` / ``--no-plot``, ``--torch-threads``.

JAX's persistent compilation cache is on (``--cache-dir``, by default
``~/.cache/lstm_jax/jax_cache``; ``--no-compile-cache`` turns it off), with no
minimum compile time or entry size, so even this small program is cached and a
second process loads it instead of compiling: the "JAX first call" time drops.
Which happened is read from JAX's monitoring events (``jax.monitoring``): one per
program compiled or fetched, one per persistent-cache hit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
from _plotting import add_plot_arguments, pyplot, save

import lstm_jax
import lstm_torch
from lstm_jax.common.lecture import LECTURE_TEST_X, LECTURE_TEST_Y, LECTURE_X, LECTURE_Y
from lstm_jax.common.optim import SGD, Adam, AdamW
from lstm_jax.common.tolerances import scaled_error
from lstm_jax.interop.precision import pinned_precision

# The lecture's data: temperatures and the next day's; the test asks 27 -> 28.
TRAIN_X, TRAIN_Y, TEST_X, TEST_Y = LECTURE_X, LECTURE_Y, LECTURE_TEST_X, LECTURE_TEST_Y
DEFAULT_CACHE = Path("~/.cache/lstm_jax/jax_cache")
# JAX's monitoring events: one per program compiled or fetched from the persistent
# cache (jax._src.dispatch.BACKEND_COMPILE_EVENT), and one per persistent-cache hit.
PROGRAM_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--hidden", type=int, default=10, help="hidden_layer_size (lecture: 10)")
    p.add_argument("--lr", type=float, default=0.001, help="learning rate (lecture: 0.001)")
    p.add_argument("--epochs", type=int, default=100, help="epochs (lecture: 100)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size (lecture: 1)")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed and shuffle seed")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    p.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="weight decay (None: 0, AdamW: 0.01 as torch)",
    )
    p.add_argument("--clip-norm", type=float, default=None, help="clip the gradients' norm")
    p.add_argument("--float64", action="store_true", help="train in float64 on both sides")
    add_plot_arguments(p, "seed_lstm_losses.png", "the loss curves")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch CPU threads (1: the lecture's model is tiny, and more threads "
        "only add synchronisation)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="JAX persistent compilation cache directory",
    )
    p.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache",
    )
    return p.parse_args(argv)


def enable_compilation_cache(directory: Path) -> Path:
    """Turn on JAX's persistent compilation cache for every program, however small."""
    directory = directory.expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.fspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return directory


@contextlib.contextmanager
def compilations() -> Iterator[Counter[str]]:
    """Count JAX's compile events while the block runs (see :func:`how_compiled`)."""
    counts: Counter[str] = Counter()

    def on_event(event: str, **_: object) -> None:
        counts[event] += 1

    def on_duration(event: str, duration_secs: float, **_: object) -> None:
        counts[event] += 1

    jax.monitoring.register_event_listener(on_event)
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_listener(on_event)
        jax.monitoring.unregister_event_duration_listener(on_duration)


def how_compiled(counts: Counter[str]) -> str:
    """What JAX did for the programs a block ran, as the events counted it."""
    programs, hits = counts[PROGRAM_EVENT], counts[CACHE_HIT_EVENT]
    compiled = programs - hits
    if programs == 0:
        return "already compiled in this process"
    if hits == 0:
        return "compiled"
    if compiled == 0:
        return "loaded from the compilation cache"
    return f"compiled {compiled} program(s), loaded {hits} from the compilation cache"


def make_optimizer(args: argparse.Namespace) -> SGD | Adam | AdamW:
    """The backend-neutral spec: one value configures torch.optim and Optax."""
    decay = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
    if args.optimizer == "sgd":
        return SGD(args.lr, momentum=args.momentum, clip_norm=args.clip_norm, **decay)
    if args.optimizer == "adam":
        return Adam(args.lr, clip_norm=args.clip_norm, **decay)
    return AdamW(args.lr, clip_norm=args.clip_norm, **decay)


def save_plot(path: Path, torch_losses: np.ndarray, jax_losses: np.ndarray, title: str) -> None:
    epochs = np.arange(1, len(torch_losses) + 1)
    fig, ax = pyplot().subplots(figsize=(7, 4))
    ax.plot(epochs, torch_losses, label="lstm_torch.fit", linewidth=2.5, alpha=0.6)
    ax.plot(epochs, jax_losses, label="lstm_jax.fit", linestyle="--", color="black")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss (sum of batch losses)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with pinned_precision():  # full float32 on both sides, as in the parity tests
        return run(args)


def run(args: argparse.Namespace) -> int:
    cache = None if args.no_compile_cache else enable_compilation_cache(args.cache_dir)
    torch.set_num_threads(args.torch_threads)
    optimizer = make_optimizer(args)
    dtype = np.float64 if args.float64 else np.float32

    torch.manual_seed(args.seed)
    torch_model = lstm_torch.LSTMModeler(1, args.hidden, 1)
    if args.float64:
        torch_model = torch_model.double()
    initial = {k: v.detach().clone() for k, v in torch_model.state_dict().items()}
    fit_options = {
        "optimizer": optimizer,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "shuffle_seed": args.seed,
    }
    print(
        f"seed_lstm: LSTMModeler(1, {args.hidden}, 1), {optimizer}, {args.epochs} epochs, "
        f"batch {args.batch_size}, shuffle seed {args.seed}, {np.dtype(dtype).name}"
    )
    print(f"JAX compilation cache: {cache or 'off'}")

    start = time.perf_counter()
    torch_losses = lstm_torch.fit(torch_model, TRAIN_X, TRAIN_Y, progress=True, **fit_options)
    torch_time = time.perf_counter() - start
    # A second torch run from the same weights: torch warms up lazily too (oneDNN).
    rerun = lstm_torch.LSTMModeler(1, args.hidden, 1).to(initial["linear.weight"].dtype)
    rerun.load_state_dict(initial)
    start = time.perf_counter()
    lstm_torch.fit(rerun, TRAIN_X, TRAIN_Y, progress=True, **fit_options)
    torch_again = time.perf_counter() - start

    with jax.enable_x64(args.float64):
        jax_model = lstm_jax.LSTMModeler(1, args.hidden, 1, param_dtype=jnp.dtype(dtype))
        variables = lstm_jax.params_from_torch(initial)
        with compilations() as first_events:
            start = time.perf_counter()
            trained, jax_losses = lstm_jax.fit(
                jax_model, variables, TRAIN_X, TRAIN_Y, **fit_options
            )
            first_time = time.perf_counter() - start
        with compilations() as second_events:
            start = time.perf_counter()
            again, _ = lstm_jax.fit(jax_model, variables, TRAIN_X, TRAIN_Y, **fit_options)
            jax.block_until_ready(again)
            second_time = time.perf_counter() - start
        test = np.full((1, 1, 1), TEST_X, dtype)  # the lecture's x.view(-1, 1, 1)
        jax_prediction = float(jax.jit(jax_model.apply)(trained, test)[0][0, 0])

    with torch.no_grad():
        torch_model.hidden_cell = torch_model.zero_hidden_cell(1)
        torch_prediction = float(torch_model(torch.from_numpy(test))[0, 0])

    print(f"\n{'epoch':>6} {'torch loss':>14} {'jax loss':>14}")
    for epoch in range(1, args.epochs + 1):
        if epoch == 1 or epoch % 10 == 0 or epoch == args.epochs:
            print(f"{epoch:>6} {torch_losses[epoch - 1]:>14.7g} {jax_losses[epoch - 1]:>14.7g}")

    print(
        f"\ny_true: {TEST_Y:g}, y_hat torch: {torch_prediction:.4f}, "
        f"y_hat jax: {jax_prediction:.4f}"
    )
    torch_params = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    jax_params = lstm_jax.params_to_torch(trained)
    param_abs = max(float(np.abs(jax_params[k] - v).max()) for k, v in torch_params.items())
    param_rel = max(scaled_error(jax_params[k], v) for k, v in torch_params.items())
    print(
        f"largest loss difference:      {np.abs(jax_losses - torch_losses).max():.3g} "
        f"(scaled {scaled_error(jax_losses, torch_losses):.3g})"
    )
    print(f"largest parameter difference: {param_abs:.3g} (scaled {param_rel:.3g})")
    print(
        f"\nwall time, torch loop:  first {torch_time:.3f} s, second {torch_again:.3f} s "
        f"({args.torch_threads} thread(s))"
    )
    print(
        f"wall time, JAX fit:     first {first_time:.3f} s ({how_compiled(first_events)}), "
        f"second {second_time:.4f} s ({how_compiled(second_events)})"
    )

    if not args.no_plot:
        save_plot(
            args.plot,
            torch_losses,
            jax_losses,
            f"lecture LSTM: {type(optimizer).__name__}, {args.epochs} epochs",
        )
        print(f"saved {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
