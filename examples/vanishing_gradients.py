"""Why LSTMs: how far back a loss on the last output reaches, vanilla RNN against LSTM.

    python examples/vanishing_gradients.py

For one random sequence of T = 100 steps (I = 8 features, hidden H = 32), the
loss is a fixed random projection of the last step's output, ``L = <w, h_T>``.
For each step t it plots ``||dL/dx_t||`` against the distance ``T - 1 - t``
from the output (log scale), for

- a vanilla tanh RNN, ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``
  (torch's ``nn.RNN`` cell and initialization), written here as a pure-JAX
  ``lax.scan`` and differentiated with ``jax.grad``;
- ``lstm_jax.LSTM`` of the same size with torch's initialization, with ``jax.grad``;
- the same LSTM with the forget gate's bias raised to ``--forget-bias`` (default
  3, so the forget gate starts near sigmoid(3) = 0.95: the usual remedy of
  initializing it open, which is what training learns when a task needs memory);
- ``torch.nn.LSTM`` with the same copied weights, differentiated with torch
  autograd: its curves lie on the JAX ones (the max relative difference
  over all t is printed).

The RNN's gradient is a product of T - 1 - t Jacobians ``diag(1 - h^2) W_hh``
and shrinks geometrically. The LSTM's also reaches back through the cell
state, ``c_t = f_t * c_{t-1} + ...``, whose Jacobian is the forget gate itself:
at torch's initialization f is about 0.5 and that path shrinks about as fast,
but with the forget gate open it keeps the gradient alive for the whole sequence.

Options (``--help``): ``--seq-len``, ``--hidden``, ``--input-size``,
``--forget-bias``, ``--seed``, ``--float64``, ``--plot PATH`` / ``--no-plot``.
Saves ``out/vanishing_gradients.png``.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
from _plotting import add_plot_arguments, pyplot, save

import lstm_jax
from lstm_jax.interop.transfer import to_numpy


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seq-len", type=int, default=100, help="T, steps in the sequence")
    p.add_argument("--hidden", type=int, default=32, help="H, hidden size of both models")
    p.add_argument("--input-size", type=int, default=8, help="I, features per step")
    p.add_argument(
        "--forget-bias",
        type=float,
        default=3.0,
        help="added to the forget gate's bias (bias_ih) for the open-gate LSTM curve",
    )
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed and the data's seed")
    p.add_argument("--float64", action="store_true", help="compute in float64 on both sides")
    add_plot_arguments(p, "vanishing_gradients.png", "the gradient norms")
    args = p.parse_args(argv)
    for name in ("seq_len", "hidden", "input_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# --- the vanilla RNN, pure JAX ----------------------------------------------------------


def rnn_params(hidden: int, input_size: int, seed: int, dtype: np.dtype) -> dict[str, np.ndarray]:
    """torch's ``nn.RNN`` initialization: every tensor uniform(-1/sqrt(H), 1/sqrt(H))."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden)
    shapes = {
        "weight_ih": (hidden, input_size),
        "weight_hh": (hidden, hidden),
        "bias_ih": (hidden,),
        "bias_hh": (hidden,),
    }
    return {k: rng.uniform(-bound, bound, s).astype(dtype) for k, s in shapes.items()}


