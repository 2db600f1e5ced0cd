"""Shared helpers for the parity tests: configurations, model pairs, inputs, gradients.

Import it as ``import helpers`` (pytest puts ``parity_tests/`` on ``sys.path``;
the folder is not a package).

- :func:`pinned_precision` pins matmul precision on both backends (the
  ``conftest.py`` fixture enters it around every test); :func:`x64_if` turns
  JAX's float64 mode on for float64 runs.
- :class:`Case` is one configuration (torch's ``nn.LSTM`` options plus the
  input's layout and dtype). ``LSTM_GRID`` and ``MODELER_GRID`` are pairwise
  covering grids over every option value (``test_forward_parity`` checks the
  coverage).
- ``make_*`` build the torch module (seeded) and its JAX mirror; weights go
  across with ``lstm_jax.params_from_torch``.
- :func:`torch_loss_grads` and :func:`jax_loss_grads` differentiate the same
  scalar loss ``sum_k <output_k, cotangent_k>`` on each side; :func:`parity_run`
  does both for one forward of each backend, and :func:`lstm_run` /
  :func:`modeler_run` do a grid case once (cached) for the forward and gradient
  tests. :func:`assert_all_close` compares named arrays within a tolerance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import torch

import lstm_jax
import lstm_torch
from lstm_jax.common.config import LSTMConfig
from lstm_jax.common.tolerances import scaled_error
from lstm_jax.interop import precision
from lstm_jax.interop.transfer import flatten

Arrays = dict[str, np.ndarray]

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


# --- precision ---------------------------------------------------------------------------


# the one pinning of both backends (JAX "highest"; torch's CUDA, cuDNN and oneDNN "ieee")
pinned_precision = precision.pinned_precision
precision_is_pinned = precision.precision_is_pinned


def x64_if(dtype: object) -> contextlib.AbstractContextManager:
    """``jax.enable_x64()`` for float64 runs, nothing for float32."""
    return jax.enable_x64() if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


# --- configurations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One configuration: ``nn.LSTM`` options, the input's layout and dtype.

    ``x_ndim``: 3 is a batch (T, B, I) ((B, T, I) with ``batch_first``); 2 is one
    unbatched (T, I) sequence for the LSTM, the lecture's 2-D view for the modeler;
    1 is the modeler's 1-D (T,) view (``input_size`` 1).
    ``state``: ``"zero"`` (none given), ``"given"`` (random h_0, c_0) or, for the
    modeler only, ``"stored1"``: a batch-1 hidden_cell broadcast to the batch.
    """

    hidden_size: int = 5
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    x_ndim: int = 3
    state: str = "zero"
    seq_len: int = 6
    batch_size: int = 4
    input_size: int = 3
    output_size: int = 2
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.x_ndim == 1 and self.input_size != 1:
            raise ValueError(f"a 1-D input needs input_size 1, got {self.input_size}")
        if self.state == "stored1" and self.x_ndim != 3:
            raise ValueError("a stored batch-1 hidden_cell is only broadcast for a 3-D batch")

    @property
    def id(self) -> str:
        """A readable pytest id, e.g. ``L2-bi-P2-nobias-bf-3d-h0given-T6-H5-f64``."""
        return "-".join(
            [
                f"L{self.num_layers}",
                "bi" if self.bidirectional else "uni",
                f"P{self.proj_size}" if self.proj_size else "noproj",
                "bias" if self.bias else "nobias",
                "bf" if self.batch_first else "tf",
                f"{self.x_ndim}d",
                f"h0{self.state}",
                f"T{self.seq_len}",
                f"H{self.hidden_size}",
                "f64" if self.dtype == "float64" else "f32",
            ]
            + ([f"p{self.dropout}"] if self.dropout else [])
        )

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.np_dtype]

    @property
    def options(self) -> dict[str, object]:
        """Keyword options shared by ``nn.LSTM``, ``lstm_jax.LSTM`` and both modelers."""
        sizes = ("hidden_size", "input_size")
        names = [f.name for f in dataclasses.fields(LSTMConfig) if f.name not in sizes]
        return {name: getattr(self, name) for name in names}

    @property
    def config(self) -> LSTMConfig:
        return LSTMConfig(hidden_size=self.hidden_size, input_size=self.input_size, **self.options)

    @property
    def x_shape(self) -> tuple[int, ...]:
        T, B, I = self.seq_len, self.batch_size, self.input_size
        if self.x_ndim == 1:
            return (T,)
        if self.x_ndim == 2:
            return (T, I)
        return (B, T, I) if self.batch_first else (T, B, I)

    def with_(self, **changes: object) -> Case:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def case_factors(case: Case) -> dict[str, object]:
    """The grid's factors of a case (what the pairwise coverage is about)."""
    return dict(
        num_layers=case.num_layers,
        bidirectional=case.bidirectional,
        proj=case.proj_size > 0,
        bias=case.bias,
        batch_first=case.batch_first,
        x_ndim=case.x_ndim,
        state=case.state,
        long=case.seq_len > 1,
        wide=case.hidden_size > 1,
        dtype=case.dtype,
    )


