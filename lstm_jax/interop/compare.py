"""Check that a JAX model computes what its torch original computes: forward, state, gradients.

:func:`compare_with_torch` runs the torch model and the Flax model on the same
input and reports the largest differences. It needs torch (the ``torch`` extra,
``pip install "lstm-jax[torch]"``), imported only when the function runs, so
``import lstm_jax`` stays free of torch.

Example::

    report = lstm_jax.compare_with_torch(torch_model, jax_model, variables, x)
    print(report)          # one row per output, state and gradient
    assert report.ok       # every scaled difference within lstm_jax.common.tolerances
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.common.config import check_param_shapes
from lstm_jax.common.tolerances import FORWARD, GRADIENT, scaled_error
from lstm_jax.interop.transfer import flatten, to_numpy, unflatten
from lstm_jax.linen.modules import LSTM, LSTMModeler

__all__ = ["Difference", "ParityReport", "compare_with_torch", "pinned_precision"]

GROUPS = ("forward", "final state", "gradient")


@dataclass(frozen=True)
class Difference:
    """One compared quantity.

    Attributes:
        name: "output", "h_n", "c_n", or "grad <input | h_0 | c_0 | state_dict key>".
        group: "forward", "final state" or "gradient".
        max_abs: max |jax - torch|.
        scaled: max |jax - torch| / max |torch| (``lstm_jax.common.tolerances.scaled_error``).
        tolerance: the bound on ``scaled`` for this group and dtype.
    """

    name: str
    group: str
    max_abs: float
    scaled: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.scaled <= self.tolerance)  # False for NaN


@dataclass(frozen=True)
class ParityReport:
    """The differences between a torch model and its JAX mirror on one input.

    Attributes:
        kind: "LSTM" or "LSTMModeler".
        dtype: the parameters' dtype (float32 or float64).
        differences: one :class:`Difference` per output, final state and gradient.
    """

    kind: str
    dtype: np.dtype
    differences: tuple[Difference, ...]

    @property
    def ok(self) -> bool:
        """Whether every scaled difference is within its tolerance."""
        return all(d.ok for d in self.differences)

    def largest(self, group: str) -> Difference:
        """The difference of ``group`` ("forward", "final state", "gradient") that is
        largest relative to its tolerance."""
        members = [d for d in self.differences if d.group == group]
        if not members:
            raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
        return max(members, key=lambda d: np.inf if np.isnan(d.scaled) else d.scaled)

    @property
    def forward(self) -> Difference:
        return self.largest("forward")

    @property
    def final_state(self) -> Difference:
        return self.largest("final state")

    @property
    def gradient(self) -> Difference:
        return self.largest("gradient")

    def __str__(self) -> str:
        width = max(len(d.name) for d in self.differences)
        lines = [
            f"lstm_jax.{self.kind} against torch, {self.dtype}: differences scaled by "
            f"max|torch| (tolerances: forward {FORWARD[self.dtype]:.0e}, "
            f"gradient {GRADIENT[self.dtype]:.0e})",
            f"{'quantity':<{width}}  {'max|jax-torch|':>14}  {'scaled':>9}  {'tolerance':>9}",
        ]
        for d in self.differences:
            lines.append(
                f"{d.name:<{width}}  {d.max_abs:>14.3e}  {d.scaled:>9.2e}  {d.tolerance:>9.0e}"
                f"  {'ok' if d.ok else 'FAIL'}"
            )
        worst = {g: self.largest(g) for g in GROUPS}
        summary = ", ".join(f"{g} {d.scaled:.2e} ({d.name})" for g, d in worst.items())
        lines.append(f"largest: {summary}")
        failing = [d.name for d in self.differences if not d.ok]
        lines.append(
            "result: OK, within tolerance"
            if not failing
            else f"result: FAIL, beyond tolerance: {', '.join(failing)}"
        )
        return "\n".join(lines)


# torch's per-backend float32 settings ("ieee", "tf32", "bf16" or "none": inherit): CUDA
# matmuls, cuDNN convolutions and RNNs (TF32 by default), oneDNN on the CPU (bf16 under
# set_float32_matmul_precision("medium")). The newer API alone: torch refuses to read the
# legacy flags (allow_tf32, get_float32_matmul_precision) after the two APIs are mixed.
TORCH_FP32_PRECISION = (
    ("cuda", "matmul"),
    ("cudnn", "conv"),
    ("cudnn", "rnn"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
)


@contextlib.contextmanager
def pinned_precision() -> Iterator[None]:
    """Full float32 arithmetic on both sides while inside: JAX matmuls at "highest",
    every torch backend at "ieee" (no TF32, no bf16 passes). The previous settings come
    back on exit. Needs torch."""
    import torch  # the torch extra; imported here so lstm_jax does not need it

    settings = [getattr(getattr(torch.backends, a), b) for a, b in TORCH_FP32_PRECISION]
    saved = [s.fp32_precision for s in settings]
    try:
        for s in settings:
            s.fp32_precision = "ieee"
        with jax.default_matmul_precision("highest"):
            yield
    finally:
        for s, value in zip(settings, saved, strict=True):
            s.fp32_precision = value


def compare_with_torch(
    torch_model: Any,
    jax_model: LSTM | LSTMModeler,
    variables: Mapping[str, Any],
    x: Any,
    *,
    initial_state: tuple[Any, Any] | None = None,
    seed: int = 0,
) -> ParityReport:
    """Run both models on ``x`` and report the largest differences.

    Compared: the output, the final state (h_n, c_n), and the gradients of the
    scalar ``sum(output * g_out) + sum(h_n * g_h) + sum(c_n * g_c)`` (fixed random
    cotangents g drawn from ``seed``) with respect to every parameter, the input
    and, when given, the initial state. The torch model runs in eval mode (no
    dropout) and its mode, ``hidden_cell`` and ``.grad`` fields are left as they
    were; precision is pinned (:func:`pinned_precision`). Needs torch.

    Arguments:
        torch_model: ``torch.nn.LSTM`` (with ``jax_model`` an ``lstm_jax.LSTM``) or
            ``lstm_torch.LSTMModeler`` (with an ``lstm_jax.LSTMModeler``).
        variables: the JAX model's ``{"params": ...}``, of the torch model's dtype.
        x: the input as either model takes it (numpy, jax or torch array), of the
            parameters' dtype.
        initial_state: optional (h_0, c_0) (the ``LSTMModeler``'s ``hidden_cell``);
            zeros when None.

    Returns:
        a :class:`ParityReport` (``.ok``, ``.forward``, ``.final_state``,
        ``.gradient``, and ``str()`` a table).
    """
    import torch  # the torch extra

    from lstm_torch import LSTMModeler as TorchModeler

    if isinstance(torch_model, TorchModeler) and isinstance(jax_model, LSTMModeler):
        kind = "LSTMModeler"
    elif isinstance(torch_model, torch.nn.LSTM) and isinstance(jax_model, LSTM):
        kind = "LSTM"
    else:
        raise TypeError(
            f"expected torch.nn.LSTM with lstm_jax.LSTM, or lstm_torch.LSTMModeler with "
            f"lstm_jax.LSTMModeler; got {type(torch_model).__name__} with "
            f"{type(jax_model).__name__}"
        )
    torch_params = dict(torch_model.named_parameters())
    torch_dtype = next(iter(torch_params.values())).dtype
    dtypes = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
    if torch_dtype not in dtypes:
        raise TypeError(
            f"compare_with_torch: expected float32 or float64 parameters, got {torch_dtype}"
        )
    dtype = dtypes[torch_dtype]
    params = variables.get("params", variables) if isinstance(variables, Mapping) else None
    if params is None:
        raise TypeError(f"expected Flax variables (a mapping), got {type(variables).__name__}")
    jax_params = {key: np.asarray(value) for key, value in flatten(params).items()}
    check_param_shapes(
        {k: tuple(v.shape) for k, v in torch_params.items()},
        {k: v.shape for k, v in jax_params.items()},
        "JAX variables (expected: the torch model's parameters)",
    )
    inputs = {"input": _array(x, dtype, "x")}
    if initial_state is not None:
        h0, c0 = initial_state
        inputs |= {"h_0": _array(h0, dtype, "h_0"), "c_0": _array(c0, dtype, "c_0")}
    for key, value in jax_params.items():
        if value.dtype != dtype:
            raise TypeError(
                f"compare_with_torch: the torch model is {dtype} but JAX's {key} is {value.dtype}"
            )

    x64 = jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()
    with pinned_precision(), x64:
        scalar = _jax_scalar(jax_model)
        jax_inputs = {k: jnp.asarray(v) for k, v in inputs.items()}
        jax_params = {k: jnp.asarray(v) for k, v in jax_params.items()}
        # Shapes first: the Flax module's input checks give clear errors, before torch runs.
        shapes = jax.eval_shape(lambda p, i: scalar(p, i, None)[1], jax_params, jax_inputs)
        cotangents = _cotangents({k: v.shape for k, v in shapes.items()}, dtype, seed)
        torch_values, torch_grads = _torch_run(torch_model, kind, inputs, cotangents)
        grad_fn = jax.jit(jax.grad(scalar, argnums=(0, 1), has_aux=True))
        (param_grads, input_grads), jax_values = grad_fn(jax_params, jax_inputs, cotangents)
    jax_grads = {**input_grads, **param_grads}

    differences = [
        _difference(
            name,
            "forward" if name == "output" else "final state",
            jax_values[name],
            torch_values[name],
            FORWARD[dtype],
        )
        for name in ("output", "h_n", "c_n")
    ]
    differences += [
        _difference(f"grad {name}", "gradient", jax_grads[name], torch_grads[name], GRADIENT[dtype])
        for name in [*inputs, *torch_params]
    ]
    return ParityReport(kind, dtype, tuple(differences))


def _array(value: Any, dtype: np.dtype, what: str) -> np.ndarray:
    array = to_numpy(value)
    if array.dtype != dtype:
        raise TypeError(
            f"compare_with_torch: expected {what} of the parameters' dtype {dtype}, "
            f"got {array.dtype}"
        )
    return array


def _cotangents(shapes: Mapping[str, tuple[int, ...]], dtype: np.dtype, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()}


def _torch_run(
    model: Any,
    kind: str,
    inputs: Mapping[str, np.ndarray],
    cotangents: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Forward values and gradients on the torch side; the model is left as it was."""
    import torch

    device = next(model.parameters()).device
    leaves = {
        name: torch.from_numpy(value.copy()).to(device).requires_grad_(True)
        for name, value in inputs.items()
    }
    state = (leaves["h_0"], leaves["c_0"]) if "h_0" in leaves else None
    was_training = model.training
    saved_hidden_cell = getattr(model, "hidden_cell", None)
    model.eval()
    try:
        if kind == "LSTM":
            out, (h_n, c_n) = model(leaves["input"], state)
        else:
            model.hidden_cell = state if state is not None else model.zero_hidden_cell()
            out = model(leaves["input"])
            h_n, c_n = model.hidden_cell
        values = {"output": out, "h_n": h_n, "c_n": c_n}
        for name, value in values.items():
            if tuple(value.shape) != cotangents[name].shape:
                raise ValueError(
                    f"compare_with_torch: {name} has shape {cotangents[name].shape} in JAX "
                    f"but {tuple(value.shape)} in torch"
                )
        loss = sum(
            (v * torch.from_numpy(cotangents[k]).to(device)).sum() for k, v in values.items()
        )
        params = dict(model.named_parameters())
        grads = torch.autograd.grad(loss, [*leaves.values(), *params.values()])
    finally:
        model.train(was_training)
        if kind == "LSTMModeler":
            model.hidden_cell = saved_hidden_cell
    names = [*leaves, *params]
    return (
        {k: v.detach().cpu().numpy() for k, v in values.items()},
        {k: g.detach().cpu().numpy() for k, g in zip(names, grads, strict=True)},
    )


def _jax_scalar(model: LSTM | LSTMModeler) -> Any:
    """``(params, inputs, cotangents) -> (sum of values * cotangents, values)``; with
    ``cotangents`` None the sum is 0 (for shapes only)."""

    def scalar(
        params: Mapping[str, jax.Array],
        inputs: Mapping[str, jax.Array],
        cotangents: Mapping[str, np.ndarray] | None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        state = (inputs["h_0"], inputs["c_0"]) if "h_0" in inputs else None
        out, final = model.apply({"params": unflatten(params)}, inputs["input"], state)
        values = {"output": out, "h_n": final.h, "c_n": final.c}
        if cotangents is None:
            return jnp.zeros(()), values
        return sum(jnp.sum(v * cotangents[k]) for k, v in values.items()), values

    return scalar


def _difference(
    name: str, group: str, actual: np.ndarray, reference: np.ndarray, tolerance: float
) -> Difference:
    if np.shape(actual) != np.shape(reference):
        raise ValueError(
            f"compare_with_torch: {name} has shape {np.shape(actual)} in JAX but "
            f"{np.shape(reference)} in torch"
        )
    diff = np.abs(np.asarray(actual, np.float64) - np.asarray(reference, np.float64))
    max_abs = float(np.max(diff, initial=0.0)) if not np.isnan(diff).any() else float("nan")
    return Difference(name, group, max_abs, scaled_error(actual, reference), tolerance)