def rnn(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """A tanh RNN over x (T, I) from h_0 = 0; returns the hidden states (T, H)."""

    def step(h: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        pre = params["weight_ih"] @ x_t + params["bias_ih"] + params["weight_hh"] @ h
        h = jnp.tanh(pre + params["bias_hh"])
        return h, h

    h0 = jnp.zeros(params["weight_hh"].shape[0], x.dtype)
    return jax.lax.scan(step, h0, x)[1]


# --- gradients with respect to every input step ------------------------------------------


def input_gradient_norms_jax(outputs_fn, x: np.ndarray, readout: np.ndarray) -> np.ndarray:
    """``||dL/dx_t||`` for t = 0..T-1, ``L = <readout, outputs_fn(x)[-1]>``; x (T, I)."""

    def loss(x: jax.Array) -> jax.Array:
        return jnp.dot(readout, outputs_fn(x)[-1])

    grad = jax.jit(jax.grad(loss))(jnp.asarray(x))
    return np.linalg.norm(np.asarray(grad, np.float64), axis=-1)


def input_gradient_norms_torch(
    lstm: torch.nn.LSTM, x: np.ndarray, readout: np.ndarray
) -> np.ndarray:
    """The same for ``torch.nn.LSTM`` with autograd; x (T, I) (unbatched)."""
    xt = torch.tensor(x, requires_grad=True)
    out, _ = lstm(xt)
    loss = torch.dot(torch.from_numpy(readout), out[-1])
    (grad,) = torch.autograd.grad(loss, xt)
    return np.linalg.norm(grad.detach().numpy().astype(np.float64), axis=-1)


def max_relative_difference(actual: np.ndarray, reference: np.ndarray) -> float:
    """``max_t |actual_t - reference_t| / |reference_t|``: per point, for curves spanning
    many orders of magnitude (a difference scaled by the largest value would hide the tail)."""
    return float(np.max(np.abs(actual - reference) / np.abs(reference)))


def open_forget_gate(state_dict: dict[str, torch.Tensor], bias: float) -> dict[str, torch.Tensor]:
    """A copy with ``bias`` added to the forget gate's rows [H, 2H) of ``bias_ih_l0``
    (gate order i, f, g, o)."""
    opened = {k: v.detach().clone() for k, v in state_dict.items()}
    hidden = opened["weight_hh_l0"].shape[1]
    opened["bias_ih_l0"][hidden : 2 * hidden] += bias
    return opened


def lstm_curves(
    state_dict: dict[str, torch.Tensor],
    hidden: int,
    x: np.ndarray,
    readout: np.ndarray,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """(JAX, torch) gradient norms of one LSTM given by its torch ``state_dict``."""
    torch_lstm = torch.nn.LSTM(x.shape[1], hidden)
    torch_lstm.load_state_dict(state_dict)
    torch_lstm = torch_lstm.to(torch.float64 if dtype == np.float64 else torch.float32)
    model = lstm_jax.LSTM(hidden, param_dtype=jnp.dtype(dtype))
    variables = lstm_jax.params_from_torch(state_dict)

    def outputs(x: jax.Array) -> jax.Array:
        return model.apply(variables, x)[0]

    return (
        input_gradient_norms_jax(outputs, x, readout),
        input_gradient_norms_torch(torch_lstm, x, readout),
    )


def save_plot(path: Path, curves: dict[str, np.ndarray], seq_len: int, hidden: int) -> None:
    fig, ax = pyplot().subplots(figsize=(8, 5))
    styles = {
        "jax": {"linewidth": 2.5, "alpha": 0.6},
        "torch": {"linestyle": "--", "color": "black", "linewidth": 1},
    }
    for label, norms in curves.items():
        distance = np.arange(len(norms))[::-1]  # x_0 is T-1 steps from the output
        style = styles["torch"] if "torch autograd" in label else styles["jax"]
        ax.plot(distance, norms, label=label, **style)
    ax.set_yscale("log")
    ax.set_xlabel("distance from the output, T - 1 - t (steps)")
    ax.set_ylabel("||dL/dx_t||")
    ax.set_title(f"gradient of a loss on the last output, T = {seq_len}, H = {hidden}")
    ax.legend(fontsize=8)
    save(fig, path)


def shrink_per_step(norms: np.ndarray) -> float:
    """The geometric-mean factor by which ``||dL/dx_t||`` (t = 0..T-1) changes per step
    away from the output: ``(norm_0 / norm_{T-1}) ** (1 / (T - 1))``."""
    if len(norms) < 2:
        return 1.0
    return float((norms[0] / norms[-1]) ** (1.0 / (len(norms) - 1)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dtype = np.dtype(np.float64 if args.float64 else np.float32)
    T, H, I = args.seq_len, args.hidden, args.input_size
    data = np.random.default_rng(args.seed)
    x = data.standard_normal((T, I)).astype(dtype)
    readout = (data.standard_normal(H) / np.sqrt(H)).astype(dtype)

    torch.manual_seed(args.seed)
    lstm_state = torch.nn.LSTM(I, H).state_dict()
    x64 = jax.enable_x64() if args.float64 else contextlib.nullcontext()
    with x64, jax.default_matmul_precision("highest"):
        rnn_w = {k: jnp.asarray(v) for k, v in rnn_params(H, I, args.seed, dtype).items()}
        curves = {
            "tanh RNN (jax.grad)": input_gradient_norms_jax(lambda s: rnn(rnn_w, s), x, readout)
        }
        differences = {}
        for name, state in (
            ("LSTM, torch init", lstm_state),
            (
                f"LSTM, forget bias +{args.forget_bias:g}",
                open_forget_gate(lstm_state, args.forget_bias),
            ),
        ):
            jax_norms, torch_norms = lstm_curves(
                {k: torch.from_numpy(to_numpy(v).astype(dtype)) for k, v in state.items()},
                H,
                x,
                readout,
                dtype,
            )
            curves[f"{name} (jax.grad)"] = jax_norms
            curves[f"{name} (torch autograd)"] = torch_norms
            differences[name] = max_relative_difference(jax_norms, torch_norms)

    print(f"vanishing_gradients: T={T}, I={I}, H={H}, loss <w, h_T>, {dtype.name}")
    columns = {f"[{k}]": label for k, label in enumerate(curves, start=1)}
    for column, label in columns.items():
        print(f"  {column} {label}")
    print("||dL/dx_t|| by distance T - 1 - t from the output:")
    print(f"{'distance':>9}" + "".join(f" {column:>10}" for column in columns))
    for distance in sorted({0, 1, 5, 10, 25, 50, 75, T - 1} & set(range(T))):
        t = T - 1 - distance
        print(f"{distance:>9}" + "".join(f" {norms[t]:>10.3e}" for norms in curves.values()))
    print("\nshrink factor per step back (geometric mean over the sequence):")
    for label, norms in curves.items():
        if "jax.grad" in label:
            print(f"  {label:<34} {shrink_per_step(norms):.3f}")
    print("\nLSTM curves, JAX against torch autograd (same weights):")
    for name, diff in differences.items():
        print(f"  {name:<24} max relative difference {diff:.2e}")

    if not args.no_plot:
        save_plot(args.plot, curves, T, H)
        print(f"saved {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
