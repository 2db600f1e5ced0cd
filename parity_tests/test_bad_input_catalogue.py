"""The catalogue of user mistakes: what each gives on each backend (README's table).

Every entry runs its mistake on the JAX side and on the torch side and checks the
exception's exact type and a message excerpt that names what was expected and what
came. JAX calls run eagerly and under ``jax.jit``: the error must be ours (a plain
ValueError/TypeError raised before XLA sees anything), never a JAX error. Mistakes
that touch stored state (weight loading, checkpoints) must leave it as it was.
The documentation's page ``docs/reference/bad-input.md`` is this catalogue, row for
row: the docs build generates it from :func:`readme_tables`
(:func:`test_docs_page_is_this_catalogue`). Exhaustive variants of
the shape and option checks live in ``test_bad_input.py`` and ``test_checkpoint.py``.
"""

from __future__ import annotations

import ast
import builtins
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pytest
import safetensors.numpy
import torch
from flax import nnx

import lstm_jax
import lstm_torch
from lstm_jax.common import tolerances

ROOT = Path(__file__).resolve().parents[1]
T, B, I, H, P = 5, 2, 3, 4, 2


@dataclass(frozen=True)
class Outcome:
    """What one backend does with a mistake: ``run(jit)`` makes it (``jit`` only matters
    for JAX calls that can be traced); ``error`` None means it is accepted (``excerpt``
    then says what happens instead). ``excerpt``: text the message holds, or a tuple of
    texts it holds in that order."""

    run: Callable[[bool], object] | None  # None: no such thing on this backend
    error: type[BaseException] | None
    excerpt: str | tuple[str, ...]
    jit: bool = False  # also run under jax.jit

    @property
    def parts(self) -> tuple[str, ...]:
        return (self.excerpt,) if isinstance(self.excerpt, str) else self.excerpt

    def matches(self, message: str) -> bool:
        position = 0
        for part in self.parts:
            position = message.find(part, position)
            if position < 0:
                return False
            position += len(part)
        return True

    def cell(self) -> str:
        text = " … ".join(self.parts)
        if self.run is None:
            return text
        if self.error is None:
            return f"no error: {text}"
        module = self.error.__module__
        name = self.error.__name__ if module == "builtins" else f"{module}.{self.error.__name__}"
        return f"`{name}`: {text}"


NOT_APPLICABLE = Outcome(None, None, "(no such option)")


# --- models and data the mistakes are made with -------------------------------------------


@functools.cache
def torch_modeler(**options: object) -> lstm_torch.LSTMModeler:
    torch.manual_seed(0)
    return lstm_torch.LSTMModeler(I, H, 1, **options)


def fresh_torch_modeler(**options: object) -> lstm_torch.LSTMModeler:
    model = torch_modeler(**options)
    model.hidden_cell = model.zero_hidden_cell()
    return model


@functools.cache
def jax_lstm(**options: object) -> tuple[lstm_jax.LSTM, dict]:
    torch.manual_seed(0)
    sd = torch.nn.LSTM(I, H, **options).state_dict()
    return lstm_jax.LSTM(H, **options), lstm_jax.params_from_torch(sd)


def zeros(*shape: int, dtype: object = np.float32) -> np.ndarray:
    return np.zeros(shape, dtype)


def jax_call(x: np.ndarray, state: object = None, lengths: object = None, **options: object):
    """``run(jit)`` of ``lstm_jax.LSTM(H, **options).apply(v, x, state, seq_lengths=...)``."""

    def run(jit: bool) -> object:
        model, variables = jax_lstm(**options)

        def apply(v, x, state, lengths):
            return model.apply(v, x, state, seq_lengths=lengths)

        return (jax.jit(apply) if jit else apply)(variables, x, state, lengths)

    return run


def torch_call(x: np.ndarray, hidden_cell: object = None, lengths: object = None, **options):
    """``run(_)`` of ``lstm_torch.LSTMModeler(I, H, 1, **options)(x, seq_lengths)``."""

    def run(_: bool) -> object:
        model = fresh_torch_modeler(**options)
        if hidden_cell is not None:
            model.hidden_cell = hidden_cell
        xt = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        with torch.no_grad():
            return model(xt, None if lengths is None else torch.as_tensor(lengths))

    return run


def construct(make: Callable[[], object]) -> Callable[[bool], object]:
    return lambda _: make()


def t(*arrays: np.ndarray) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in arrays)


TWO_DEVICES = """
import json, jax, numpy as np, lstm_jax
d0, d1 = jax.devices()
model = lstm_jax.LSTM(4)
x = np.zeros((5, 2, 3), np.float32)
variables = jax.device_put(model.init(jax.random.key(0), x), d0)
found = []
for apply in (model.apply, jax.jit(model.apply)):
    try:
        apply(variables, jax.device_put(x, d1))
        found.append(None)
    except Exception as err:
        found.append([type(err).__module__, type(err).__name__, str(err)])
print(json.dumps(found))
"""


def jax_on_two_devices() -> None:
    """Params on CPU device 0, input on device 1, eager and jitted, in a subprocess that
    splits the CPU into two devices; re-raise what both calls raised there (the same)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES], env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise AssertionError(result.stderr)
    eager, jitted = json.loads(result.stdout.splitlines()[-1])
    if eager is None or jitted is None or eager[:2] != jitted[:2]:
        raise AssertionError(f"expected one error type eager and jitted, got {eager}, {jitted}")
    module, name, message = eager
    if module != "builtins":
        raise AssertionError(f"a {module}.{name}, not a builtin error: {message}")
    raise getattr(builtins, name)(f"{message} || jitted: {jitted[2]}")


# --- inputs and states ---------------------------------------------------------------------

X = zeros(T, B, I)
INPUTS = {
    "input feature size differs from input_size": (
        Outcome(
            jax_call(zeros(T, B, I + 1)),
            ValueError,
            "input.size(-1) must be equal to input_size. Expected 3, got 4",
            jit=True,
        ),
        Outcome(
            torch_call(zeros(T, B, I + 1)),
            ValueError,
            "input.size(-1) must be equal to input_size. Expected 3, got 4",
        ),
    ),
    "input of rank 4": (
        Outcome(
            jax_call(zeros(T, B, I, 1)),
            ValueError,
            ("expected input to be 2-D", "or 3-D", "got 4-D input of shape (5, 2, 3, 1)"),
            jit=True,
        ),
        Outcome(
            torch_call(zeros(T, B, I, 1)),
            ValueError,
            ("expected a 1-D (T,) or 2-D (T, I) sequence or a 3-D batch", "got 4-D input"),
        ),
    ),
    "integer input": (
        Outcome(
            jax_call(zeros(T, B, I, dtype=np.int32)),
            TypeError,
            "expected a floating point input, got dtype int32",
            jit=True,
        ),
        Outcome(
            torch_call(zeros(T, B, I, dtype=np.int32)),
            TypeError,
            "expected a floating point input, got dtype torch.int32",
        ),
    ),
    "float64 input, float32 parameters": (
        Outcome(jax_call(zeros(T, B, I, dtype=np.float64)), None, "computes in float32"),
        Outcome(
            torch_call(zeros(T, B, I, dtype=np.float64)),
            TypeError,
            "expected input of dtype torch.float32 (the parameters'), got torch.float64",
        ),
    ),
    "no time steps (T = 0)": (
        Outcome(jax_call(zeros(0, B, I)), ValueError, "expected at least one time step", jit=True),
        Outcome(torch_call(zeros(0, B, I)), ValueError, "expected at least one time step"),
    ),
    "empty batch (B = 0)": (
        Outcome(jax_call(zeros(T, 0, I)), ValueError, "at least one sequence", jit=True),
        Outcome(torch_call(zeros(T, 0, I)), ValueError, "at least one sequence"),
    ),
    "input on another device than the parameters": (
        Outcome(
            lambda _: jax_on_two_devices(),
            ValueError,
            "Received incompatible devices for jitted computation",
        ),
        Outcome(
            torch_call(torch.zeros(T, B, I, device="meta")),
            ValueError,
            "expected input on device cpu (the parameters'), got meta",
        ),
    ),
    "h_0 of the wrong shape": (
        Outcome(
            jax_call(X, (zeros(2, B, H), zeros(1, B, H))),
            ValueError,
            "expected h_0 of shape (1, 2, 4)",
            jit=True,
        ),
        Outcome(
            torch_call(X, t(zeros(2, B, H), zeros(1, B, H))),
            ValueError,
            "expected h_0 of shape (1, 2, 4)",
        ),
    ),
    "(c_0, h_0) instead of (h_0, c_0), with proj_size": (
        Outcome(
            jax_call(X, (zeros(1, B, H), zeros(1, B, P)), proj_size=P),
            ValueError,
            ("expected h_0 of shape (1, 2, 2)", "got (1, 2, 4)"),
            jit=True,
        ),
        Outcome(
            torch_call(X, t(zeros(1, B, H), zeros(1, B, P)), proj_size=P),
            ValueError,
            ("expected h_0 of shape (1, 2, 2)", "got (1, 2, 4)"),
        ),
    ),
    "(c_0, h_0) instead of (h_0, c_0), without proj_size": (
        Outcome(jax_call(X, (zeros(1, B, H), zeros(1, B, H))), None, "not detectable"),
        Outcome(torch_call(X, t(zeros(1, B, H), zeros(1, B, H))), None, "not detectable"),
    ),
    "initial state not a pair": (
        Outcome(
            jax_call(X, (zeros(1, B, H),)),
            TypeError,
            "expected initial_state as a pair (h_0, c_0)",
            jit=True,
        ),
        Outcome(
            torch_call(X, t(zeros(1, B, H))),
            TypeError,
            "expected hidden_cell as a pair (h, c), got a tuple of 1",
        ),
    ),
    "integer initial state": (
        Outcome(
            jax_call(X, (zeros(1, B, H, dtype=np.int32), zeros(1, B, H))),
            TypeError,
            "expected a floating point h_0, got dtype int32",
            jit=True,
        ),
        Outcome(
            torch_call(X, t(zeros(1, B, H, dtype=np.int32), zeros(1, B, H))),
            TypeError,
            "expected hidden_cell h of dtype torch.float32 (the parameters'), got torch.int32",
        ),
    ),
    "a seq_length of 0 or beyond T": (
        Outcome(jax_call(X, None, np.array([0, T + 1])), ValueError, "in [1, T=5], got [0, 6]"),
        Outcome(torch_call(X, None, [0, T + 1]), ValueError, "in [1, T=5], got [0, 6]"),
    ),
    "seq_lengths out of range under jax.jit (values unknown)": (
        Outcome(
            lambda _: jax_call(X, None, np.array([0, T + 1]))(True),
            None,
            "rows with such lengths come out NaN",
        ),
        Outcome(None, None, "(no tracing: values always checked, as above)"),
    ),
    "a seq_length per row too few or too many": (
        Outcome(
            jax_call(X, None, np.array([2, 3, 4])),
            ValueError,
            "expected 2 seq_lengths (one per batch row), got 3",
            jit=True,
        ),
        Outcome(
            torch_call(X, None, [2, 3, 4]),
            ValueError,
            "expected 2 seq_lengths (one per batch row), got 3",
        ),
    ),
    "non-integer seq_lengths": (
        Outcome(
            jax_call(X, None, np.array([2.0, 3.0])),
            TypeError,
            "expected integer seq_lengths, got dtype float",
            jit=True,
        ),
        Outcome(
            torch_call(X, None, [2.0, 3.0]), TypeError, "expected integer seq_lengths, got dtype"
        ),
    ),
    "CPU torch tensors as input, initial state and seq_lengths": (
        Outcome(
            lambda _: same_as_numpy(),
            None,
            "read as numpy, same results (eagerly: jax.jit itself refuses tensors, pass .numpy())",
        ),
        Outcome(torch_call(X, t(zeros(1, B, H), zeros(1, B, H)), [5, 3]), None, "the native type"),
    ),
    "a torch tensor on a GPU (tested with torch's meta device)": (
        Outcome(
            jax_call(torch.zeros(T, B, I, device="meta")),
            ValueError,
            "expected input as an array or a CPU torch tensor, got a torch tensor on device meta",
        ),
        Outcome(
            torch_call(torch.zeros(T, B, I, device="meta")),
            ValueError,
            "expected input on device cpu (the parameters'), got meta",
        ),
    ),
    "hidden_cell None": (
        Outcome(lambda _: none_is_zeros_jax(), None, "zeros (the explicit carry's default)"),
        Outcome(lambda _: none_is_zeros_torch(), None, "zeros, as nn.LSTM(x, None)"),
    ),
    "deterministic=False without a 'dropout' rng": (
        Outcome(
            lambda jit: dropout_call(jit),
            ValueError,
            ("needs a 'dropout' PRNG key: pass rngs={\"dropout\": key} to apply",),
            jit=True,
        ),
        Outcome(None, None, "(no such thing: torch draws from its global generator)"),
    ),
}


def same_as_numpy() -> None:
    """``lstm_jax.LSTM.apply`` on CPU torch tensors gives what it gives on their numpy."""
    model, variables = jax_lstm()
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    state, lengths = (zeros(1, B, H), zeros(1, B, H)), np.array([5, 3])
    expected = model.apply(variables, x, state, seq_lengths=lengths)
    got = model.apply(variables, *t(x), t(*state), seq_lengths=torch.tensor([5, 3]))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)


@functools.cache
def jax_modeler(**options: object) -> tuple[lstm_jax.LSTMModeler, dict]:
    model = lstm_jax.LSTMModeler(I, H, 1, **options)
    return model, model.init(jax.random.key(0), zeros(T, B, I))


def jax_modeler_call(variables: object = None, x: np.ndarray = X, **options: object):
    """``run(jit)`` of ``lstm_jax.LSTMModeler(I, H, 1, **options).apply(variables, x)``
    (the model's own variables for None)."""

    def run(jit: bool) -> object:
        model, own = jax_modeler(**options)
        apply = jax.jit(model.apply) if jit else model.apply
        return apply(own if variables is None else variables, x)

    return run


def none_is_zeros_jax() -> None:
    model, variables = jax_modeler()
    zero = lstm_jax.LSTMState(zeros(1, B, H), zeros(1, B, H))
    np.testing.assert_array_equal(model.apply(variables, X)[0], model.apply(variables, X, zero)[0])


def none_is_zeros_torch() -> None:
    model = fresh_torch_modeler()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32))
    with torch.no_grad():
        expected = model(x)  # from the stored (1, 1, H) zeros, broadcast to the batch
        model.hidden_cell = None
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert model.hidden_cell[0].shape == (1, B, H)  # the final state is stored, as the lecture's