@dataclass(frozen=True)
class Factors:
    """The levels of each factor and which combinations exist."""

    levels: dict[str, tuple[object, ...]]

    def feasible(self, assignment: Mapping[str, object]) -> bool:
        if assignment.get("proj") and assignment.get("wide") is False:
            return False  # proj_size < hidden_size: no projection of a hidden size of 1
        return not (assignment.get("state") == "stored1" and assignment.get("x_ndim", 3) != 3)

    def uncovered_pairs(self, cases: list[Case]) -> list[tuple[tuple[str, object], ...]]:
        """Every feasible pair of factor levels that no case has."""
        seen = set()
        for case in cases:
            f = case_factors(case)
            seen |= {((a, f[a]), (b, f[b])) for a, b in itertools.combinations(self.levels, 2)}
        missing = []
        for a, b in itertools.combinations(self.levels, 2):
            for va, vb in itertools.product(self.levels[a], self.levels[b]):
                pair = ((a, va), (b, vb))
                if self.feasible(dict(pair)) and pair not in seen:
                    missing.append(pair)
        return missing


_COMMON_LEVELS = dict(
    num_layers=(1, 2, 3),
    bidirectional=(False, True),
    proj=(False, True),
    bias=(True, False),
    batch_first=(False, True),
    long=(False, True),
    wide=(False, True),
    dtype=("float32", "float64"),
)
LSTM_FACTORS = Factors({**_COMMON_LEVELS, "x_ndim": (2, 3), "state": ("zero", "given")})
MODELER_FACTORS = Factors(
    {**_COMMON_LEVELS, "x_ndim": (1, 2, 3), "state": ("zero", "given", "stored1")}
)


def _case(
    L: int, bi: bool, P: int, bias: bool, bf: bool, ndim: int, state: str, T: int, H: int, dt: str
) -> Case:
    return Case(
        hidden_size=H,
        num_layers=L,
        bidirectional=bi,
        proj_size=P,
        bias=bias,
        batch_first=bf,
        x_ndim=ndim,
        state=state,
        seq_len=T,
        input_size=1 if ndim == 1 else 3,
        output_size=1 if ndim == 1 else 2,
        dtype=dt,
    )


