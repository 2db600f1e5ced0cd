"""Variable-length batches on both backends: torch's packed path against ``seq_lengths``.

The reference is ``torch.nn.LSTM`` itself, run as torch users run padded batches:
``pack_padded_sequence(enforce_sorted=False)`` -> ``nn.LSTM`` -> ``pad_packed_sequence
(total_length=T)``. The JAX side is ``lstm_jax.LSTM(...)(x, seq_lengths=lengths)`` with
the torch weights copied in. Both differentiate the same scalar (``helpers``' random
projection of output, h_n and c_n). Without lengths it is the plain unpacked call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import helpers
import jax
import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstm_jax
from lstm_jax.common.tolerances import FORWARD, GRADIENT


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded: on these tiny shapes its thread pool only spins
    (measured 10-100x the CPU time with 2 threads on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class PackedCase:
    """A ``helpers.Case`` (3-D input) plus per-row lengths and the JAX speed knobs."""

    case: helpers.Case
    lengths: tuple[int, ...] | None = None  # one per batch row, any order
    impl: str = "auto"
    remat: int = 0

    def __post_init__(self) -> None:
        if self.case.x_ndim != 3:
            raise ValueError("torch packs only batched (3-D) input")
        if self.lengths is not None and len(self.lengths) != self.case.batch_size:
            raise ValueError(f"{len(self.lengths)} lengths for batch {self.case.batch_size}")

    @property
    def id(self) -> str:
        parts = [self.case.id, f"len{'-'.join(map(str, self.lengths or ()))}"]
        if self.impl != "auto" or self.remat:
            parts.append(f"{self.impl}-remat{self.remat}")
        return "-".join(parts)

    def jax_lstm(self) -> lstm_jax.LSTM:
        case = self.case
        knobs = {"impl": self.impl} if self.impl != "auto" else {}
        knobs |= {"remat": self.remat} if self.remat else {}
        return lstm_jax.LSTM(case.hidden_size, **case.options, **knobs)


def torch_packed(
    module: torch.nn.LSTM,
    x: torch.Tensor,
    lengths: tuple[int, ...] | None,
    state: tuple[torch.Tensor, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """``{"output", "h_n", "c_n"}`` of torch's packed LSTM (plain call without lengths)."""
    if lengths is None:
        out, (h_n, c_n) = module(x, state)
    else:
        T = x.shape[1] if module.batch_first else x.shape[0]
        packed = pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False
        )
        packed_out, (h_n, c_n) = module(packed, state)
        out, _ = pad_packed_sequence(packed_out, batch_first=module.batch_first, total_length=T)
    return {"output": out, "h_n": h_n, "c_n": c_n}


# XLA's LLVM back end at optimisation level 0: the same HLO program (the same operations
# in the same order), compiled in about 60% of the CPU time (measured 0.56 s against
# 0.97 s for a 2-layer bidirectional forward+backward). For the property tests, each of
# whose examples compiles a new program; every other test compiles with the defaults.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def run_both(
    pc: PackedCase,
    inputs: helpers.Arrays | None = None,
    *,
    compiler_options: dict | None = None,
) -> helpers.ParityRun:
    """``pc`` on both backends: outputs and gradients (of parameters, x, h_0, c_0), by
    :func:`helpers.parity_run` with torch's packed forward (:func:`torch_packed`)."""
    case = pc.case
    inputs = helpers.random_inputs(case) if inputs is None else inputs
    model = pc.jax_lstm()
    lengths = None if pc.lengths is None else np.asarray(pc.lengths)

    def torch_forward(module: torch.nn.Module, t: dict) -> dict[str, torch.Tensor]:
        state = (t["h_0"], t["c_0"]) if "h_0" in t else None
        return torch_packed(module, t["x"], pc.lengths, state)

    def jax_forward(variables: dict, inputs: dict) -> dict[str, jax.Array]:
        state = (inputs["h_0"], inputs["c_0"]) if "h_0" in inputs else None
        out, (h_n, c_n) = model.apply(variables, inputs["x"], state, seq_lengths=lengths)
        return {"output": out, "h_n": h_n, "c_n": c_n}

    with one_torch_thread():
        module = helpers.make_torch_lstm(case)
        return helpers.parity_run(
            case, module, inputs, torch_forward, jax_forward, compiler_options=compiler_options
        )


def assert_parity(pc: PackedCase, run: helpers.ParityRun) -> None:
    """Outputs within FORWARD, gradients within GRADIENT, for the case's dtype."""
    dtype = pc.case.np_dtype
    helpers.assert_all_close(run.jax_outputs, run.torch_outputs, FORWARD[dtype], f"{pc.id}")
    helpers.assert_all_close(run.jax_grads, run.torch_grads, GRADIENT[dtype], f"{pc.id} grads")


def check_case(pc: PackedCase, *, compiler_options: dict | None = None) -> helpers.ParityRun:
    """Run ``pc`` on both backends and assert parity; return the run."""
    run = run_both(pc, compiler_options=compiler_options)
    assert_parity(pc, run)
    return run