def dropout_call(jit: bool) -> object:
    model, variables = jax_modeler(num_layers=2, dropout=0.5)

    def apply(v: dict, x: np.ndarray) -> object:
        return model.apply(v, x, deterministic=False)

    return (jax.jit(apply) if jit else apply)(variables, X)


# --- constructor options -------------------------------------------------------------------


def both_constructors(error: type, excerpt: str, **options: object) -> tuple[Outcome, Outcome]:
    """The same bad option given to lstm_jax.LSTMModeler and lstm_torch.LSTMModeler."""
    kwargs = dict(input_size=I, hidden_layer_size=H, output_size=1) | options
    return (
        Outcome(construct(lambda: lstm_jax.LSTMModeler(**kwargs)), error, excerpt),
        Outcome(construct(lambda: lstm_torch.LSTMModeler(**kwargs)), error, excerpt),
    )


def jax_constructor(error: type, excerpt: str, **options: object) -> tuple[Outcome, Outcome]:
    """A JAX-only option (both ``lstm_jax.LSTM`` and ``LSTMModeler`` take it)."""

    def make() -> None:
        lstm_jax.LSTM(H, **options)
        lstm_jax.LSTMModeler(I, H, 1, **options)

    return Outcome(construct(make), error, excerpt), NOT_APPLICABLE


DROPOUT_WARNING = "non-zero dropout expects num_layers greater than 1"


def warns_once(make: Callable[[], object]) -> None:
    """``make()`` warns torch's one-layer dropout warning exactly once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
    found = [w for w in caught if DROPOUT_WARNING in str(w.message)]
    assert len(found) == 1 and found[0].category is UserWarning, [str(w.message) for w in caught]


OPTIONS = {
    "input_size 0": both_constructors(
        ValueError, "input_size must be greater than or equal to 1, got 0", input_size=0
    ),
    "hidden_size 0": both_constructors(
        ValueError, "hidden_size must be greater than or equal to 1, got 0", hidden_layer_size=0
    ),
    "output_size 0": both_constructors(
        ValueError, "output_size must be a positive int, got 0", output_size=0
    ),
    "num_layers 0": both_constructors(
        ValueError, "num_layers must be greater than or equal to 1, got 0", num_layers=0
    ),
    "num_layers 2.0 (not an int)": both_constructors(
        TypeError, "num_layers should be of type int, got: float", num_layers=2.0
    ),
    "proj_size not below hidden_size": both_constructors(
        ValueError,
        "proj_size has to be smaller than hidden_size, got proj_size=4 and hidden_size=4",
        proj_size=H,
    ),
    "proj_size negative": both_constructors(
        ValueError, "proj_size should be a positive integer or zero", proj_size=-1
    ),
    "dropout outside [0, 1]": both_constructors(
        ValueError, ("dropout should be a number in range [0, 1]", "got 1.5"), dropout=1.5
    ),
    "bias not a bool": both_constructors(TypeError, "bias should be a bool, got 'yes'", bias="yes"),
    "batch_first not a bool": both_constructors(
        TypeError, "batch_first should be a bool, got 1", batch_first=1
    ),
    "bidirectional not a bool": both_constructors(
        TypeError, "bidirectional should be a bool, got None", bidirectional=None
    ),
    "param_dtype not floating": jax_constructor(
        TypeError, "expected a floating point param_dtype, got int32", param_dtype=np.int32
    ),
    "unknown impl": jax_constructor(ValueError, "expected impl in", impl="fast"),
    "unroll 0": jax_constructor(ValueError, "expected unroll >= 1, got 0", unroll=0),
    "remat negative": jax_constructor(ValueError, "expected remat >= 0, got -1", remat=-1),
    "dropout with num_layers=1 (never applied)": (
        Outcome(
            construct(lambda: warns_once(lambda: lstm_jax.LSTMModeler(I, H, 1, dropout=0.5))),
            None,
            ("`UserWarning`, once:", DROPOUT_WARNING),
        ),
        Outcome(
            construct(lambda: warns_once(lambda: lstm_torch.LSTMModeler(I, H, 1, dropout=0.5))),
            None,
            ("`UserWarning`, once:", DROPOUT_WARNING),
        ),
    ),
}


# --- weight transfer -------------------------------------------------------------------------


@functools.cache
def torch_state_dict(kind: str, **options: object) -> dict[str, np.ndarray]:
    torch.manual_seed(1)
    module = getattr(torch.nn, kind)(I, H, **options)
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def modeler_sd(**options: object) -> dict[str, np.ndarray]:
    """``params_to_torch`` of a JAX modeler of other options (what a user would load)."""
    model = lstm_jax.LSTMModeler(I, H, 1, **options)
    return lstm_jax.params_to_torch(model.init(jax.random.key(1), zeros(T, B, I)))


def from_torch(
    sd: dict, hidden_size: int | None = H, module: Callable[[int], object] = lstm_jax.LSTM
) -> Callable[[bool], object]:
    """``params_from_torch(sd, model=module(hidden_size))`` (an LSTM by default, no model
    for None); the input must stay untouched."""

    def run(_: bool) -> object:
        before = {k: v.copy() for k, v in sd.items()}
        model = None if hidden_size is None else module(hidden_size)
        try:
            return lstm_jax.params_from_torch(sd, model=model)
        finally:
            assert before.keys() == sd.keys()
            assert all(np.array_equal(before[k], sd[k]) for k in sd)

    return run


def load_into_torch(sd: dict) -> Callable[[bool], object]:
    """``lstm_torch.LSTMModeler.load_state_dict(sd)``; a failure must leave the model as it was."""

    def run(_: bool) -> object:
        model = lstm_torch.LSTMModeler(I, H, 1)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            return model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        finally:
            after = model.state_dict()
            changed = [k for k in before if not torch.equal(before[k], after[k])]
            assert not changed, f"a failed load_state_dict changed {changed}"

    return run


def load_into_torch_module(kind: str, sd: dict) -> Callable[[bool], object]:
    """``torch.nn.<kind>(I, H).load_state_dict(sd)``; a failure must leave it as it was."""

    def run(_: bool) -> object:
        module = getattr(torch.nn, kind)(I, H)
        before = {k: v.clone() for k, v in module.state_dict().items()}
        try:
            return module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        finally:
            after = module.state_dict()
            assert all(torch.equal(before[k], after[k]) for k in before)

    return run


def _drop(sd: dict, key: str) -> dict:
    return {k: v for k, v in sd.items() if k != key}


def _modeler_sd_of_lstm(sd: dict) -> dict:
    """An nn.LSTM state dict under the modeler's ``lstm.`` prefix plus a fitting head."""
    return {f"lstm.{k}": v for k, v in sd.items()} | {
        "linear.weight": zeros(1, H),
        "linear.bias": zeros(1),
    }