# Pairwise covering (a greedy pick over the full product), then cases with every
# option on at once, where the interactions (bidirectional stacks of projected
# layers fed from an initial state) live.
# fmt: off
LSTM_GRID = [
    #     L  bi     P  bias   bf     nd state    T  H  dtype
    _case(1, False, 0, True,  False, 3, "zero",  1, 1, "float32"),
    _case(1, True,  2, False, True,  2, "given", 6, 5, "float64"),
    _case(2, False, 0, True,  False, 3, "given", 6, 5, "float64"),
    _case(3, True,  0, False, True,  2, "zero",  1, 1, "float32"),
    _case(2, False, 2, True,  True,  2, "zero",  1, 5, "float32"),
    _case(3, False, 2, False, False, 3, "zero",  6, 5, "float64"),
    _case(2, True,  0, True,  False, 3, "given", 1, 1, "float64"),
    _case(3, False, 0, True,  False, 2, "given", 6, 1, "float32"),
    _case(2, False, 0, False, True,  3, "zero",  1, 1, "float32"),
    _case(2, True,  2, True,  True,  3, "given", 6, 5, "float32"),
    _case(3, True,  2, True,  False, 3, "given", 6, 5, "float64"),
]
MODELER_GRID = [
    #     L  bi     P  bias   bf     nd state      T  H  dtype
    _case(1, False, 0, True,  False, 3, "zero",    1, 1, "float32"),
    _case(1, True,  2, False, True,  2, "given",   6, 5, "float64"),
    _case(2, False, 0, True,  False, 1, "given",   6, 5, "float64"),
    _case(3, False, 2, False, True,  3, "stored1", 1, 5, "float32"),
    _case(2, True,  0, False, True,  1, "zero",    1, 1, "float32"),
    _case(3, True,  0, True,  False, 3, "stored1", 6, 1, "float64"),
    _case(2, False, 2, True,  False, 2, "zero",    1, 5, "float64"),
    _case(3, False, 0, True,  True,  2, "given",   1, 1, "float32"),
    _case(3, False, 2, False, False, 1, "zero",    6, 5, "float32"),
    _case(2, False, 0, True,  False, 3, "stored1", 1, 1, "float32"),
    _case(1, False, 0, True,  False, 3, "stored1", 6, 5, "float32"),
    _case(1, False, 0, True,  False, 1, "zero",    6, 5, "float32"),  # the lecture's shape
    _case(2, True,  2, True,  True,  3, "given",   6, 5, "float32"),
]
# fmt: on


def ids(cases: list[Case]) -> list[str]:
    """pytest ids for a list of cases."""
    return [case.id for case in cases]


# --- models and inputs -------------------------------------------------------------------


def make_torch_lstm(case: Case) -> torch.nn.LSTM:
    """``torch.nn.LSTM`` for the case, initialised from ``case.seed``, in the case's dtype."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.seed)
        module = torch.nn.LSTM(case.input_size, case.hidden_size, **case.options)
    return module.to(case.torch_dtype)


def make_torch_modeler(case: Case) -> lstm_torch.LSTMModeler:
    """The lecture's ``LSTMModeler`` for the case, initialised from ``case.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.seed)
        module = lstm_torch.LSTMModeler(
            case.input_size, case.hidden_size, case.output_size, **case.options
        )
    return module.to(case.torch_dtype)


def make_jax_lstm(case: Case) -> lstm_jax.LSTM:
    return lstm_jax.LSTM(case.hidden_size, **case.options)


def make_jax_modeler(case: Case) -> lstm_jax.LSTMModeler:
    return lstm_jax.LSTMModeler(case.input_size, case.hidden_size, case.output_size, **case.options)


def state_batch(case: Case, modeler: bool = False) -> int | None:
    """The batch axis of h_0/c_0: B for a batch, 1 for a stored batch-1 hidden_cell and
    the modeler's 1-D/2-D view (one sequence of batch 1), None for an unbatched LSTM."""
    if case.x_ndim == 3:
        return 1 if case.state == "stored1" else case.batch_size
    return 1 if modeler else None


def random_inputs(case: Case, *, modeler: bool = False, seed: int | None = None) -> Arrays:
    """``{"x": ..., "h_0": ..., "c_0": ...}`` (no states for ``state="zero"``): numpy
    arrays in the case's dtype, shaped for ``nn.LSTM`` or (``modeler``) the modeler."""
    rng = np.random.default_rng(case.seed if seed is None else seed)
    arrays = {"x": rng.standard_normal(case.x_shape)}
    if case.state != "zero":
        h_shape, c_shape = case.config.state_shapes(state_batch(case, modeler))
        arrays["h_0"] = 0.5 * rng.standard_normal(h_shape)
        arrays["c_0"] = 0.5 * rng.standard_normal(c_shape)
    return {k: v.astype(case.np_dtype) for k, v in arrays.items()}


