"""The parity engine behind :func:`lstm_jax.compare_with_torch`: run a torch model and a
Flax function on the same arguments and report the largest differences of outputs and
gradients (:class:`ParityReport`). :mod:`lstm_jax.interop.compare` (linen models, the
built-in pairs) and :mod:`lstm_jax.interop.nnx_compare` (NNX modules) build on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.common.ties import find_ties
from lstm_jax.common.tolerances import FORWARD, GRADIENT, scaled_error
from lstm_jax.core.state import LSTMState
from lstm_jax.interop.precision import pinned_precision
from lstm_jax.interop.transfer import (
    check_state_dict,
    to_numpy,
)

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
        """The difference of one group that is largest relative to its tolerance.

        Args:
            group: "forward", "final state" or "gradient".

        Returns:
            That group's worst :class:`Difference` (key, scaled error, tolerance)."""
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
        flat, treedef = jax.tree_util.tree_flatten_with_path(
            (tuple(args), dict(kwargs)), is_leaf=_is_packed
        )
        leaves: list[Any] = []
        names: list[str | None] = []
        floating: dict[str, np.ndarray] = {}
        for path, leaf in flat:
            if _is_packed(leaf):
                raise TypeError(
                    f"compare_with_torch: expected {_argument_name(path)} as the padded "
                    f"batch, got a torch PackedSequence, which the Flax model cannot take: "
                    f"pass the padded batch and its lengths to both models (the torch "
                    f"model packs inside forward, the Flax model takes seq_lengths)"
                )
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


def _is_packed(value: Any) -> bool:
    """Whether ``value`` is a torch ``PackedSequence`` (duck-typed: a NamedTuple, which
    JAX would flatten into its four tensors)."""
    return type(value).__name__ == "PackedSequence" and hasattr(value, "batch_sizes")


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