TRANSFER = {
    "a GRU's state dict": (
        Outcome(
            from_torch(torch_state_dict("GRU"), hidden_size=None),
            ValueError,
            "(a GRU or RNN state dict?)",
        ),
        Outcome(
            load_into_torch(_modeler_sd_of_lstm(torch_state_dict("GRU"))),
            RuntimeError,
            "size mismatch for lstm.weight_ih_l0",
        ),
    ),
    "a GRU's state dict into an LSTM": (
        Outcome(
            from_torch(torch_state_dict("GRU")),
            ValueError,
            ("weight_hh_l0 of shape (12, 4) looks like a GRU's (3H rows)", "use lstm_jax.GRU"),
        ),
        Outcome(
            load_into_torch_module("LSTM", torch_state_dict("GRU")),
            RuntimeError,
            "size mismatch for weight_ih_l0",
        ),
    ),
    "an LSTM's state dict into a GRU": (
        Outcome(
            from_torch(torch_state_dict("LSTM"), module=lstm_jax.GRU),
            ValueError,
            ("weight_hh_l0 of shape (16, 4) looks like an LSTM's (4H rows)", "use lstm_jax.LSTM"),
        ),
        Outcome(
            load_into_torch_module("GRU", torch_state_dict("LSTM")),
            RuntimeError,
            "size mismatch for weight_ih_l0",
        ),
    ),
    "a plain RNN's state dict into a GRU": (
        Outcome(
            from_torch(torch_state_dict("RNN"), module=lstm_jax.GRU),
            ValueError,
            ("looks like an RNN's (H rows)", "use lstm_jax.RNN"),
        ),
        Outcome(
            load_into_torch_module("GRU", torch_state_dict("RNN")),
            RuntimeError,
            "size mismatch for weight_ih_l0",
        ),
    ),
    "a state dict with another layer count": (
        Outcome(
            from_torch(torch_state_dict("LSTM", num_layers=2)),
            ValueError,
            "unexpected key(s): weight_ih_l1, weight_hh_l1, bias_ih_l1, bias_hh_l1",
        ),
        Outcome(
            load_into_torch(modeler_sd(num_layers=2)),
            RuntimeError,
            'Unexpected key(s) in state_dict: "lstm.weight_ih_l1"',
        ),
    ),
    "a bidirectional state dict into a unidirectional model": (
        Outcome(
            from_torch(torch_state_dict("LSTM", bidirectional=True)),
            ValueError,
            "unexpected key(s): weight_ih_l0_reverse",
        ),
        Outcome(
            load_into_torch(modeler_sd(bidirectional=True)),
            RuntimeError,
            'Unexpected key(s) in state_dict: "lstm.weight_ih_l0_reverse"',
        ),
    ),
    "a state dict of another hidden size": (
        Outcome(
            from_torch(torch_state_dict("LSTM"), hidden_size=H + 1),
            ValueError,
            "size mismatch for weight_ih_l0: expected (20, 3), got (16, 3)",
        ),
        Outcome(
            load_into_torch(modeler_sd(proj_size=1)),
            RuntimeError,
            "size mismatch for lstm.weight_hh_l0",
        ),
    ),
    "a state dict with a key missing": (
        Outcome(
            from_torch(_drop(torch_state_dict("LSTM"), "bias_hh_l0")),
            ValueError,
            "missing key(s): bias_hh_l0",
        ),
        Outcome(
            load_into_torch(_drop(modeler_sd(), "lstm.bias_hh_l0")),
            RuntimeError,
            'Missing key(s) in state_dict: "lstm.bias_hh_l0"',
        ),
    ),
    "a state dict with an extra key": (
        Outcome(
            from_torch(torch_state_dict("LSTM") | {"weight_xx_l0": zeros(2)}),
            ValueError,
            "unexpected key(s): weight_xx_l0",
        ),
        Outcome(
            load_into_torch(modeler_sd() | {"lstm.weight_xx_l0": zeros(2)}),
            RuntimeError,
            'Unexpected key(s) in state_dict: "lstm.weight_xx_l0"',
        ),
    ),
}

# --- variables given to apply / init ---------------------------------------------------------


def other_variables(**options: object) -> dict:
    """A JAX modeler's variables made with other options than (I, H, 1)."""
    kwargs = dict(input_size=I, hidden_layer_size=H, output_size=1) | options
    model = lstm_jax.LSTMModeler(**kwargs)
    return model.init(jax.random.key(2), zeros(T, B, kwargs["input_size"]))


VARIABLES = {
    "variables of another input size": (
        Outcome(
            jax_modeler_call(other_variables(input_size=I + 1)),
            ValueError,
            "size mismatch for lstm.weight_ih_l0: expected (16, 3), got (16, 4)",
            jit=True,
        ),
        Outcome(
            load_into_torch(lstm_jax.params_to_torch(other_variables(input_size=I + 1))),
            RuntimeError,
            "size mismatch for lstm.weight_ih_l0",
        ),
    ),
    "variables of another output size": (
        Outcome(
            jax_modeler_call(other_variables(output_size=2)),
            ValueError,
            ("linear.weight: expected (1, 4), got (2, 4)", "output_size=2 (this module: 1)"),
            jit=True,
        ),
        Outcome(
            load_into_torch(lstm_jax.params_to_torch(other_variables(output_size=2))),
            RuntimeError,
            "size mismatch for linear.weight",
        ),
    ),
    "variables of another layer count": (
        Outcome(
            jax_modeler_call(other_variables(num_layers=2)),
            ValueError,
            ("unexpected key(s):", "lstm.weight_ih_l1", "num_layers=2 (this module: 1)"),
            jit=True,
        ),
        Outcome(
            load_into_torch(lstm_jax.params_to_torch(other_variables(num_layers=2))),
            RuntimeError,
            'Unexpected key(s) in state_dict: "lstm.weight_ih_l1"',
        ),
    ),
    'params without the {"params": ...} wrapper': (
        Outcome(
            jax_modeler_call(jax_modeler()[1]["params"]),
            ValueError,
            'expected variables of the form {"params": {...}}',
            jit=True,
        ),
        Outcome(None, None, "(no such thing: a state_dict is flat)"),
    ),
    "init with another feature size than input_size": (
        Outcome(
            lambda _: lstm_jax.LSTMModeler(I, H, 1).init(jax.random.key(0), zeros(T, B, I + 1)),
            ValueError,
            "input.size(-1) must be equal to input_size. Expected 3, got 4",
        ),
        Outcome(None, None, "(no init: the constructor builds the weights)"),
    ),
}

# --- checkpoints -----------------------------------------------------------------------------


@functools.cache
def checkpoint_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="lstm-jax-catalogue-"))


def saved_checkpoint(name: str, damage: Callable[[Path], None] = lambda p: None) -> Path:
    """A fresh checkpoint of ``lstm_torch.LSTMModeler(I, H, 1)``, then ``damage`` done to it."""
    path = checkpoint_dir() / f"{name}.safetensors"
    lstm_torch.save_checkpoint(path, torch_modeler())
    damage(path)
    return path


def load_jax(name: str, damage: Callable[[Path], None], **options: object):
    def run(_: bool) -> object:
        model = lstm_jax.LSTMModeler(I, H, 1, **options) if options else None
        return lstm_jax.load_checkpoint(saved_checkpoint(name, damage), model)

    return run


def load_torch(name: str, damage: Callable[[Path], None], **options: object):
    """``lstm_torch.load_checkpoint`` into a model (when ``options``); a failure must leave
    the model as it was."""

    def run(_: bool) -> object:
        model = lstm_torch.LSTMModeler(I, H, 1, **options) if options else None
        before = {} if model is None else {k: v.clone() for k, v in model.state_dict().items()}
        try:
            return lstm_torch.load_checkpoint(saved_checkpoint(name, damage), model)
        finally:
            if model is not None:
                after = model.state_dict()
                assert all(torch.equal(before[k], after[k]) for k in before)

    return run


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of the last tensor's data
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    safetensors.numpy.save_file(torch_state_dict("LSTM"), path)  # a bare state dict


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _torch_save(path: Path) -> None:
    torch.save(torch_modeler().state_dict(), path)  # what a torch user has: a .pt pickle


def both_loaders(name, damage, error, excerpt, **options) -> tuple[Outcome, Outcome]:
    """The same file loaded by both backends; torch's side raises its subclass of ``error``
    (``lstm_torch.CheckpointError``: tracebacks name the package the user called)."""
    torch_error = lstm_torch.CheckpointError if error is CheckpointError else error
    return (
        Outcome(load_jax(name, damage, **options), error, excerpt),
        Outcome(load_torch(name, damage, **options), torch_error, excerpt),
    )