def random_params(config: LSTMConfig, dtype: object = np.float32, seed: int = 0) -> Arrays:
    """Torch-named LSTM weights for ``config`` (with ``input_size``) drawn from torch's
    U(-1/sqrt(H), 1/sqrt(H)) with numpy: parameters without a model or ``init``."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(config.hidden_size)
    return {
        name: rng.uniform(-bound, bound, shape).astype(dtype)
        for name, shape in config.param_shapes().items()
    }


def random_cotangents(outputs: Mapping[str, np.ndarray], seed: int = 1) -> Arrays:
    """A standard normal array shaped and typed as each output."""
    rng = np.random.default_rng(seed)
    return {
        k: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype) for k, v in outputs.items()
    }


# --- the same scalar loss on both sides ---------------------------------------------------


def torch_loss_grads(
    module: torch.nn.Module,
    outputs: Mapping[str, torch.Tensor],
    inputs: Mapping[str, torch.Tensor],
    cotangents: Mapping[str, np.ndarray],
) -> Arrays:
    """Backpropagate ``sum_k <outputs[k], cotangents[k]>``; return the gradient of every
    parameter (by ``named_parameters`` name, torch's state_dict key) and of every input
    (tensors created with ``requires_grad=True``)."""
    loss = sum((outputs[k] * torch.from_numpy(cotangents[k])).sum() for k in outputs)
    module.zero_grad(set_to_none=True)
    loss.backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    grads.update({name: t.grad for name, t in inputs.items()})
    missing = [name for name, g in grads.items() if g is None]
    if missing:
        raise AssertionError(f"torch computed no gradient for {missing}")
    return {name: g.detach().cpu().numpy() for name, g in grads.items()}


def jax_loss_grads(
    fn: Callable[[dict, dict], Mapping[str, jax.Array]],
    variables: dict,
    inputs: Mapping[str, np.ndarray],
    cotangents: Mapping[str, np.ndarray],
    *,
    compiler_options: Mapping[str, object] | None = None,
) -> tuple[Arrays, Arrays]:
    """Differentiate ``sum_k <fn(variables, inputs)[k], cotangents[k]>`` with one
    ``jax.jit``-compiled ``value_and_grad`` (``compiler_options`` go to XLA).

    Returns:
        the outputs and the gradients: of every parameter under its flattened
        (torch) name and of every input under its own name, all as numpy arrays.
    """

    def loss(variables: dict, inputs: dict, cotangents: dict) -> tuple[jax.Array, dict]:
        outputs = dict(fn(variables, inputs))
        return sum(jnp.vdot(outputs[k], cotangents[k]) for k in outputs), outputs

    grad_fn = jax.jit(
        jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), compiler_options=compiler_options
    )
    inputs = {k: jnp.asarray(v) for k, v in inputs.items()}
    (_, outputs), (g_vars, g_inputs) = grad_fn(variables, inputs, dict(cotangents))
    grads = {k: np.asarray(v) for k, v in flatten(g_vars["params"]).items()}
    grads.update({k: np.asarray(v) for k, v in g_inputs.items()})
    return {k: np.asarray(v) for k, v in outputs.items()}, grads


@dataclass(frozen=True)
class ParityRun:
    """One case run on both backends: outputs and gradients by name."""

    torch_outputs: Arrays
    jax_outputs: Arrays
    torch_grads: Arrays
    jax_grads: Arrays


def _initial_state(inputs: Mapping[str, object]) -> tuple[object, object] | None:
    return (inputs["h_0"], inputs["c_0"]) if "h_0" in inputs else None


def parity_run(
    case: Case,
    module: torch.nn.Module,
    inputs: Arrays,
    torch_forward: Callable[[torch.nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    jax_forward: Callable[[dict, dict[str, jax.Array]], Mapping[str, jax.Array]],
    *,
    compiler_options: Mapping[str, object] | None = None,
) -> ParityRun:
    """Run one forward on each side, the JAX one with ``module``'s weights copied, and
    differentiate the same scalar loss (random cotangents on every named output).

    Arguments:
        inputs: numpy arrays by name; torch gets them as leaf tensors with
            ``requires_grad``, JAX differentiates with respect to them.
        torch_forward: ``(module, tensors) -> {name: tensor}``.
        jax_forward: ``(variables, arrays) -> {name: array}``, the same names.
        compiler_options: XLA's, for the JAX side (:func:`jax_loss_grads`).
    """
    with pinned_precision():
        t_in = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
        t_out = torch_forward(module, t_in)
        torch_outputs = {k: v.detach().cpu().numpy() for k, v in t_out.items()}
        cotangents = random_cotangents(torch_outputs)
        torch_grads = torch_loss_grads(module, t_out, t_in, cotangents)
        with x64_if(case.dtype):
            variables = lstm_jax.params_from_torch(module.state_dict())
            jax_outputs, jax_grads = jax_loss_grads(
                jax_forward, variables, inputs, cotangents, compiler_options=compiler_options
            )
    return ParityRun(torch_outputs, jax_outputs, torch_grads, jax_grads)


@functools.cache
def lstm_run(case: Case) -> ParityRun:
    """``torch.nn.LSTM`` against ``lstm_jax.LSTM`` for one case: outputs ``output``,
    ``h_n``, ``c_n`` and gradients. Cached: the forward and gradient tests share a run."""
    model = make_jax_lstm(case)

    def torch_forward(module: torch.nn.Module, t: dict) -> dict[str, torch.Tensor]:
        out, (h_n, c_n) = module(t["x"], _initial_state(t))
        return {"output": out, "h_n": h_n, "c_n": c_n}

    def jax_forward(variables: dict, a: dict) -> dict[str, jax.Array]:
        out, final = model.apply(variables, a["x"], _initial_state(a))
        return {"output": out, "h_n": final.h, "c_n": final.c}

    module = make_torch_lstm(case)
    return parity_run(case, module, random_inputs(case), torch_forward, jax_forward)


@functools.cache
def modeler_run(case: Case) -> ParityRun:
    """``lstm_torch.LSTMModeler`` against ``lstm_jax.LSTMModeler`` for one case: outputs
    ``y`` and the new hidden_cell ``h``, ``c`` and gradients. Cached like :func:`lstm_run`."""
    model = make_jax_modeler(case)

    def torch_forward(module: torch.nn.Module, t: dict) -> dict[str, torch.Tensor]:
        if "h_0" in t:
            module.hidden_cell = _initial_state(t)
        y = module(t["x"])
        h, c = module.hidden_cell
        return {"y": y, "h": h, "c": c}

    def jax_forward(variables: dict, a: dict) -> dict[str, jax.Array]:
        y, (h, c) = model.apply(variables, a["x"], _initial_state(a))
        return {"y": y, "h": h, "c": c}

    module = make_torch_modeler(case)
    inputs = random_inputs(case, modeler=True)
    return parity_run(case, module, inputs, torch_forward, jax_forward)


def assert_all_close(
    actual: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    tol: float,
    what: str = "",
) -> None:
    """Same names, shapes and dtypes, and every array within ``tol`` (scaled error,
    see ``lstm_jax.common.tolerances``); one message listing every failure."""
    if set(actual) != set(reference):
        raise AssertionError(
            f"{what}: names differ: only actual {sorted(set(actual) - set(reference))}, "
            f"only reference {sorted(set(reference) - set(actual))}"
        )
    failures = []
    for name, ref in reference.items():
        got = np.asarray(actual[name])
        ref = np.asarray(ref)
        if got.shape != ref.shape or got.dtype != ref.dtype:
            failures.append(f"{name}: got {got.dtype}{got.shape}, expected {ref.dtype}{ref.shape}")
            continue
        err = scaled_error(got, ref)
        if not err <= tol:
            failures.append(f"{name}: scaled error {err:.3g} > {tol:.1g}")
    if failures:
        raise AssertionError(f"{what}: " + "; ".join(failures))
