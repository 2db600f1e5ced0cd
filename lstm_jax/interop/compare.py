"""Check that a JAX model computes what its torch original computes: forward, state, gradients.

:func:`compare_with_torch` runs the torch model and the Flax model on the same
input and reports the largest differences. It needs torch (the ``torch`` extra,
``pip install "lstm-jax[torch]"``), imported only when the function runs, so
``import lstm_jax`` stays free of torch.

Any pair works: the built-ins (``torch.nn.LSTM`` with ``lstm_jax.LSTM``,
``lstm_torch.LSTMModeler`` with ``lstm_jax.LSTMModeler``) and a model of one's own
whose Flax submodules carry the torch attribute names (parameters paired by the
transfer's key rules, :mod:`lstm_jax.interop.transfer`).

Example::

    report = lstm_jax.compare_with_torch(torch_model, flax_model, variables, tokens, lengths)
    print(report)          # one row per output leaf and gradient, the worst of each group
    assert report.ok       # every scaled difference within lstm_jax.common.tolerances

:func:`compare_function_with_torch` is the same check for any JAX function of a
``{torch key: array}`` mapping (the Flax NNX modules use it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.common.config import check_param_shapes, params_of
from lstm_jax.common.ties import find_ties
from lstm_jax.common.tolerances import FORWARD, GRADIENT, scaled_error
from lstm_jax.core.state import LSTMState
from lstm_jax.interop.precision import pinned_precision
from lstm_jax.interop.transfer import (
    check_state_dict,
    flatten,
    flax_params_to_torch,
    model_key_map,
    to_numpy,
    torch_params_to_flax,
    unflatten,
)
from lstm_jax.linen.modules import LSTM, LSTMModeler

__all__ = [
    "Difference",
    "ParityReport",
    "compare_function_with_torch",
    "compare_with_torch",
    "pinned_precision",
]

GROUPS = ("forward", "final state", "gradient")
BUILT_IN_KINDS = ("LSTM", "LSTMModeler")


@dataclass(frozen=True)
class Difference:
    """One compared quantity.

    Attributes:
        name: "output", "h_n", "c_n", or "grad <input | h_0 | c_0 | state_dict key>" for
            the built-ins; "output", "output[0]", "output[1].h", ... (the output's leaves)
            and "grad args[0]", "grad <torch key>" for other models.
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
        kind: "LSTM", "LSTMModeler", or the Flax model's class name.
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
            present = sorted({d.group for d in self.differences})
            raise ValueError(f"group must be one of {present} in this report, got {group!r}")
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
        title = f"lstm_jax.{self.kind}" if self.kind in BUILT_IN_KINDS else self.kind
        lines = [
            f"{title} against torch, {self.dtype}: differences scaled by "
            f"max|torch| (tolerances: forward {FORWARD[self.dtype]:.0e}, "
            f"gradient {GRADIENT[self.dtype]:.0e})",
            f"{'quantity':<{width}}  {'max|jax-torch|':>14}  {'scaled':>9}  {'tolerance':>9}",
        ]
        for d in self.differences:
            lines.append(
                f"{d.name:<{width}}  {d.max_abs:>14.3e}  {d.scaled:>9.2e}  {d.tolerance:>9.0e}"
                f"  {'ok' if d.ok else 'FAIL'}"
            )
        worst = {g: self.largest(g) for g in GROUPS if any(d.group == g for d in self.differences)}
        summary = ", ".join(f"{g} {d.scaled:.2e} ({d.name})" for g, d in worst.items())
        lines.append(f"largest: {summary}")
        failing = [d.name for d in self.differences if not d.ok]
        lines.append(
            "result: OK, within tolerance"
            if not failing
            else f"result: FAIL, beyond tolerance: {', '.join(failing)}"
        )
        return "\n".join(lines)


def compare_with_torch(
    torch_model: Any,
    flax_model: Any,
    variables: Mapping[str, Any],
    *args: Any,
    initial_state: tuple[Any, Any] | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> ParityReport:
    """Run both models on the same arguments and report the largest differences.

    Compared: every output leaf (tuples and NamedTuples by position, so torch's
    ``(h_n, c_n)`` pairs with an ``LSTMState``), and the gradients of the scalar
    ``sum_k <output_k, g_k>`` (fixed random cotangents g drawn from ``seed``) with
    respect to every parameter (paired by the transfer's key rules) and every floating
    input. Integer inputs (tokens, lengths) are passed through, never differentiated.
    The torch model runs in eval mode; its modes, ``requires_grad`` flags, ``.grad``
    fields and ``hidden_cell`` are left as they were; precision is pinned
    (:func:`pinned_precision`). Needs torch.

    Arguments:
        torch_model: ``torch.nn.LSTM`` (with an ``lstm_jax.LSTM``),
            ``lstm_torch.LSTMModeler`` (with an ``lstm_jax.LSTMModeler``), or any
            ``torch.nn.Module`` with a Flax mirror whose submodules carry its attribute
            names. A torch model that packs its input (``pack_padded_sequence`` inside
            ``forward``) pairs with a Flax model taking ``seq_lengths``: give both the
            lengths as the same argument.
        flax_model: the Flax (linen) model; it should be deterministic when called
            with ``args`` (e.g. its ``deterministic`` defaults to True). A Flax NNX
            module holds its parameters: ``compare_with_torch(torch_model, module, *args)``,
            no variables (see :mod:`lstm_jax.interop.nnx_compare`).
        variables: the Flax model's ``{"params": ...}``, of the torch model's dtype.
        args, kwargs: the call's arguments, the same for both models: numpy, JAX or
            torch arrays (floating ones of the parameters' dtype), and anything else
            (``None``, flags) passed as is. For the built-ins: ``x`` alone.
        initial_state: (built-ins only) (h_0, c_0), the ``LSTMModeler``'s
            ``hidden_cell``; zeros when None.
        seed: seeds the cotangents.

    Returns:
        a :class:`ParityReport` (``.ok``, ``.forward``, ``.final_state``,
        ``.gradient``, and ``str()`` a table naming the worst key of each group).
    """
    import torch  # the torch extra

    from lstm_torch import LSTMModeler as TorchModeler

    if isinstance(flax_model, nnx.Module):  # it holds its parameters: variables is args[0]
        from lstm_jax.interop.nnx_compare import compare_nnx_with_torch

        return compare_nnx_with_torch(
            torch_model,
            flax_model,
            (variables, *args),
            kwargs,
            initial_state=initial_state,
            seed=seed,
        )

    pairs = ((torch.nn.LSTM, LSTM, "LSTM"), (TorchModeler, LSTMModeler, "LSTMModeler"))
    if any(isinstance(torch_model, t) or isinstance(flax_model, j) for t, j, _ in pairs):
        kind = next(
            (k for t, j, k in pairs if isinstance(torch_model, t) and isinstance(flax_model, j)),
            None,
        )
        if kind is None or len(args) != 1 or kwargs:
            raise TypeError(
                f"expected torch.nn.LSTM with lstm_jax.LSTM, or lstm_torch.LSTMModeler with "
                f"lstm_jax.LSTMModeler, called with x (and initial_state), or two models of "
                f"your own; got {type(torch_model).__name__} with {type(flax_model).__name__}"
                f" and {len(args)} positional, {sorted(kwargs)} keyword arguments"
            )
        return _compare_builtin(
            torch_model, flax_model, variables, kind, args[0], initial_state, seed
        )
    if initial_state is not None:
        raise TypeError(
            "compare_with_torch: initial_state is for the built-in models; pass your model's "
            "state as one of its arguments"
        )
    if not isinstance(torch_model, torch.nn.Module):
        raise TypeError(
            f"compare_with_torch: expected a torch.nn.Module, got {type(torch_model).__name__}"
        )
    dtype = _torch_dtype(torch_model)
    params = params_of(variables, "compare_with_torch", wrapper_optional=True)
    with _x64_if(dtype), pinned_precision():
        call = _Call.of(args, kwargs, dtype)
        entries = model_key_map(flax_model, call.numpy_args, example_kwargs=call.numpy_kwargs)
        held = _torch_held(torch_model, entries)
        jax_params = flax_params_to_torch(params, entries)

        def jax_call(p: Mapping[str, jax.Array], inputs: Mapping[str, jax.Array]) -> Any:
            tree = torch_params_to_flax(p, entries)
            a, k = call.rebuild(inputs, jnp.asarray)
            return flax_model.apply({"params": tree}, *a, **k)

        def torch_call(inputs: Mapping[str, Any]) -> Any:
            device = next(torch_model.parameters()).device
            a, k = call.rebuild(inputs, lambda v: torch.from_numpy(v.copy()).to(device))
            return torch_model(*a, **k)

        return compare_function_with_torch(
            torch_model,
            torch_call,
            jax_call,
            jax_params,
            held,
            call.floating,
            kind=type(flax_model).__name__,
            seed=seed,
        )


def compare_function_with_torch(
    torch_model: Any,
    torch_call: Callable[[Mapping[str, Any]], Any],
    jax_call: Callable[[Mapping[str, jax.Array], Mapping[str, jax.Array]], Any],
    params: Mapping[str, np.ndarray],
    torch_params: Mapping[str, Any],
    inputs: Mapping[str, np.ndarray],
    *,
    kind: str,
    seed: int = 0,
    output_names: Callable[[Any], list[tuple[str, str]]] | None = None,
) -> ParityReport:
    """The parity check for any JAX function of ``{torch key: array}`` parameters.

    Arguments:
        torch_model: the torch module (run in eval mode, left as it was).
        torch_call: ``{input name: torch tensor requiring grad}`` -> the torch outputs
            (tensors in tuples, lists, dicts).
        jax_call: ``(params, {input name: array})`` -> the JAX outputs, the same leaves
            in the same order (an ``LSTMState`` where torch has ``(h_n, c_n)``).
        params: ``{torch key: array}`` the JAX side holds, in torch's layout (the key
            rules' ``to_torch``), so their gradients compare with torch's directly.
        torch_params: ``{torch key: torch.nn.Parameter}`` for the same keys.
        inputs: ``{name: floating array}``: the differentiated inputs.
        kind: the name the report gives the model.
        output_names: JAX outputs -> ``[(name, group)]`` per leaf; by default
            ``output…`` paths, group "final state" inside an ``LSTMState``, else "forward".

    Returns:
        a :class:`ParityReport`; parameter gradients in ``torch_params``' order.
    """
    dtype = _torch_dtype(torch_model)
    for key, value in params.items():
        if np.dtype(value.dtype) != dtype:
            raise TypeError(
                f"compare_with_torch: the torch model is {dtype} but JAX's {key} is {value.dtype}"
            )
    with _x64_if(dtype), pinned_precision():
        jax_inputs = {k: jnp.asarray(v) for k, v in inputs.items()}
        jax_params = {k: jnp.asarray(v) for k, v in params.items()}
        # Shapes first: the Flax module's input checks give clear errors, before torch runs.
        shapes = jax.eval_shape(jax_call, jax_params, jax_inputs)
        names = (output_names or _output_names)(shapes)
        rng = np.random.default_rng(seed)
        cotangents = [
            rng.standard_normal(s.shape).astype(dtype) if _floating(s.dtype) else None
            for s in jax.tree.leaves(shapes)
        ]
        torch_values, torch_grads = _torch_run(
            torch_model, torch_call, inputs, torch_params, cotangents, names
        )

        def scalar(p: Any, i: Any) -> tuple[jax.Array, list[jax.Array]]:
            leaves = jax.tree.leaves(jax_call(p, i))
            total = sum(
                jnp.sum(leaf * g)
                for leaf, g in zip(leaves, cotangents, strict=True)
                if g is not None
            )
            return jnp.asarray(total, dtype), leaves

        grad_fn = jax.jit(jax.grad(scalar, argnums=(0, 1), has_aux=True))
        (param_grads, input_grads), jax_values = grad_fn(jax_params, jax_inputs)

    differences = [
        _difference(name, group, jax_values[k], torch_values[k], FORWARD[dtype])
        for k, (name, group) in enumerate(names)
    ]
    jax_grads = {**input_grads, **param_grads}
    differences += [
        _difference(f"grad {name}", "gradient", jax_grads[name], torch_grads[name], GRADIENT[dtype])
        for name in [*inputs, *torch_params]
    ]
    return ParityReport(kind, dtype, tuple(differences))


# --- the built-in pairs --------------------------------------------------------------------


def _compare_builtin(
    torch_model: Any,
    jax_model: LSTM | LSTMModeler,
    variables: Mapping[str, Any],
    kind: str,
    x: Any,
    initial_state: tuple[Any, Any] | None,
    seed: int,
) -> ParityReport:
    dtype = _torch_dtype(torch_model)
    torch_params = dict(torch_model.named_parameters())
    params = params_of(variables, "compare_with_torch", wrapper_optional=True)
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
    entries = model_key_map(jax_model, None, unflatten(jax_params))

    def jax_call(p: Mapping[str, jax.Array], i: Mapping[str, jax.Array]) -> Any:
        state = (i["h_0"], i["c_0"]) if "h_0" in i else None
        out, final = jax_model.apply(
            {"params": torch_params_to_flax(p, entries)}, i["input"], state
        )
        return out, final.h, final.c

    def torch_call(i: Mapping[str, Any]) -> Any:
        state = (i["h_0"], i["c_0"]) if "h_0" in i else None
        if kind == "LSTM":
            out, (h_n, c_n) = torch_model(i["input"], state)
            return out, h_n, c_n
        torch_model.hidden_cell = state if state is not None else torch_model.zero_hidden_cell()
        out = torch_model(i["input"])
        return (out, *torch_model.hidden_cell)

    saved_hidden_cell = getattr(torch_model, "hidden_cell", None)
    try:
        return compare_function_with_torch(
            torch_model,
            torch_call,
            jax_call,
            jax_params,
            torch_params,
            inputs,
            kind=kind,
            seed=seed,
            output_names=lambda _: [
                ("output", "forward"),
                ("h_n", "final state"),
                ("c_n", "final state"),
            ],
        )
    finally:
        if kind == "LSTMModeler":
            torch_model.hidden_cell = saved_hidden_cell


# --- pieces --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """The call's arguments split into floating arrays (differentiated, by name), other
    arrays (passed through as numpy) and everything else (passed as is)."""

    treedef: Any
    leaves: tuple[Any, ...]  # numpy arrays where the argument was an array
    names: tuple[str | None, ...]  # the floating leaves' names, else None
    floating: dict[str, np.ndarray]

    @classmethod
    def of(cls, args: Sequence[Any], kwargs: Mapping[str, Any], dtype: np.dtype) -> _Call:
        flat, treedef = jax.tree_util.tree_flatten_with_path((tuple(args), dict(kwargs)))
        leaves: list[Any] = []
        names: list[str | None] = []
        floating: dict[str, np.ndarray] = {}
        for path, leaf in flat:
            if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
                leaves.append(leaf)
                names.append(None)
                continue
            array, name = to_numpy(leaf), _argument_name(path)
            leaves.append(array)
            if _floating(array.dtype):
                floating[name] = _array(array, dtype, name)
                names.append(name)
            else:
                names.append(None)
        return cls(treedef, tuple(leaves), tuple(names), floating)

    @property
    def numpy_args(self) -> tuple[Any, ...]:
        return tuple(jax.tree.unflatten(self.treedef, self.leaves)[0])

    @property
    def numpy_kwargs(self) -> dict[str, Any]:
        return dict(jax.tree.unflatten(self.treedef, self.leaves)[1])

    def rebuild(
        self, floating: Mapping[str, Any], convert: Callable[[np.ndarray], Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments with the floating leaves from ``floating`` and the other arrays
        through ``convert``."""
        leaves = [
            floating[name]
            if name is not None
            else (convert(leaf) if isinstance(leaf, np.ndarray) else leaf)
            for leaf, name in zip(self.leaves, self.names, strict=True)
        ]
        args, kwargs = jax.tree.unflatten(self.treedef, leaves)
        return tuple(args), dict(kwargs)


def _argument_name(path: Sequence[Any]) -> str:
    """A leaf's name from its path in ``(args, kwargs)``: ``args[0]``, ``args[1][0]``,
    ``seq_lengths``."""
    rest = jax.tree_util.keystr(tuple(path[2:]))
    if path[0].idx == 0:
        return f"args[{path[1].idx}]{rest}"
    return f"{path[1].key}{rest}"


def _torch_held(torch_model: Any, entries: Sequence[Any]) -> dict[str, Any]:
    """``{torch key: Parameter}`` for each key the Flax model holds, in torch's order,
    after checking every torch parameter is held once (ties: one of them)."""
    named = dict(torch_model.named_parameters(remove_duplicate=False))
    arrays = {k: p.detach() for k, p in named.items()}
    check_state_dict(
        arrays,
        entries,
        find_ties(arrays),
        f"JAX variables (expected: the parameters of {type(torch_model).__name__})",
    )
    held = {e.torch_key for e in entries}
    return {k: p for k, p in named.items() if k in held}


def _torch_dtype(torch_model: Any) -> np.dtype:
    import torch

    first = next(iter(torch_model.parameters()), None)
    if first is None:
        raise ValueError(f"compare_with_torch: {type(torch_model).__name__} has no parameters")
    dtypes: dict[Any, np.dtype] = {
        torch.float32: np.dtype(np.float32),
        torch.float64: np.dtype(np.float64),
    }
    if first.dtype not in dtypes:
        raise TypeError(
            f"compare_with_torch: expected float32 or float64 parameters, got {first.dtype}"
        )
    return dtypes[first.dtype]


def _x64_if(dtype: np.dtype) -> contextlib.AbstractContextManager:
    return jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()


def _floating(dtype: Any) -> bool:
    return bool(np.issubdtype(np.dtype(dtype), np.floating))


def _array(value: Any, dtype: np.dtype, what: str) -> np.ndarray:
    array = to_numpy(value)
    if array.dtype != dtype:
        raise TypeError(
            f"compare_with_torch: expected {what} of the parameters' dtype {dtype}, "
            f"got {array.dtype}"
        )
    return array


def _output_names(outputs: Any) -> list[tuple[str, str]]:
    """``[(name, group)]`` per leaf: ``output``, ``output[0]``, ``output[1].h`` ...;
    an ``LSTMState``'s leaves are "final state", the others "forward"."""
    flat, _ = jax.tree_util.tree_flatten_with_path(
        outputs, is_leaf=lambda x: isinstance(x, LSTMState)
    )
    names: list[tuple[str, str]] = []
    for path, leaf in flat:
        base = "output" + jax.tree_util.keystr(path)
        if isinstance(leaf, LSTMState):
            names += [(f"{base}.h", "final state"), (f"{base}.c", "final state")]
        else:
            names.append((base, "forward"))
    return names


def _torch_leaves(value: Any) -> list[Any]:
    """The tensors of a torch output, in JAX's flattening order (dicts by sorted key)."""
    import torch
    from torch.nn.utils.rnn import PackedSequence

    if isinstance(value, PackedSequence):
        raise TypeError(
            "compare_with_torch: the torch model returned a PackedSequence; return "
            "torch.nn.utils.rnn.pad_packed_sequence(...) so it compares with the Flax output"
        )
    if isinstance(value, torch.Tensor):
        return [value]
    if value is None:
        return []
    if isinstance(value, tuple | list):
        return [leaf for item in value for leaf in _torch_leaves(item)]
    if isinstance(value, Mapping):
        return [leaf for key in sorted(value) for leaf in _torch_leaves(value[key])]
    raise TypeError(
        f"compare_with_torch: the torch model returned a {type(value).__name__}; expected "
        f"tensors in tuples, lists or dicts"
    )


def _torch_run(
    model: Any,
    torch_call: Callable[[Mapping[str, Any]], Any],
    inputs: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    cotangents: Sequence[np.ndarray | None],
    names: Sequence[tuple[str, str]],
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Forward values and gradients on the torch side; the model is left as it was."""
    import torch

    device = next(model.parameters()).device
    leaves = {
        name: torch.from_numpy(value.copy()).to(device).requires_grad_(True)
        for name, value in inputs.items()
    }
    modes = [(m, m.training) for m in model.modules()]
    requires = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for p in params.values():
            p.requires_grad_(True)
        values = _torch_leaves(torch_call(leaves))
        if len(values) != len(names):
            raise ValueError(
                f"compare_with_torch: the Flax model returns {len(names)} arrays "
                f"({', '.join(n for n, _ in names)}) but the torch model {len(values)}"
            )
        for (name, _), value, g in zip(names, values, cotangents, strict=True):
            expected = tuple(np.shape(g)) if g is not None else None
            if expected is not None and tuple(value.shape) != expected:
                raise ValueError(
                    f"compare_with_torch: {name} has shape {expected} in JAX but "
                    f"{tuple(value.shape)} in torch"
                )
        loss = sum(
            (v * torch.from_numpy(g).to(device)).sum()
            for v, g in zip(values, cotangents, strict=True)
            if g is not None
        )
        wrt = [*leaves.values(), *params.values()]
        grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    finally:
        for module, mode in modes:
            module.training = mode
        for p, flag in requires:
            p.requires_grad_(flag)
    grads = tuple(torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads, strict=True))
    return (
        [v.detach().cpu().numpy() for v in values],
        {k: g.detach().cpu().numpy() for k, g in zip([*leaves, *params], grads, strict=True)},
    )


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