def save_keeps_old_file(save: Callable[[Path], None]) -> Callable[[bool], None]:
    """``save(path)`` over an existing checkpoint, which must survive a failure unchanged."""

    def run(_: bool) -> None:
        path = saved_checkpoint("old")
        before = path.read_bytes()
        try:
            save(path)
        finally:
            assert path.read_bytes() == before, "a failed save changed the existing file"

    return run


def _jax_save_mismatched(path: Path) -> None:
    variables = jax_lstm()[1]  # an nn.LSTM's variables, given as a modeler's
    lstm_jax.save_checkpoint(path, variables, lstm_jax.LSTMModeler(I, H, 1))


def _torch_save_float16(path: Path) -> None:
    lstm_torch.save_checkpoint(path, lstm_torch.LSTMModeler(I, H, 1).half())


CheckpointError = lstm_jax.CheckpointError
CHECKPOINTS = {
    "an empty checkpoint file": both_loaders(
        "empty", _empty, CheckpointError, "not a readable safetensors file"
    ),
    "a truncated checkpoint file": both_loaders(
        "truncated", _truncate, CheckpointError, "not a readable safetensors file"
    ),
    "a safetensors file that is not a checkpoint": both_loaders(
        "foreign", _foreign, CheckpointError, "not an lstm-jax checkpoint"
    ),
    "a torch.save file (a .pt pickle)": both_loaders(
        "pickle",
        _torch_save,
        CheckpointError,
        (
            "a torch.save file",
            "not loaded: unpickling can run arbitrary code",
            "torch.load(path, weights_only=True)",
            "lstm_torch.save_checkpoint(",
        ),
    ),
    "a tampered checkpoint (one bit flipped)": both_loaders(
        "tampered", _tamper, CheckpointError, "does not match the checksum"
    ),
    "a checkpoint of another configuration": both_loaders(
        "other",
        lambda p: None,
        CheckpointError,
        "saved with another configuration than the model's (file vs model): num_layers: 1 vs 2",
        num_layers=2,
    ),
    "saving into a missing directory": (
        Outcome(
            lambda _: lstm_jax.save_checkpoint(
                checkpoint_dir() / "missing" / "m.safetensors", *reversed(jax_lstm())
            ),
            FileNotFoundError,
            "does not exist (create it first)",
        ),
        Outcome(
            lambda _: lstm_torch.save_checkpoint(
                checkpoint_dir() / "missing" / "m.safetensors", torch_modeler()
            ),
            FileNotFoundError,
            "does not exist (create it first)",
        ),
    ),
    "a failed save over an existing checkpoint": (
        Outcome(
            save_keeps_old_file(_jax_save_mismatched),
            ValueError,
            "missing key(s): lstm.weight_ih_l0",
        ),
        Outcome(
            save_keeps_old_file(_torch_save_float16),
            TypeError,
            "checkpoints hold float32 or float64 parameters, got torch.float16",
        ),
    ),
}

# --- non-finite values -------------------------------------------------------------------------

X_NAN = zeros(T, B, I)
X_NAN[3, 1, 2] = np.nan


def _check_finite(x: object) -> Callable[[bool], None]:
    return lambda _: lstm_jax.check_finite(x)


NONFINITE = {
    "NaN or inf in the input": (
        Outcome(jax_call(X_NAN), None, "NaN propagates, as in torch"),
        Outcome(torch_call(X_NAN), None, "NaN propagates"),
    ),
    "NaN or inf in the input, with check_finite": (
        Outcome(
            _check_finite(X_NAN),
            ValueError,
            "the first is nan at time step 3 of batch row 1",
        ),
        Outcome(
            lambda _: lstm_torch.check_finite(torch.from_numpy(X_NAN)),
            ValueError,
            "the first is nan at time step 3 of batch row 1",
        ),
    ),
}

# --- Flax NNX modules (lstm_jax.nnx): the same mistakes, against torch's own modules -------


def nnx_rngs() -> nnx.Rngs:
    return nnx.Rngs(0)


def nnx_lstm(**options: object) -> lstm_jax.nnx.LSTM:
    return lstm_jax.nnx.LSTM(I, H, **options, rngs=nnx_rngs())


def nnx_modeler(**options: object) -> lstm_jax.nnx.LSTMModeler:
    return lstm_jax.nnx.LSTMModeler(I, H, 1, **options, rngs=nnx_rngs())


def nnx_cell() -> lstm_jax.nnx.LSTMCell:
    return lstm_jax.nnx.LSTMCell(I, H, rngs=nnx_rngs())


def nnx_linear() -> lstm_jax.nnx.Linear:
    return lstm_jax.nnx.Linear(I, 2, rngs=nnx_rngs())


def nnx_call(make: Callable[[], nnx.Module], *args: object, **kwargs: object):
    """``run(jit)`` of ``make()(*args, **kwargs)``; with ``jit`` under ``nnx.jit``, every
    argument traced (so traced lengths have no values to check)."""

    def run(jit: bool) -> object:
        module = make()
        if not jit:
            return module(*args, **kwargs)
        return nnx.jit(lambda m, a, k: m(*a, **k))(module, args, kwargs)

    return run


def nnx_modeler_call(hidden_cell: object, x: object = X, **options: object):
    """``run(jit)`` of the lecture's ``model.hidden_cell = hidden_cell; model(x)`` in NNX."""

    def make() -> lstm_jax.nnx.LSTMModeler:
        model = nnx_modeler(**options)
        model.hidden_cell = hidden_cell
        return model

    return nnx_call(make, x)


def torch_module(kind: str, *sizes: int, **options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(torch.nn, kind)(*(sizes or (I, H)), **options)


def torch_module_call(kind: str, *args: object, sizes: tuple[int, ...] = (), **options):
    """``run(_)`` of ``torch.nn.<kind>(*sizes or (I, H), **options)(*args)`` (arrays as tensors)."""

    def run(_: bool) -> object:
        tensors = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
        with torch.no_grad():
            return torch_module(kind, *sizes, **options)(*tensors)

    return run


def torch_packed_call(lengths: list[int], enforce_sorted: bool = True):
    """``run(_)`` of ``nn.LSTM(I, H)(pack_padded_sequence(x, lengths))``: torch's way to
    give lengths."""

    def run(_: bool) -> object:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.from_numpy(X), lengths, enforce_sorted=enforce_sorted
        )
        with torch.no_grad():
            return torch_module("LSTM")(packed)

    return run


TX = torch.zeros(T, B, I)
META = torch.zeros(1, B, H, device="meta")


def nnx_float64_input() -> None:
    """float64 input to float32 parameters in JAX's 32-bit mode: JAX warns and rounds it,
    the result is the float32 input's."""
    model = nnx_lstm()
    x64 = np.random.default_rng(0).standard_normal((T, B, I))
    with pytest.warns(UserWarning, match="truncated to dtype float32"):
        out, _ = model(x64)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, model(x64.astype(np.float32))[0])


def nnx_tensors_as_numpy() -> None:
    """``lstm_jax.nnx.LSTM`` on CPU torch tensors gives what it gives on their numpy."""
    model = nnx_lstm()
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    state, lengths = (zeros(1, B, H), zeros(1, B, H)), np.array([5, 3])
    expected = model(x, state, seq_lengths=lengths)
    got = model(*t(x), t(*state), seq_lengths=torch.tensor([5, 3]))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)


def nnx_unsorted_lengths() -> None:
    """Lengths in any order give torch's ``pack_padded_sequence(..., enforce_sorted=False)``
    results (the torch weights loaded into the NNX module)."""
    module = torch_module("LSTM")
    model = nnx_lstm()
    model.load_state_dict(module.state_dict())
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    out, (h_n, c_n) = model(x, seq_lengths=np.array([2, 5]))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), [2, 5], enforce_sorted=False
    )
    with torch.no_grad():
        ref_packed, (ref_h, ref_c) = module(packed)
    ref, _ = torch.nn.utils.rnn.pad_packed_sequence(ref_packed, total_length=T)
    tol = tolerances.FORWARD[np.dtype(np.float32)]
    for got, want, what in ((out, ref, "output"), (h_n, ref_h, "h_n"), (c_n, ref_c, "c_n")):
        tolerances.assert_close(got, want.numpy(), tol, what)


def nnx_traced_lengths_out_of_range() -> None:
    """Under ``nnx.jit`` traced lengths have no values: the row whose length is beyond T
    comes out NaN, the other row is computed."""
    out, (h_n, c_n) = nnx_call(nnx_lstm, X, seq_lengths=np.array([3, T + 1]))(True)
    for value in (out, h_n, c_n):
        assert np.isnan(value[..., 1, :]).all() and not np.isnan(value[..., 0, :]).any()


def nnx_hidden_cell_none() -> None:
    """``model.hidden_cell = None`` runs from zeros, as from the stored zeros, and stores
    the new state for the batch."""
    model = nnx_modeler()
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    expected = model(x)  # from the stored (1, 1, H) zeros, broadcast to the batch
    model.hidden_cell = None
    np.testing.assert_array_equal(model(x), expected)
    assert model.hidden_cell.h.shape == (1, B, H)


