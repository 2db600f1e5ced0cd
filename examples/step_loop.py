"""A step loop of two LSTM cells with autoregressive future steps, ported with the loop
as one ``nn.scan``: it matches torch at T = 1,000 and compiles in seconds, flat in T.

The torch model is the classic "sine wave" predictor (pytorch/examples
``time_sequence_prediction``): two ``nn.LSTMCell`` and a ``Linear``, stepped by a Python
loop over the input, then ``future`` extra steps that feed each prediction back in.
The Flax port keeps torch's attribute names (``lstm1``, ``lstm2``, ``linear``) and
writes each loop as ``nn.scan`` over a method of the module
(``variable_broadcast="params"``: one set of parameters, no stacked time axis), so
``params_from_torch``, ``compare_with_torch`` and the checkpoints see torch's keys.
A Python loop over the cells would compile T copies of the step: its gradient's
compile time grows with T (2.6 s at T = 10, 37.6 s at T = 40 on the issue's machine).

    python examples/step_loop.py                       # T = 1000, 20 future steps
    python examples/step_loop.py --steps 100 --future 5 --hidden 8
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch

import lstm_jax
from lstm_jax.core.state import LSTMState


@dataclass(frozen=True)
class Config:
    steps: int = 1000  # T, the input's time steps
    future: int = 20  # autoregressive steps after the input
    hidden: int = 51  # the cells' hidden size (the original's 51)
    batch: int = 3  # sequences
    compile_steps: tuple[int, ...] = (10, 100, 1000)  # T's for the compile-time table


class TorchSequence(torch.nn.Module):
    """The torch original: a Python loop over two LSTM cells, then future steps."""

    def __init__(self, hidden: int = 51) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm1 = torch.nn.LSTMCell(1, hidden)
        self.lstm2 = torch.nn.LSTMCell(hidden, hidden)
        self.linear = torch.nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, future: int = 0) -> torch.Tensor:
        """x (B, T) -> (B, T + future) predictions."""
        zeros = torch.zeros(x.size(0), self.hidden, dtype=x.dtype)
        h_t, c_t, h_t2, c_t2 = zeros, zeros, zeros, zeros
        outputs = []
        for x_t in x.split(1, dim=1):
            h_t, c_t = self.lstm1(x_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs.append(output)
        for _ in range(future):
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs.append(output)
        return torch.cat(outputs, dim=1)


class Sequence(nn.Module):
    """The port: the same cells and head, each loop one ``nn.scan`` over :meth:`step`."""

    hidden: int = 51
    param_dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.lstm1 = lstm_jax.LSTMCell(self.hidden, param_dtype=self.param_dtype)
        self.lstm2 = lstm_jax.LSTMCell(self.hidden, param_dtype=self.param_dtype)
        self.linear = nn.Dense(1, param_dtype=self.param_dtype)

    def step(
        self, carry: tuple[LSTMState, LSTMState], x_t: jax.Array
    ) -> tuple[tuple[LSTMState, LSTMState], jax.Array]:
        """One time step: x_t (B, 1) -> the new states and the prediction (B, 1)."""
        first, second = carry
        first = self.lstm1(x_t, first)
        second = self.lstm2(first.h, second)
        return (first, second), self.linear(second.h)

    def feedback(
        self, carry: tuple[tuple[LSTMState, LSTMState], jax.Array], _: None
    ) -> tuple[tuple[tuple[LSTMState, LSTMState], jax.Array], jax.Array]:
        """One future step: the last prediction is the next input."""
        states, output = carry
        states, output = self.step(states, output)
        return (states, output), output

    def __call__(self, x: jax.Array, future: int = 0) -> jax.Array:
        """x (B, T) -> (B, T + future) predictions (``future`` a Python int, as torch's)."""
        zeros = jnp.zeros((x.shape[0], self.hidden), jnp.result_type(x, self.param_dtype))
        states = (LSTMState(zeros, zeros), LSTMState(zeros, zeros))
        scan = nn.scan(
            Sequence.step,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )
        states, outputs = scan(self, states, x[:, :, None])  # (B, T, 1)
        if future:
            ahead = nn.scan(
                Sequence.feedback,
                variable_broadcast="params",
                split_rngs={"params": False},
                length=future,
                out_axes=1,
            )
            _, more = ahead(self, (states, outputs[:, -1]), None)
            outputs = jnp.concatenate([outputs, more], axis=1)
        return outputs[..., 0]


def sine_waves(batch: int, steps: int, seed: int = 0) -> np.ndarray:
    """(batch, steps) sine waves of period 20 steps, shifted at random (the original's data)."""
    shifts = np.random.default_rng(seed).integers(-80, 80, size=(batch, 1))
    return np.sin((np.arange(steps)[None, :] + shifts) / 20.0 * 2 * np.pi / 2)


def gradient_compile_seconds(
    model: Sequence, variables: dict, x: np.ndarray, future: int
) -> tuple[float, float]:
    """(wall, CPU) seconds to lower and compile ``jax.grad`` of the mean squared
    prediction (CPU time: this process's, less noisy on a shared machine)."""

    def loss(params: dict, x: jax.Array) -> jax.Array:
        return jnp.mean(jnp.square(model.apply({"params": params}, x, future)))

    wall, cpu = time.perf_counter(), time.process_time()
    jax.jit(jax.grad(loss)).lower(variables["params"], x).compile()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(config: Config) -> dict[str, float]:
    """Port, compare at T = ``config.steps`` (float64) and time the gradient's compile."""
    jax.config.update("jax_enable_x64", True)
    torch.manual_seed(0)
    torch_model = TorchSequence(config.hidden).double()
    x = sine_waves(config.batch, config.steps)
    model = Sequence(config.hidden, param_dtype=jnp.float64)
    variables = lstm_jax.params_from_torch(torch_model.state_dict(), model, example=(x,))

    start = time.perf_counter()
    report = lstm_jax.compare_with_torch(torch_model, model, variables, x, future=config.future)
    seconds = time.perf_counter() - start
    print(report)
    print(f"compare_with_torch at T = {config.steps} + {config.future} future: {seconds:.1f} s")
    results = {"forward_scaled": report.forward.scaled, "ok": float(report.ok)}
    for steps in config.compile_steps:
        wall, cpu = gradient_compile_seconds(
            model, variables, sine_waves(config.batch, steps), config.future
        )
        results[f"T={steps}"] = cpu
        print(f"gradient compile at T = {steps:>5}: {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    return results


def parse(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=Config.steps)
    parser.add_argument("--future", type=int, default=Config.future)
    parser.add_argument("--hidden", type=int, default=Config.hidden)
    parser.add_argument("--compile-steps", type=int, nargs="*", default=list(Config.compile_steps))
    args = parser.parse_args(argv)
    return Config(args.steps, args.future, args.hidden, 3, tuple(args.compile_steps))


if __name__ == "__main__":
    main(parse())