NNX_CALLS = {
    "nnx.LSTM: input feature size differs from input_size": (
        Outcome(
            nnx_call(nnx_lstm, zeros(T, B, I + 1)),
            ValueError,
            "LSTM: input.size(-1) must be equal to input_size. Expected 3, got 4",
            jit=True,
        ),
        Outcome(
            torch_module_call("LSTM", zeros(T, B, I + 1)),
            RuntimeError,
            "input.size(-1) must be equal to input_size. Expected 3, got 4",
        ),
    ),
    "nnx.LSTM: input of rank 4": (
        Outcome(
            nnx_call(nnx_lstm, zeros(T, B, I, 1)),
            ValueError,
            ("expected input to be 2-D", "or 3-D", "got 4-D input of shape (5, 2, 3, 1)"),
            jit=True,
        ),
        Outcome(
            torch_module_call("LSTM", zeros(T, B, I, 1)),
            ValueError,
            "Expected input to be 2D or 3D, got 4D instead",
        ),
    ),
    "nnx.LSTM: integer input": (
        Outcome(
            nnx_call(nnx_lstm, zeros(T, B, I, dtype=np.int32)),
            TypeError,
            "expected a floating point input, got dtype int32",
            jit=True,
        ),
        Outcome(
            torch_module_call("LSTM", zeros(T, B, I, dtype=np.int32)),
            ValueError,
            "RNN input dtype (torch.int32) does not match weight dtype (torch.float32)",
        ),
    ),
    "nnx.LSTM: numpy float64 input without jax_enable_x64": (
        Outcome(lambda _: nnx_float64_input(), None, "JAX warns and computes in float32"),
        Outcome(
            torch_module_call("LSTM", zeros(T, B, I, dtype=np.float64)),
            ValueError,
            "RNN input dtype (torch.float64) does not match weight dtype (torch.float32)",
        ),
    ),
    "nnx.LSTM: h_0 of another batch size": (
        Outcome(
            nnx_call(nnx_lstm, X, (zeros(1, B + 1, H), zeros(1, B + 1, H))),
            ValueError,
            ("LSTM: expected h_0 of shape (1, 2, 4)", "got (1, 3, 4)"),
            jit=True,
        ),
        Outcome(
            torch_module_call("LSTM", X, t(zeros(1, B + 1, H), zeros(1, B + 1, H))),
            RuntimeError,
            "Expected hidden[0] size (1, 2, 4), got [1, 3, 4]",
        ),
    ),
    "nnx.LSTM: (c_0, h_0) instead of (h_0, c_0), with proj_size": (
        Outcome(
            nnx_call(lambda: nnx_lstm(proj_size=P), X, (zeros(1, B, H), zeros(1, B, P))),
            ValueError,
            ("expected h_0 of shape (1, 2, 2)", "got (1, 2, 4)"),
            jit=True,
        ),
        Outcome(
            torch_module_call("LSTM", X, t(zeros(1, B, H), zeros(1, B, P)), proj_size=P),
            RuntimeError,
            "Expected hidden[0] size (1, 2, 2), got [1, 2, 4]",
        ),
    ),
    "nnx.LSTM: one array as the initial state, not a pair": (
        Outcome(
            nnx_call(nnx_lstm, X, zeros(1, B, H)),
            TypeError,
            "expected initial_state as a pair (h_0, c_0), got a ndarray",
        ),
        Outcome(
            torch_module_call("LSTM", X, torch.zeros(1, B, H)),
            IndexError,
            "index 1 is out of bounds",
        ),
    ),
    "nnx.LSTM: h_0 a torch tensor on another device (meta)": (
        Outcome(
            nnx_call(nnx_lstm, X, (META, META)),
            ValueError,
            "expected h_0 as an array or a CPU torch tensor, got a torch tensor on device meta",
        ),
        Outcome(
            torch_module_call("LSTM", X, (META, META)),
            RuntimeError,
            "Input and hidden tensors are not at the same device",
        ),
    ),
    "nnx.LSTM: CPU torch tensors as input, initial state and seq_lengths": (
        Outcome(
            lambda _: nnx_tensors_as_numpy(),
            None,
            "read as numpy, same results (eagerly: nnx.jit itself refuses tensors)",
        ),
        Outcome(
            torch_module_call("LSTM", TX, t(zeros(1, B, H), zeros(1, B, H))),
            None,
            "the native type",
        ),
    ),
    "nnx.LSTM: a torch PackedSequence as input": (
        Outcome(
            lambda _: nnx_lstm()(torch.nn.utils.rnn.pack_padded_sequence(TX, [5, 3])),
            TypeError,
            ("got a torch PackedSequence", "the padded batch and seq_lengths=lengths"),
        ),
        Outcome(torch_packed_call([5, 3]), None, "its packed input"),
    ),
    "nnx.LSTM: a seq_length of 0 or beyond T": (
        Outcome(
            nnx_call(nnx_lstm, X, seq_lengths=np.array([0, T + 1])),
            ValueError,
            "LSTM: every seq_length must be in [1, T=5], got [0, 6]",
        ),
        Outcome(
            torch_packed_call([T + 1, 0]),
            RuntimeError,
            "Length of all samples has to be greater than 0",
        ),
    ),
    "nnx.LSTM: seq_lengths out of range under nnx.jit (values unknown)": (
        Outcome(
            lambda _: nnx_traced_lengths_out_of_range(), None, "rows with such lengths are NaN"
        ),
        Outcome(None, None, "(no tracing: values always checked)"),
    ),
    "nnx.LSTM: a seq_length per row too few or too many": (
        Outcome(
            nnx_call(nnx_lstm, X, seq_lengths=np.array([2, 3, 4])),
            ValueError,
            "expected 2 seq_lengths (one per batch row), got 3",
            jit=True,
        ),
        Outcome(
            torch_packed_call([4, 3, 2]),
            RuntimeError,
            "Expected `len(lengths)` to be equal to batch_size, but got 3 (batch_size=2)",
        ),
    ),
    "nnx.LSTM: seq_lengths not sorted": (
        Outcome(lambda _: nnx_unsorted_lengths(), None, "any order, as enforce_sorted=False"),
        Outcome(
            torch_packed_call([2, 5]),
            RuntimeError,
            "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True",
        ),
    ),
    "nnx.LSTM: dropout in training mode without a 'dropout' stream": (
        Outcome(
            nnx_call(lambda: lstm_jax.nnx.LSTM(I, H, 2, dropout=0.5, rngs=nnx.Rngs(params=0)), X),
            ValueError,
            ("needs a 'dropout' PRNG key", "training mode", "has no 'dropout' stream"),
            jit=True,
        ),
        Outcome(None, None, "(no such thing: torch draws from its global generator)"),
    ),
    "nnx.LSTM: rngs= of a call that is not a key (rngs=0)": (
        Outcome(
            nnx_call(lambda: nnx_lstm(num_layers=2, dropout=0.5), X, rngs=0),
            TypeError,
            "expected rngs as nnx.Rngs, an nnx.RngStream or a PRNG key",
            jit=True,
        ),
        Outcome(None, None, "(no such argument)"),
    ),
    "nnx.LSTMModeler: input of rank 4": (
        Outcome(
            nnx_call(nnx_modeler, zeros(T, B, I, 1)),
            ValueError,
            "LSTMModeler: expected a 1-D (T,) or 2-D (T, I) sequence or a 3-D batch",
            jit=True,
        ),
        Outcome(
            torch_call(zeros(T, B, I, 1)),
            ValueError,
            "LSTMModeler: expected a 1-D (T,) or 2-D (T, I) sequence or a 3-D batch",
        ),
    ),
    "nnx.LSTMModeler: stored hidden_cell of another batch size": (
        Outcome(
            nnx_modeler_call((zeros(1, 3, H), zeros(1, 3, H))),
            ValueError,
            ("LSTMModeler: expected h_0 of shape (1, 2, 4)", "got (1, 3, 4)"),
            jit=True,
        ),
        Outcome(
            torch_call(X, t(zeros(1, 3, H), zeros(1, 3, H))),
            ValueError,
            ("LSTMModeler: expected h_0 of shape (1, 2, 4)", "got (1, 3, 4)"),
        ),
    ),
    "nnx.LSTMModeler: hidden_cell (c, h), with proj_size": (
        Outcome(
            nnx_modeler_call((zeros(1, 1, H), zeros(1, 1, P)), proj_size=P),
            ValueError,
            ("LSTMModeler: expected h_0 of shape (1, 2, 2)", "got (1, 2, 4)"),
            jit=True,
        ),
        Outcome(
            torch_call(X, t(zeros(1, 1, H), zeros(1, 1, P)), proj_size=P),
            ValueError,
            ("LSTMModeler: expected h_0 of shape (1, 2, 2)", "got (1, 2, 4)"),
        ),
    ),
    "nnx.LSTMModeler: hidden_cell set to one array": (
        Outcome(
            nnx_modeler_call(zeros(1, 1, H)),
            TypeError,
            "LSTMModeler: expected hidden_cell as a pair (h, c) or None, got a ndarray",
        ),
        Outcome(
            torch_call(X, torch.zeros(1, 1, H)),
            TypeError,
            "LSTMModeler: expected hidden_cell as a pair (h, c), got a Tensor",
        ),
    ),
    "nnx.LSTMModeler: hidden_cell torch tensors on another device (meta)": (
        Outcome(
            nnx_modeler_call((META, META)),
            ValueError,
            "LSTMModeler: expected hidden_cell as an array or a CPU torch tensor, got a torch "
            "tensor on device meta",
        ),
        Outcome(
            torch_call(X, (META, META)),
            ValueError,
            "LSTMModeler: expected hidden_cell h on device cpu (the parameters'), got meta",
        ),
    ),
    "nnx.LSTMModeler: hidden_cell None": (
        Outcome(lambda _: nnx_hidden_cell_none(), None, "zeros; the new state is stored"),
        Outcome(lambda _: none_is_zeros_torch(), None, "zeros, as nn.LSTM(x, None)"),
    ),
    "nnx.LSTMModeler: a seq_length of 0 or beyond T": (
        Outcome(
            nnx_call(nnx_modeler, X, seq_lengths=np.array([0, T + 1])),
            ValueError,
            "LSTMModeler: every seq_length must be in [1, T=5], got [0, 6]",
        ),
        Outcome(
            torch_call(X, None, [0, T + 1]),
            ValueError,
            "LSTMModeler: every seq_length must be in [1, T=5], got [0, 6]",
        ),
    ),
    "nnx.LSTMCell: input feature size differs from input_size": (
        Outcome(
            nnx_call(nnx_cell, zeros(B, I + 1)),
            ValueError,
            "LSTMCell: expected input of size 3 in its last axis, got shape (2, 4)",
            jit=True,
        ),
        Outcome(
            torch_module_call("LSTMCell", zeros(B, I + 1)),
            RuntimeError,
            "input has inconsistent input_size: got 4 expected 3",
        ),
    ),
    "nnx.LSTMCell: a sequence (T, B, I) given to the cell": (
        Outcome(
            nnx_call(nnx_cell, X),
            ValueError,
            "LSTMCell: expected input to be 1-D (I,) or 2-D (B, I), got 3-D input",
        ),
        Outcome(
            torch_module_call("LSTMCell", X),
            ValueError,
            "LSTMCell: Expected input to be 1D or 2D, got 3D instead",
        ),
    ),
    "nnx.LSTMCell: h of another batch size": (
        Outcome(
            nnx_call(nnx_cell, zeros(B, I), (zeros(B + 1, H), zeros(B + 1, H))),
            ValueError,
            "LSTMCell: expected h of shape (2, 4) for input of shape (2, 3), got (3, 4)",
            jit=True,
        ),
        Outcome(
            torch_module_call("LSTMCell", zeros(B, I), t(zeros(B + 1, H), zeros(B + 1, H))),
            RuntimeError,
            "Input batch size 2 doesn't match hidden0 batch size 3",
        ),
    ),
    "nnx.LSTMCell: one array as the state, not a pair": (
        Outcome(
            nnx_call(nnx_cell, zeros(B, I), zeros(B, H)),
            TypeError,
            "LSTMCell: expected state as a pair (h, c), got a ndarray",
        ),
        Outcome(
            torch_module_call("LSTMCell", zeros(B, I), torch.zeros(B, H)),
            TypeError,
            "must be tuple of Tensors, not Tensor",
        ),
    ),
    "nnx.Linear: input feature size differs from in_features": (
        Outcome(
            nnx_call(nnx_linear, zeros(T, I + 1)),
            ValueError,
            "Linear: expected input with last dimension 3 (in_features), got shape (5, 4)",
            jit=True,
        ),
        Outcome(
            torch_module_call("Linear", zeros(T, I + 1), sizes=(I, 2)),
            RuntimeError,
            "mat1 and mat2 shapes cannot be multiplied (5x4 and 3x2)",
        ),
    ),
    "nnx.Linear: integer input": (
        Outcome(
            nnx_call(nnx_linear, zeros(T, I, dtype=np.int32)),
            TypeError,
            "Linear: expected a floating point input, got dtype int32",
            jit=True,
        ),
        Outcome(
            torch_module_call("Linear", zeros(T, I, dtype=np.int32), sizes=(I, 2)),
            RuntimeError,
            "mat1 and mat2 must have the same dtype",
        ),
    ),
}


def nnx_built(make: Callable[..., object], *args: object, **kwargs: object):
    """``run(_)`` building ``make(*args, **kwargs, rngs=nnx.Rngs(0))``."""
    return construct(lambda: make(*args, **kwargs, rngs=nnx_rngs()))


NO_RNGS = "(no rngs: torch draws from its global generator)"
NNX_CONSTRUCTORS = {
    "nnx.LSTM: hidden_size 0": (
        Outcome(
            nnx_built(lstm_jax.nnx.LSTM, I, 0),
            ValueError,
            "hidden_size must be greater than or equal to 1, got 0",
        ),
        Outcome(
            construct(lambda: torch.nn.LSTM(I, 0)),
            ValueError,
            "hidden_size must be greater than zero",
        ),
    ),
    "nnx.LSTM: num_layers 2.0 (not an int)": (
        Outcome(
            nnx_built(lstm_jax.nnx.LSTM, I, H, 2.0),
            TypeError,
            "num_layers should be of type int, got: float",
        ),
        Outcome(
            construct(lambda: torch.nn.LSTM(I, H, 2.0)),
            TypeError,
            "'float' object cannot be interpreted as an integer",
        ),
    ),
    "nnx.LSTM: proj_size not below hidden_size": (
        Outcome(
            nnx_built(lstm_jax.nnx.LSTM, I, H, proj_size=H),
            ValueError,
            "proj_size has to be smaller than hidden_size, got proj_size=4 and hidden_size=4",
        ),
        Outcome(
            construct(lambda: torch.nn.LSTM(I, H, proj_size=H)),
            ValueError,
            "proj_size has to be smaller than hidden_size",
        ),
    ),
    "nnx.LSTM: dropout outside [0, 1]": (
        Outcome(
            nnx_built(lstm_jax.nnx.LSTM, I, H, dropout=1.5),
            ValueError,
            ("dropout should be a number in range [0, 1]", "got 1.5"),
        ),
        Outcome(
            construct(lambda: torch.nn.LSTM(I, H, dropout=1.5)),
            ValueError,
            "dropout should be a number in range [0, 1]",
        ),
    ),
    "nnx.LSTM: dropout with num_layers=1 (never applied)": (
        Outcome(
            construct(lambda: warns_once(lambda: nnx_lstm(dropout=0.5))),
            None,
            ("`UserWarning`, once:", DROPOUT_WARNING),
        ),
        Outcome(
            construct(lambda: warns_once(lambda: torch.nn.LSTM(I, H, dropout=0.5))),
            None,
            ("`UserWarning`, once:", DROPOUT_WARNING),
        ),
    ),
    "nnx.LSTM: no rngs, or nnx.Rngs given positionally": (
        Outcome(
            construct(lambda: lstm_jax.nnx.LSTM(I, H, nnx_rngs())),
            TypeError,
            "missing 1 required keyword-only argument: 'rngs'",
        ),
        Outcome(None, None, NO_RNGS),
    ),
    "nnx.LSTM: a seed or a key as rngs": (
        Outcome(
            construct(lambda: lstm_jax.nnx.LSTM(I, H, rngs=0)),
            TypeError,
            "LSTM: expected rngs=nnx.Rngs(...), e.g. nnx.Rngs(0), got int",
        ),
        Outcome(None, None, NO_RNGS),
    ),
    "nnx.LSTM: rngs without a 'params' stream": (
        Outcome(
            construct(lambda: lstm_jax.nnx.LSTM(I, H, rngs=nnx.Rngs(dropout=0))),
            ValueError,
            ("LSTM: expected rngs with a 'params' stream", "got nnx.Rngs with streams ['dropout']"),
        ),
        Outcome(None, None, NO_RNGS),
    ),
    "nnx.LSTM: param_dtype float64 without jax_enable_x64": (
        Outcome(
            nnx_built(lstm_jax.nnx.LSTM, I, H, param_dtype=np.float64),
            ValueError,
            "LSTM: param_dtype is float64 but JAX runs in 32-bit mode and would round it",
        ),
        Outcome(None, None, "(no such option: model.double())"),
    ),
    "nnx.LSTMModeler: output_size 0": (
        Outcome(
            nnx_built(lstm_jax.nnx.LSTMModeler, I, H, 0),
            ValueError,
            "output_size must be a positive int, got 0",
        ),
        Outcome(
            construct(lambda: lstm_torch.LSTMModeler(I, H, 0)),
            ValueError,
            "output_size must be a positive int, got 0",
        ),
    ),
    "nnx.LSTMModeler: a seed as rngs": (
        Outcome(
            construct(lambda: lstm_jax.nnx.LSTMModeler(I, H, 1, rngs=0)),
            TypeError,
            "LSTMModeler: expected rngs=nnx.Rngs(...), e.g. nnx.Rngs(0), got int",
        ),
        Outcome(None, None, NO_RNGS),
    ),
    "nnx.LSTMCell: hidden_size 0": (
        Outcome(
            nnx_built(lstm_jax.nnx.LSTMCell, I, 0),
            ValueError,
            "hidden_size must be greater than or equal to 1, got 0",
        ),
        Outcome(construct(lambda: torch.nn.LSTMCell(I, 0)), None, "a cell without units"),
    ),
    "nnx.LSTMCell: bias not a bool": (
        Outcome(
            nnx_built(lstm_jax.nnx.LSTMCell, I, H, bias=1),
            TypeError,
            "bias should be a bool, got 1",
        ),
        Outcome(construct(lambda: torch.nn.LSTMCell(I, H, bias=1)), None, "any truthy value"),
    ),
    "nnx.Linear: in_features 0": (
        Outcome(
            nnx_built(lstm_jax.nnx.Linear, 0, 2),
            ValueError,
            "Linear: in_features must be a positive int, got 0",
        ),
        Outcome(
            construct(lambda: warns_empty(lambda: torch.nn.Linear(0, 2))),
            None,
            ("`UserWarning`:", "Initializing zero-element tensors is a no-op"),
        ),
    ),
    "nnx.Linear: bias not a bool": (
        Outcome(
            nnx_built(lstm_jax.nnx.Linear, I, 2, bias="yes"),
            TypeError,
            "Linear: bias should be a bool, got 'yes'",
        ),
        Outcome(construct(lambda: torch.nn.Linear(I, 2, bias="yes")), None, "any truthy value"),
    ),
}


def warns_empty(make: Callable[[], object]) -> None:
    """``make()`` warns torch's warning for a zero-element weight."""
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        make()


# --- NNX: state dicts, compare_with_torch, checkpoints ----------------------------------------


def torch_sd(kind: str = "LSTM", *sizes: int, **options: object) -> dict[str, torch.Tensor]:
    """A torch module's ``state_dict()`` (tensors, as a user hands it over)."""
    return torch_module(kind, *sizes, **options).state_dict()


def nnx_load(make: Callable[[], nnx.Module], state_dict: Callable[[], object], strict=True):
    """``run(_)`` of ``make().load_state_dict(state_dict(), strict)``; a failure must leave
    the module as it was (all or nothing)."""

    def run(_: bool) -> object:
        module = make()
        before = module.state_dict()
        try:
            return module.load_state_dict(state_dict(), strict=strict)
        finally:
            after = module.state_dict()
            changed = [k for k in before if not np.array_equal(before[k], after[k])]
            assert not changed, f"a failed load_state_dict changed {changed}"

    return run


def torch_load(make: Callable[[], torch.nn.Module], state_dict: Callable[[], object], strict=True):
    """``run(_)`` of torch's own ``make().load_state_dict(state_dict(), strict)``."""
    return lambda _: make().load_state_dict(state_dict(), strict=strict)


def nnx_checkpoint(name: str, save: Callable[[Path], None], make: Callable[[], nnx.Module]):
    """``run(_)`` of ``lstm_jax.load_checkpoint(path, make())`` of a file ``save`` wrote;
    a failure must leave the module as it was."""

    def run(_: bool) -> object:
        path = checkpoint_dir() / f"nnx-{name}.safetensors"
        save(path)
        module = make()
        before = module.state_dict()
        try:
            return lstm_jax.load_checkpoint(path, module)
        finally:
            after = module.state_dict()
            assert all(np.array_equal(before[k], after[k]) for k in before)

    return run


def torch_checkpoint(name: str, save: Callable[[Path], None], make: Callable[[], object]):
    def run(_: bool) -> object:
        path = checkpoint_dir() / f"torch-{name}.safetensors"
        save(path)
        return lstm_torch.load_checkpoint(path, make())

    return run


def nnx_compare(torch_model: Callable[[], object], *args: object, **kwargs: object):
    return lambda _: lstm_jax.compare_with_torch(torch_model(), nnx_lstm(), *args, **kwargs)


def save_nnx(make: Callable[[], nnx.Module]) -> Callable[[Path], None]:
    return lambda path: lstm_jax.save_checkpoint(path, make())


def save_torch(make: Callable[[], object]) -> Callable[[Path], None]:
    return lambda path: lstm_torch.save_checkpoint(path, make())


NOT_JAX = "(compare_with_torch is lstm_jax's)"
NNX_TRANSFER = {
    "nnx load_state_dict: another layer count": (
        Outcome(
            nnx_load(nnx_lstm, lambda: torch_sd(num_layers=2)),
            ValueError,
            ("Error(s) in loading state_dict for LSTM", "unexpected key(s): weight_ih_l1"),
        ),
        Outcome(
            torch_load(lambda: torch_module("LSTM"), lambda: torch_sd(num_layers=2)),
            RuntimeError,
            'Unexpected key(s) in state_dict: "weight_ih_l1"',
        ),
    ),
    "nnx load_state_dict: another hidden size": (
        Outcome(
            nnx_load(nnx_lstm, lambda: torch_sd("LSTM", I, H + 1)),
            ValueError,
            "size mismatch for weight_ih_l0: expected (16, 3), got (20, 3)",
        ),
        Outcome(
            torch_load(lambda: torch_module("LSTM"), lambda: torch_sd("LSTM", I, H + 1)),
            RuntimeError,
            "size mismatch for weight_ih_l0: copying a param with shape torch.Size([20, 3])",
        ),
    ),
    "nnx load_state_dict: a key missing": (
        Outcome(
            nnx_load(nnx_lstm, lambda: _drop(torch_sd(), "bias_hh_l0")),
            ValueError,
            "missing key(s): bias_hh_l0",
        ),
        Outcome(
            torch_load(lambda: torch_module("LSTM"), lambda: _drop(torch_sd(), "bias_hh_l0")),
            RuntimeError,
            'Missing key(s) in state_dict: "bias_hh_l0"',
        ),
    ),
    "nnx load_state_dict: an nn.LSTM's state dict into the LSTMModeler": (
        Outcome(
            nnx_load(nnx_modeler, torch_sd),
            ValueError,
            ("missing key(s): lstm.weight_ih_l0", "unexpected key(s): weight_ih_l0"),
        ),
        Outcome(
            torch_load(lambda: lstm_torch.LSTMModeler(I, H, 1), torch_sd),
            RuntimeError,
            'Missing key(s) in state_dict: "lstm.weight_ih_l0"',
        ),
    ),
    "nnx load_state_dict: an nn.LSTM's state dict into the LSTMCell": (
        Outcome(
            nnx_load(nnx_cell, torch_sd),
            ValueError,
            ("missing key(s): weight_ih, weight_hh", "unexpected key(s): weight_ih_l0"),
        ),
        Outcome(
            torch_load(lambda: torch_module("LSTMCell"), torch_sd),
            RuntimeError,
            'Missing key(s) in state_dict: "weight_ih"',
        ),
    ),
    "nnx load_state_dict: strict=False and a size mismatch": (
        Outcome(
            nnx_load(nnx_lstm, lambda: torch_sd("LSTM", I, H + 1), strict=False),
            ValueError,
            "size mismatch for weight_ih_l0: expected (16, 3), got (20, 3)",
        ),
        Outcome(
            torch_load(
                lambda: torch_module("LSTM"), lambda: torch_sd("LSTM", I, H + 1), strict=False
            ),
            RuntimeError,
            "size mismatch for weight_ih_l0",
        ),
    ),
    "nnx load_state_dict: a float64 state dict without jax_enable_x64": (
        Outcome(
            nnx_load(nnx_lstm, lambda: torch_module("LSTM").double().state_dict()),
            ValueError,
            "weight_ih_l0 is float64 but JAX runs in 32-bit mode and would round it",
        ),
        Outcome(
            torch_load(
                lambda: torch_module("LSTM"), lambda: torch_module("LSTM").double().state_dict()
            ),
            None,
            "rounds it to the parameters' float32",
        ),
    ),
    "nnx load_state_dict: a bfloat16 state dict": (
        Outcome(
            nnx_load(nnx_lstm, lambda: torch_module("LSTM").bfloat16().state_dict()),
            TypeError,
            "weight_ih_l0: expected a float32 or float64 tensor, got torch.bfloat16",
        ),
        Outcome(
            torch_load(
                lambda: torch_module("LSTM"), lambda: torch_module("LSTM").bfloat16().state_dict()
            ),
            None,
            "casts it to the parameters' float32",
        ),
    ),
    'nnx load_state_dict: Flax variables {"params": ...} instead of a state dict': (
        Outcome(
            nnx_load(nnx_lstm, lambda: lstm_jax.params_from_torch(torch_sd())),
            TypeError,
            ("expected a flat torch state dict", "lstm_jax.params_to_torch(variables)"),
        ),
        Outcome(None, None, "(no such thing)"),
    ),
    "nnx load_state_dict: tensors on the meta device (no data)": (
        Outcome(
            nnx_load(nnx_lstm, lambda: {k: v.to("meta") for k, v in torch_sd().items()}),
            ValueError,
            "weight_ih_l0: expected a tensor holding data, got a torch tensor on the meta device",
        ),
        Outcome(
            torch_load(
                lambda: torch_module("LSTM"),
                lambda: {k: v.to("meta") for k, v in torch_sd().items()},
            ),
            RuntimeError,
            "Cannot copy out of meta tensor; no data!",
        ),
    ),
    "nnx load_state_dict: the torch module instead of its state_dict()": (
        Outcome(
            nnx_load(nnx_lstm, lambda: torch_module("LSTM")),
            TypeError,
            "load_state_dict: expected a mapping of parameter names to tensors or arrays, got LSTM",
        ),
        Outcome(
            torch_load(lambda: torch_module("LSTM"), lambda: torch_module("LSTM")),
            TypeError,
            "Expected state_dict to be dict-like",
        ),
    ),
    "nnx from_linen into a module of another configuration": (
        Outcome(
            lambda _: lstm_jax.nnx.from_linen(
                lstm_jax.LSTM(H),
                lstm_jax.params_from_torch(torch_sd()),
                into=lstm_jax.nnx.LSTM(I, H + 1, rngs=nnx_rngs()),
            ),
            ValueError,
            "size mismatch for weight_ih_l0: expected (20, 3), got (16, 3)",
        ),
        Outcome(None, None, "(no linen)"),
    ),
    "compare_with_torch: a torch model of another layer count": (
        Outcome(
            nnx_compare(lambda: torch_module("LSTM", num_layers=2), X),
            ValueError,
            (
                "the NNX LSTM's parameters (expected: the torch model's)",
                "missing key(s): weight_ih_l1",
            ),
        ),
        Outcome(None, None, NOT_JAX),
    ),
    "compare_with_torch: variables given with an NNX module": (
        Outcome(
            nnx_compare(lambda: torch_module("LSTM"), lstm_jax.params_from_torch(torch_sd()), X),
            TypeError,
            "the NNX LSTM holds its parameters: call compare_with_torch(torch_model, module, "
            "*args)",
        ),
        Outcome(None, None, NOT_JAX),
    ),
    "compare_with_torch: initial_state for a plain nnx.LSTM": (
        Outcome(
            nnx_compare(lambda: torch_module("LSTM"), X, initial_state=(zeros(1, B, H),) * 2),
            TypeError,
            "initial_state is the stored hidden_cell of the lecture's model",
        ),
        Outcome(None, None, NOT_JAX),
    ),
    "nnx checkpoint: an LSTM's loaded into an LSTMModeler": (
        Outcome(
            nnx_checkpoint("kind", save_nnx(nnx_lstm), nnx_modeler),
            CheckpointError,
            "saved with another configuration than the model's (file vs model): kind: LSTM vs "
            "LSTMModeler",
        ),
        Outcome(
            torch_checkpoint("kind", save_torch(lambda: torch_module("LSTM")), torch_modeler),
            lstm_torch.CheckpointError,
            "saved with another configuration than the model's (file vs model): kind: LSTM vs "
            "LSTMModeler",
        ),
    ),
    "nnx checkpoint: another layer count": (
        Outcome(
            nnx_checkpoint("layers", save_nnx(nnx_modeler), lambda: nnx_modeler(num_layers=2)),
            CheckpointError,
            "(file vs model): num_layers: 1 vs 2",
        ),
        Outcome(
            torch_checkpoint(
                "layers", save_torch(torch_modeler), lambda: lstm_torch.LSTMModeler(I, H, 1, 2)
            ),
            lstm_torch.CheckpointError,
            "(file vs model): num_layers: 1 vs 2",
        ),
    ),
    "nnx checkpoint: an LSTMCell's loaded into an LSTM": (
        Outcome(
            nnx_checkpoint("cell", save_nnx(nnx_cell), nnx_lstm),
            CheckpointError,
            "(file vs model): kind: model (LSTMCell) vs LSTM",
        ),
        Outcome(
            torch_checkpoint(
                "cell", save_torch(lambda: torch_module("LSTMCell")), lambda: torch_module("LSTM")
            ),
            lstm_torch.CheckpointError,
            "(file vs model): kind: model (LSTMCell) vs LSTM",
        ),
    ),
    "nnx save_checkpoint: variables with an NNX module": (
        Outcome(
            lambda _: lstm_jax.save_checkpoint(
                checkpoint_dir() / "nnx-vars.safetensors",
                lstm_jax.params_from_torch(torch_sd()),
                nnx_lstm(),
            ),
            TypeError,
            "the NNX LSTM holds its parameters: call save_checkpoint(path, module), without "
            "variables",
        ),
        Outcome(None, None, "(no variables: the module holds its parameters)"),
    ),
}


SECTIONS = {
    "Inputs, states and lengths": INPUTS,
    "Constructor options": OPTIONS,
    "Weight transfer (`params_from_torch` / `load_state_dict`)": TRANSFER,
    "Variables given to `apply` and `init`": VARIABLES,
    "Checkpoints": CHECKPOINTS,
    "Non-finite values": NONFINITE,
    "Flax NNX (`lstm_jax.nnx`): calls, states and lengths": NNX_CALLS,
    "Flax NNX: constructors": NNX_CONSTRUCTORS,
    "Flax NNX: state dicts, `compare_with_torch`, checkpoints": NNX_TRANSFER,
}
CATALOGUE = {
    mistake: outcomes for section in SECTIONS.values() for mistake, outcomes in section.items()
}
BACKENDS = ("lstm_jax", "lstm_torch")
# the NNX tables hold lstm_jax.nnx against torch's own modules (nn.LSTM, nn.LSTMCell,
# nn.Linear) and lstm_torch's LSTMModeler and checkpoints
NNX_BACKENDS = ("lstm_jax.nnx", "torch")
SECTION_BACKENDS = {
    section: NNX_BACKENDS if entries in (NNX_CALLS, NNX_CONSTRUCTORS, NNX_TRANSFER) else BACKENDS
    for section, entries in SECTIONS.items()
}
BACKENDS_OF = {
    mistake: SECTION_BACKENDS[section]
    for section, entries in SECTIONS.items()
    for mistake in entries
}
CASES = [
    (mistake, backend)
    for mistake, outcomes in CATALOGUE.items()
    for backend, outcome in zip(BACKENDS_OF[mistake], outcomes, strict=True)
    if outcome.run is not None
]


@pytest.fixture(scope="module", autouse=True)
def _cleanup_checkpoints():
    yield
    shutil.rmtree(checkpoint_dir(), ignore_errors=True)


# The cases that start a Python subprocess: the slow tier (CONTRIBUTING.md).
IN_A_SUBPROCESS = {("input on another device than the parameters", BACKENDS[0])}


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64")
@pytest.mark.parametrize(
    ("mistake", "backend"),
    [
        pytest.param(m, b, marks=[pytest.mark.slow] if (m, b) in IN_A_SUBPROCESS else [])
        for m, b in CASES
    ],
    ids=[f"{b}: {m}" for m, b in CASES],
)
def test_catalogue(mistake: str, backend: str) -> None:
    outcome = CATALOGUE[mistake][BACKENDS_OF[mistake].index(backend)]
    for jit in (False, True) if outcome.jit else (False,):
        if outcome.error is None:
            outcome.run(jit)
            continue
        with pytest.raises(outcome.error) as info:
            outcome.run(jit)
        assert type(info.value) is outcome.error, (
            f"{'jit: ' if jit else ''}{type(info.value).__mro__} raised, "
            f"expected exactly {outcome.error.__name__}"
        )
        assert outcome.matches(str(info.value)), f"{'jit: ' if jit else ''}{info.value}"


def readme_tables() -> str:
    """The catalogue as Markdown, one table per section: the documentation's bad-input page
    (``docs/_hooks/generated.py`` puts it there at build time)."""
    lines = []
    for section, entries in SECTIONS.items():
        jax_column, torch_column = SECTION_BACKENDS[section]
        lines += [
            f"**{section}**",
            "",
            f"| mistake | {jax_column} | {torch_column} |",
            "| --- | --- | --- |",
        ]
        for mistake, (jax_side, torch_side) in entries.items():
            lines.append(f"| {mistake} | {jax_side.cell()} | {torch_side.cell()} |")
        lines.append("")
    return "\n".join(lines)


def test_docs_page_is_this_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documentation's bad-input page is generated from these tables: the page holds
    the build hook's marker, and the hook renders exactly :func:`readme_tables`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_docs_catalogue_hook", ROOT / "docs" / "_hooks" / "generated.py"
    )
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    # the hook imports this file by path under its own name: hand it this module instead
    monkeypatch.setitem(sys.modules, "_lstm_jax_bad_input_catalogue", sys.modules[__name__])
    page = (ROOT / "docs" / "reference" / "bad-input.md").read_text()
    assert hook.MARKER in page, "docs/reference/bad-input.md lost the catalogue's marker"
    rendered = hook.on_page_markdown(page, page=None)
    assert readme_tables() in rendered and hook.MARKER not in rendered


# --- what the accepted mistakes do -----------------------------------------------------------


def test_float64_input_computes_in_the_promoted_dtype() -> None:
    """JAX computes in ``jnp.result_type(x.dtype, param_dtype)``: float64 with float64 on,
    float32 (the input rounded) in JAX's default 32-bit mode; torch refuses the mix."""
    model, variables = jax_lstm()
    x64 = np.random.default_rng(0).standard_normal((T, B, I))
    with pytest.warns(UserWarning, match="truncated to dtype float32"):
        out32, _ = model.apply(variables, x64)
    assert out32.dtype == np.float32
    np.testing.assert_array_equal(out32, model.apply(variables, x64.astype(np.float32))[0])
    with jax.enable_x64(True):
        out64, _ = model.apply(variables, x64)
    assert out64.dtype == np.float64


def test_swapped_state_without_projection_is_not_detectable() -> None:
    """Without proj_size h and c have the same shape: (c, h) runs, and gives other results
    (LSTMState(h, c) names the order; only a wrong shape can be caught)."""
    model, variables = jax_lstm()
    rng = np.random.default_rng(0)
    h, c = (rng.standard_normal((1, B, H)).astype(np.float32) for _ in range(2))
    right, _ = model.apply(variables, X, lstm_jax.LSTMState(h=h, c=c))
    swapped, _ = model.apply(variables, X, (c, h))
    assert not np.allclose(right, swapped)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_nan_propagates_as_in_torch(bidirectional: bool) -> None:
    """A NaN at step 3 of row 1 makes exactly the outputs torch makes NaN: row 1 from step
    3 on (and up to step 3 in the reverse direction), the other row untouched."""
    model, variables = jax_lstm(bidirectional=bidirectional)
    torch.manual_seed(0)
    module = torch.nn.LSTM(I, H, bidirectional=bidirectional)
    with torch.no_grad():
        ref, (ref_h, _) = module(torch.from_numpy(X_NAN))
    out, (h_n, _) = model.apply(variables, X_NAN)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref.numpy()))
    np.testing.assert_array_equal(np.isnan(h_n), np.isnan(ref_h.numpy()))
    assert np.isnan(out[3:, 1, :H]).all() and not np.isnan(out[:, 0]).any()  # forward half
    if bidirectional:  # the reverse direction meets the NaN at step 3 coming from the end
        assert np.isnan(out[:4, 1, H:]).all() and not np.isnan(out[4:, 1, H:]).any()


# --- check_finite / find_nonfinite --------------------------------------------------------------


def test_find_nonfinite_in_every_layout() -> None:
    x = np.zeros((6, 3, 2), np.float32)  # (T, B, I)
    assert lstm_jax.find_nonfinite(x) is None
    x[4, 0, 1], x[2, 2, 0], x[5, 1, 1] = np.inf, -np.inf, np.nan
    first = lstm_jax.NonFinite(row=2, step=2, feature=0, value=-np.inf, count=3)
    assert lstm_jax.find_nonfinite(x) == first
    assert lstm_jax.find_nonfinite(np.swapaxes(x, 0, 1), batch_first=True) == first
    assert lstm_jax.find_nonfinite(x[:, 0]) == (None, 4, 1, np.inf, 1)  # unbatched (T, I)
    assert lstm_jax.find_nonfinite(x[:, 0, 1]) == (None, 4, 0, np.inf, 1)  # the lecture's (T,)
    # padding past each row's length is not looked at (no backend reads it)
    found = lstm_jax.find_nonfinite(x, seq_lengths=[4, 6, 2])
    assert found[:3] == (1, 5, 1) and np.isnan(found.value) and found.count == 1
    assert lstm_jax.find_nonfinite(x, seq_lengths=[4, 5, 2]) is None
    tensor = torch.from_numpy(x).requires_grad_(True)  # torch tensors, with grad, work too
    assert lstm_torch.find_nonfinite(tensor)[:2] == (2, 2)
    assert lstm_jax.find_nonfinite(jax.numpy.asarray(x))[:2] == (2, 2)


def test_find_nonfinite_refuses_what_is_not_a_sequence_batch() -> None:
    with pytest.raises(TypeError, match="floating point input, got dtype int64"):
        lstm_jax.find_nonfinite(np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 3, 4\)"):
        lstm_jax.find_nonfinite(np.zeros((1, 2, 3, 4)))
    with pytest.raises(ValueError, match=r"expected \(2,\) integer seq_lengths"):
        lstm_jax.find_nonfinite(np.zeros((3, 2, 1)), seq_lengths=[1, 2, 3])


def test_check_finite_names_the_first_bad_step() -> None:
    lstm_jax.check_finite(X)  # all finite: nothing happens
    with pytest.raises(ValueError, match="x has 1 non-finite value") as info:
        lstm_jax.check_finite(X_NAN, name="x")
    assert "time step 3 of batch row 1 (feature 2; all 0-based)" in str(info.value)


# --- no assert for user errors -------------------------------------------------------------------


def test_no_assert_statements_in_the_packages() -> None:
    """``assert`` vanishes under ``python -O`` and says nothing useful: user errors raise."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in ("lstm_jax", "lstm_torch")
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Assert)
    ]
    assert not found, f"assert statements in {found}"


if __name__ == "__main__":
    print(readme_tables())
