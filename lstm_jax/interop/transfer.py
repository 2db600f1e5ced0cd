"""Weight transfer between torch ``state_dict``s and Flax variables.

The built-in models (``lstm_jax.LSTM``, ``LSTMModeler``, ``LSTMCell``) use torch's
names and layout, so their transfer is flatten/unflatten on "." plus array
conversion: no transposes, no bias folding, bitwise round trips.

A model of one's own converts whole when its Flax submodules carry the torch
model's attribute names: the Flax path ``a/b/<leaf>`` pairs with the torch key
``a.b.<torch name>``, each leaf through its layer's rule
(:mod:`lstm_jax.interop.leaf_rules`), list-held submodules ``layers_0`` as ``layers.0``,
strict both ways as ``load_state_dict(strict=True)``. torch is never imported: any
mapping of arrays works (tensors go through numpy).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.errors import FlaxError

from lstm_jax.common.arrays import flatten, to_numpy
from lstm_jax.common.config import (
    GATE_COUNTS,
    MODES,
    LSTMConfig,
    check_param_shapes,
    check_params,
    infer_config,
    lstm_cell_param_shapes,
    modeler_param_shapes,
    params_of,
)
from lstm_jax.common.ties import find_ties
from lstm_jax.core.dtypes import check_float64_allowed
from lstm_jax.interop import leaf_rules
from lstm_jax.interop.leaf_rules import COUNTER, LeafRule
from lstm_jax.linen.batchnorm import BatchNorm1d, BatchNorm2d, counter_dtype
from lstm_jax.linen.cell import LSTMCell
from lstm_jax.linen.family import GRU, RNN
from lstm_jax.linen.family_cells import GRUCell, RNNCell
from lstm_jax.linen.modules import LSTM, Linear, LSTMModeler

Path = tuple[str, ...]
# the variable collections that map to torch: parameters, and buffers (BatchNorm's)
COLLECTIONS = ("params", "batch_stats")
TORCH_ONLY = ""  # a KeyEntry's collection for a torch buffer the Flax layer lacks
FAMILY = (GRU, RNN, GRUCell, RNNCell)  # torch's nn.GRU, nn.RNN and their cells
CELLS = (LSTMCell, GRUCell, RNNCell)
BUILT_IN = (LSTM, LSTMModeler, LSTMCell, *FAMILY)

for _layer, _kind in (
    (nn.Dense, "dense"),
    (nn.Embed, "embed"),
    (nn.LayerNorm, "layer_norm"),
    (nn.RMSNorm, "layer_norm"),  # torch's nn.RMSNorm: weight
    (nn.GroupNorm, "layer_norm"),  # torch's nn.GroupNorm: weight, bias
    (nn.Conv, "conv"),
    (nn.BatchNorm, "batch_norm"),  # Flax's conventions: see leaf_rules
    (BatchNorm1d, leaf_rules.TORCH_NAMED),
    (BatchNorm2d, leaf_rules.TORCH_NAMED),
    (LSTM, leaf_rules.TORCH_NAMED),
    (Linear, leaf_rules.TORCH_NAMED),
    (LSTMCell, leaf_rules.TORCH_NAMED),
    (LSTMModeler, leaf_rules.TORCH_NAMED),
    *((_family, leaf_rules.TORCH_NAMED) for _family in FAMILY),
):
    leaf_rules.register_layer(_layer, _kind)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"lstm.weight_ih_l0": a} -> {"lstm": {"weight_ih_l0": a}}."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def expected_shapes(model: Any, input_size: int | None = None) -> dict[str, tuple[int, ...]]:
    """The state_dict names and shapes a built-in model (``lstm_jax.LSTM``,
    ``LSTMModeler`` or ``LSTMCell``) expects."""
    if isinstance(model, CELLS):
        return lstm_cell_param_shapes(model.hidden_size, input_size, model.bias, _cell_gates(model))
    config: LSTMConfig = model.config
    if hasattr(model, "output_size"):
        return modeler_param_shapes(config, model.output_size)
    return config.param_shapes(input_size)


def _cell_gates(cell: Any) -> int:
    """G of a built-in cell: 4 (LSTMCell), 3 (GRUCell), 1 (RNNCell)."""
    return 4 if isinstance(cell, LSTMCell) else 3 if isinstance(cell, GRUCell) else 1


def _kind_shapes(shapes: Mapping[str, tuple[int, ...]], kind: str) -> dict[str, tuple[int, ...]]:
    """The keys and shapes of an ``nn.GRU`` / ``nn.RNN`` (or its cell, with keys
    ``weight_ih``, ``weight_hh``) of mode ``kind`` that ``shapes`` describe."""
    if kind not in MODES:
        raise ValueError(f"params_from_torch: expected kind in {MODES}, got {kind!r}")
    if _is_cell_keys(list(shapes)):
        w_ih, w_hh = shapes["weight_ih"], shapes["weight_hh"]
        gates = GATE_COUNTS[kind]
        if len(w_ih) != 2 or len(w_hh) != 2 or w_hh[0] != gates * w_hh[1]:
            raise ValueError(
                f"params_from_torch: expected a {kind} cell's weight_hh ({gates}*hidden_size, "
                f"hidden_size), got {tuple(w_hh)}"
            )
        bias = "bias_ih" in shapes or "bias_hh" in shapes
        return lstm_cell_param_shapes(w_hh[1], w_ih[1], bias, gates)
    if any("." in k for k in shapes):
        raise _whole_model_error(shapes, "params_from_torch")
    return infer_config(shapes, kind)[0].param_shapes()


# --- the layers of a Flax model and their torch names --------------------------------------


@dataclass(frozen=True)
class Layer:
    """One module of a Flax model, as the transfer sees it.

    Attributes:
        layer_type: the module's class (None where unknown: its leaves then decide).
        torch_path: the torch names of its path from the root (``("layers", "0")``).
    """

    layer_type: type | None
    torch_path: Path


@dataclass(frozen=True)
class KeyEntry:
    """One Flax leaf paired with its torch key.

    Attributes:
        flax_path: the leaf's path in ``variables[collection]``.
        torch_key: the torch ``state_dict`` key.
        rule: its array conversions.
        shape: the Flax leaf's shape.
        collection: ``"params"`` (a torch parameter), ``"batch_stats"`` (a torch
            buffer), or :data:`TORCH_ONLY` (Flax's BatchNorm's missing counter).
    """

    flax_path: Path
    torch_key: str
    rule: LeafRule
    shape: tuple[int, ...]
    collection: str = "params"

    @property
    def flax_name(self) -> str:
        name = "/".join(self.flax_path)
        return name if self.collection == "params" else f"{self.collection or 'none'}:{name}"

    def torch_shape(self) -> tuple[int, ...]:
        """The shape the torch tensor must have."""
        probe = jax.ShapeDtypeStruct(self.shape, jnp.float32)
        return tuple(jax.eval_shape(self.rule.to_torch, probe).shape)


def _attribute(module: Any, name: str) -> Any:
    try:
        return getattr(module, name, None)
    except Exception:  # a property that fails outside a call, an unbound setup: nothing
        return None


def child_of(parent: Any, name: str) -> tuple[Path, Any] | None:
    """The torch names of the submodule ``name`` of ``parent``, and the submodule (None
    where ``parent`` does not hold it as an attribute, e.g. one created in ``@compact``).

    ``layers_0`` is ``("layers", "0")`` when the parent holds a list ``layers`` (a dict
    ``blocks``: ``blocks_a`` is ``("blocks", "a")``; nested, ``stacks_0_1`` is
    ``("stacks", "0", "1")``); a flax ``nn.Sequential``'s own ``layers_i`` is
    ``("i",)``, as in torch's ``nn.Sequential``.
    """
    child = _attribute(parent, name)
    if isinstance(child, nn.Module):
        return (name,), child
    for match in re.finditer("_", name):
        base, rest = name[: match.start()], name[match.end() :]
        found = _container_item(_attribute(parent, base), rest)
        if found is not None:
            items, module = found
            if isinstance(parent, nn.Sequential) and base == "layers":
                return items, module
            return (base, *items), module
    return None


def _container_item(held: Any, rest: str) -> tuple[Path, Any] | None:
    """The submodule that Flax names ``rest`` inside a list, tuple or dict attribute
    (``"0"``, ``"a"``, ``"0_1"`` for a list of lists), with its items' names."""
    if not isinstance(held, list | tuple | Mapping):
        return None
    splits = [len(rest)] + [m.start() for m in re.finditer("_", rest)]
    for end in splits:  # the whole of rest first: dict keys may hold "_"
        item, remainder = rest[:end], rest[end + 1 :]
        if isinstance(held, Mapping):
            value = held.get(item)
        else:
            value = held[int(item)] if item.isdigit() and int(item) < len(held) else None
        if end == len(rest) and isinstance(value, nn.Module):
            return (item,), value
        inner = _container_item(value, remainder) if end < len(rest) else None
        if inner is not None:
            return (item, *inner[0]), inner[1]
    return None


def _merged(a: Mapping[str, Any], b: Mapping[str, Any] | None) -> dict[str, Any]:
    """Two variable collections' module trees as one (for walking the modules)."""
    out = dict(a)
    for key, value in (b or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out.setdefault(key, value)
    return out


def bound_layers(
    model: nn.Module, params: Mapping[str, Any], batch_stats: Mapping[str, Any] | None = None
) -> dict[Path, Layer]:
    """``{flax module path: Layer}`` for the submodules ``model`` holds as attributes
    (declared in ``setup``), found by binding it to ``params``; those created inside
    ``@compact`` methods are not seen (their leaves decide their rules)."""
    found: dict[Path, Layer] = {(): Layer(type(model), ())}

    def visit(module: Any, node: Mapping[str, Any], path: Path, torch_path: Path) -> None:
        for name, value in node.items():
            if not isinstance(value, Mapping):
                continue
            held = child_of(module, name)
            if held is None:
                continue
            segments, child = held
            found[(*path, name)] = Layer(type(child), (*torch_path, *segments))
            visit(child, value, (*path, name), (*torch_path, *segments))

    def walk(root: nn.Module) -> None:
        visit(root, _merged(params, batch_stats), (), ())

    bound = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    try:
        model.apply(bound, method=walk)
    except Exception:  # a model whose setup needs more than its params: leaves decide
        return {(): Layer(type(model), ())}
    return found


def _describe(value: Any) -> str:
    """An example argument for an error: ``int64(7, 3)``, ``None``, ``tuple of 2``."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{dtype}{tuple(value.shape)}"
    if isinstance(value, tuple | list):
        return f"{type(value).__name__} of {len(value)}"
    return (
        repr(value)
        if value is None or isinstance(value, bool | int | float)
        else type(value).__name__
    )


def discover_layers(
    model: nn.Module,
    example: Sequence[Any],
    example_kwargs: Mapping[str, Any] | None = None,
    what: str = "example",
) -> tuple[dict, dict[Path, Layer]]:
    """Run ``model.init`` abstractly on ``example`` (and ``example_kwargs``; only shapes
    and dtypes of arrays are used) and record every module called. ``what`` names the
    arguments in the error when the model refuses them.

    Returns:
        ``{collection: its shapes}`` (trees of ``jax.ShapeDtypeStruct``; "params" and,
        for a model with BatchNorm, "batch_stats") and ``{flax module path: Layer}``.

    Raises:
        ValueError: a variable collection other than params and batch_stats, which has
            no torch counterpart.
    """
    if not isinstance(example, tuple | list):
        raise TypeError(
            f"example: expected a tuple of {type(model).__name__}.init's positional arguments "
            f"(after the rng), got {type(example).__name__}"
        )
    leaves, treedef = jax.tree.flatten((list(example), dict(example_kwargs or {})))
    is_array = [hasattr(a, "shape") and hasattr(a, "dtype") for a in leaves]
    abstract = [
        jax.ShapeDtypeStruct(tuple(a.shape), to_numpy(a).dtype if hasattr(a, "cpu") else a.dtype)
        for a, arr in zip(leaves, is_array, strict=True)
        if arr
    ]
    found: dict[Path, Layer] = {}

    def record(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        module = context.module
        path = tuple(module.path)
        if path not in found:
            parent_path = found[path[:-1]].torch_path if path[:-1] in found else path[:-1]
            held = child_of(module.parent, path[-1]) if path else None
            segments = () if not path else (held[0] if held else path[-1:])
            found[path] = Layer(type(module), tuple(parent_path) + segments)
        return next_fun(*args, **kwargs)

    def init(*arrays: Any) -> Any:
        values = iter(arrays)
        args, kwargs = jax.tree.unflatten(
            treedef, [next(values) if arr else a for a, arr in zip(leaves, is_array, strict=True)]
        )
        rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
        with nn.intercept_methods(record):
            return model.init(rngs, *args, **kwargs)

    try:
        shapes = jax.eval_shape(init, *abstract)
    except (TypeError, ValueError, FlaxError) as err:  # the model refused its example
        kind = TypeError if isinstance(err, TypeError) else ValueError
        given = [_describe(a) for a in example]
        given += [f"{k}={_describe(v)}" for k, v in (example_kwargs or {}).items()]
        raise kind(
            f"{what}: expected the arguments of a real call of {type(model).__name__} "
            f"(its init's after the rng), got ({', '.join(given)}), on which its init "
            f"raised {type(err).__name__}: {err}"
        ) from err
    check_collections(shapes, type(model).__name__)
    return {c: dict(shapes[c]) for c in COLLECTIONS if c in shapes}, found


def check_collections(variables: Mapping[str, Any], who: str) -> None:
    """Refuse variable collections torch has no counterpart of (naming them): only
    ``params`` (parameters) and ``batch_stats`` (buffers) map to a torch ``state_dict``."""
    others = sorted(str(c) for c in set(variables) - set(COLLECTIONS))
    if others:
        raise ValueError(
            f"{who}: expected variable collections among {list(COLLECTIONS)} (torch's "
            f"parameters and buffers), got also {others}, which no torch state_dict holds"
        )


def key_map(
    params: Mapping[str, Any],
    layers: Mapping[Path, Layer] | None = None,
    batch_stats: Mapping[str, Any] | None = None,
) -> list[KeyEntry]:
    """Pair every leaf of ``params`` and ``batch_stats`` (nested mappings of arrays or
    shapes) with its torch key.

    Arguments:
        params: ``variables["params"]`` or its ``jax.eval_shape``.
        layers: ``{flax module path: Layer}`` (:func:`discover_layers`); modules not in
            it keep their Flax names and are ruled by their leaves.
        batch_stats: ``variables["batch_stats"]`` (torch's buffers), or None.

    Raises:
        ValueError: two leaves paired with one torch key, or a leaf with a Flax layer's
            name (``kernel``, ``scale``, ``mean``, ...) that no rule renames: its layer
            needs one (:func:`lstm_jax.register_layer`).
    """
    layers = layers or {}
    entries: list[KeyEntry] = []
    unruled: list[str] = []
    collection = "params"

    def visit(node: Mapping[str, Any], path: Path, torch_path: Path) -> None:
        leaves = {k: tuple(np.shape(v)) for k, v in node.items() if not isinstance(v, Mapping)}
        layer = layers.get(path)
        rules = leaf_rules.layer_rules(None if layer is None else layer.layer_type, leaves)
        if layer is not None and _flax_layer_without_rule(layer.layer_type):
            kind = getattr(layer.layer_type, "__name__", "?")
            unruled.extend("/".join((*path, k)) + f" ({kind})" for k in leaves)
        prefix = leaf_rules.torch_prefix(torch_path)
        for name, value in node.items():
            if isinstance(value, Mapping):
                child = layers.get((*path, name))
                segments = child.torch_path if child is not None else (*torch_path, name)
                visit(value, (*path, name), segments)
            else:
                rule = leaf_rules.leaf_rule(rules, name)
                entries.append(
                    KeyEntry(
                        (*path, name), prefix + rule.torch_name, rule, leaves[name], collection
                    )
                )
                if collection == "batch_stats" and leaf_rules.is_flax_batch_norm(rules):
                    counter = prefix + COUNTER
                    if name == "mean" and counter not in {e.torch_key for e in entries}:
                        entries.append(
                            KeyEntry((*path, COUNTER), counter, LeafRule(COUNTER), (), TORCH_ONLY)
                        )

    root = layers.get(())
    visit(params, (), () if root is None else root.torch_path)
    if batch_stats:
        collection = "batch_stats"
        visit(batch_stats, (), () if root is None else root.torch_path)
    if unruled:
        raise ValueError(
            f"no torch rule for the Flax leaves {', '.join(unruled[:8])}: their layer is not "
            f"one lstm_jax knows (Dense, Embed, LayerNorm, Conv, BatchNorm, ...); say how it "
            f"maps with lstm_jax.register_layer(its class, kind or rules)"
        )
    keys = [e.torch_key for e in entries]
    clashes = sorted({k for k in keys if keys.count(k) > 1})
    if clashes:
        raise ValueError(
            "two Flax leaves pair with the same torch key: "
            + "; ".join(
                f"{k} <- {', '.join(e.flax_name for e in entries if e.torch_key == k)}"
                for k in clashes
            )
        )
    return entries


def _flax_layer_without_rule(layer_type: type | None) -> bool:
    """A layer of Flax's own library (its leaves carry Flax's names and layouts) that no
    rule maps: its leaves would reach torch under Flax's names. A user's module without
    a rule keeps its (torch) names by design."""
    return (
        layer_type is not None
        and layer_type.__module__.startswith("flax.")
        and leaf_rules.rules_for_type(layer_type) is None
        and layer_type not in (nn.Module, nn.Sequential)
    )


def _set(tree: dict[str, Any], path: Path, value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def torch_params_to_flax(arrays: Mapping[str, Any], entries: Sequence[KeyEntry]) -> dict[str, Any]:
    """``{torch key: array}`` -> the Flax params tree, each leaf through its rule
    (JAX-traceable: gradients come back in torch's layout)."""
    return torch_to_flax_variables(arrays, entries).get("params", {})


def torch_to_flax_variables(
    arrays: Mapping[str, Any], entries: Sequence[KeyEntry]
) -> dict[str, Any]:
    """``{torch key: array}`` -> ``{"params": ..., "batch_stats": ...}`` (the latter only
    when ``entries`` hold buffers); torch's counter is left aside for Flax's BatchNorm."""
    variables: dict[str, Any] = {}
    for entry in entries:
        if entry.collection == TORCH_ONLY or entry.torch_key not in arrays:
            continue
        tree = variables.setdefault(entry.collection, {})
        _set(tree, entry.flax_path, entry.rule.from_torch(arrays[entry.torch_key]))
    return variables


def check_state_dict(
    arrays: Mapping[str, Any],
    entries: Sequence[KeyEntry],
    ties: Mapping[str, str],
    what: str,
) -> None:
    """``load_state_dict(strict=True)``'s check: every entry's key present with its torch
    shape, every key used (a key tied to a used one counts as used). The error names
    each key, both shapes and the Flax leaf it pairs with."""
    group = {key: ties.get(key, key) for key in arrays}
    used_groups = {group.get(e.torch_key, e.torch_key) for e in entries}
    actual = {
        k: tuple(np.shape(v))
        for k, v in arrays.items()
        if k in {e.torch_key for e in entries} or group[k] not in used_groups
    }
    expected = {e.torch_key: e.torch_shape() for e in entries}
    try:
        check_param_shapes(expected, actual, what)
    except ValueError as err:
        involved = [
            e
            for e in entries
            if e.torch_key not in actual or actual[e.torch_key] != expected[e.torch_key]
        ]
        pairs = ", ".join(f"{e.torch_key} <- {e.flax_name}" for e in involved[:12])
        hint = f" (torch key <- Flax leaf: {pairs})" if pairs else ""
        unexpected = [k for k in actual if k not in expected]
        if unexpected:
            hint += (
                ". Name the Flax submodules as the torch model's attributes; a layer of your "
                "own needs a rule: lstm_jax.register_layer"
            )
        hint += _naming_hints([k for k in expected if k not in actual], unexpected)
        raise ValueError(f"{err}{hint}") from None


def counter_from_torch(key: str, array: np.ndarray) -> np.ndarray:
    """torch's int64 ``num_batches_tracked`` in JAX's counter dtype (int32 unless x64),
    exactly, or a ``ValueError`` for a count int32 cannot hold."""
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{key}: expected an integer counter (torch's int64), got {array.dtype}")
    dtype = np.dtype(counter_dtype())
    if np.any(array > np.iinfo(dtype).max) or np.any(array < 0):
        raise ValueError(
            f"{key}: expected a count that {dtype} holds (JAX runs in 32-bit mode), got "
            f"{int(array)}: enable jax_enable_x64 for int64 counters"
        )
    return array.astype(dtype)


def counter_to_torch(array: Any) -> np.ndarray:
    """A JAX counter as torch's int64 ``num_batches_tracked``."""
    return np.asarray(array).astype(np.int64)


def warn_flax_batch_norm(entries: Sequence[KeyEntry], who: str) -> None:
    """Say where a Flax ``nn.BatchNorm`` / ``nnx.BatchNorm`` stands for a torch BatchNorm:
    its statistics transfer, its training does not match torch's."""
    warn_flax_batch_norm_layers(
        [e.torch_key for e in entries if e.collection == TORCH_ONLY], who, stacklevel=4
    )


def warn_flax_batch_norm_layers(counters: Sequence[str], who: str, stacklevel: int = 3) -> None:
    """The warning of :func:`warn_flax_batch_norm`, given the torch counter keys of the
    Flax BatchNorm layers."""
    layers = [key.removesuffix(COUNTER) for key in counters]
    if layers:
        warnings.warn(
            f"{who}: {', '.join(p.rstrip('.') or 'the model' for p in layers)} is Flax's "
            f"BatchNorm standing for torch's: weight/bias and running_mean/running_var "
            f"transfer (eval-mode outputs match), but Flax's momentum weights the old value "
            f"(torch's momentum=0.1 is Flax's 0.9), its running variance is the biased one "
            f"and it has no num_batches_tracked (read and left aside, written as 0), so "
            f"training-mode statistics differ from torch's; use lstm_jax.BatchNorm1d / "
            f"BatchNorm2d for exact training parity",
            UserWarning,
            stacklevel=stacklevel,
        )


BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def _listed_segments(key: str, others: Sequence[str]) -> list[str]:
    """The segments ``name_<i>`` of ``key`` that, written ``name.<i>``, give a key of ``others``."""
    parts = key.split(".")
    return [
        seg
        for i, seg in enumerate(parts)
        if re.fullmatch(r".+_\d+", seg)
        and ".".join([*parts[:i], *seg.rsplit("_", 1), *parts[i + 1 :]]) in others
    ]


def _naming_hints(missing: Sequence[str], unexpected: Sequence[str]) -> str:
    """What the usual near misses between a Flax mirror and torch's keys come from: a
    list made in ``@compact`` (Flax ``blocks_0``, torch ``blocks.0``), BatchNorm's buffers."""
    hints = []
    listed = sorted({seg for key in missing for seg in _listed_segments(key, unexpected)})
    if listed:
        base, index = listed[0].rsplit("_", 1)
        hints.append(
            f"; {', '.join(listed)}: Flax names a list of submodules made inside @nn.compact "
            f"{listed[0]}, torch {base}.{index}: declare it in setup as a list attribute "
            f"(self.{base} = [...])"
        )
    buffers = [k for k in unexpected if k.rsplit(".", 1)[-1] in BUFFER_NAMES]
    if buffers:
        hints.append(
            f"; {', '.join(buffers[:4])}: BatchNorm's running statistics are torch buffers "
            f"(Flax keeps them in batch_stats): the Flax layer in that place must be a "
            f"BatchNorm that keeps them (lstm_jax.BatchNorm1d, nn.BatchNorm)"
        )
    missing_buffers = [k for k in missing if k.rsplit(".", 1)[-1] in BUFFER_NAMES]
    if missing_buffers:
        hints.append(
            f"; {', '.join(missing_buffers[:4])}: buffers the Flax model keeps (batch_stats) "
            f"and the state dict lacks: pass the whole state_dict() (buffers included), "
            f"not named_parameters()"
        )
    return "".join(hints)


# torch dtypes without a numpy counterpart (``tensor.numpy()`` refuses them).
NUMPYLESS_TORCH_DTYPES = frozenset(
    {
        "torch.bfloat16",
        "torch.float8_e4m3fn",
        "torch.float8_e5m2",
        "torch.float8_e4m3fnuz",
        "torch.float8_e5m2fnuz",
    }
)


def state_dict_array(key: str, value: Any) -> np.ndarray:
    """One ``state_dict`` value (torch tensor, JAX or numpy array) as numpy, or a
    ``TypeError`` naming ``key`` for what numpy cannot hold (bfloat16, None)."""
    if str(getattr(value, "dtype", "")) in NUMPYLESS_TORCH_DTYPES:
        raise TypeError(
            f"{key}: expected a float32 or float64 tensor, got {value.dtype}, which numpy "
            f"cannot hold: convert the state dict first, {{k: v.float() for k, v in "
            f"state_dict.items()}}"
        )
    if value is None or isinstance(value, str | bytes | Mapping):
        raise TypeError(f"{key}: expected a tensor or array, got {type(value).__name__}")
    return to_numpy(value, key)


def _copied(array: np.ndarray) -> jax.Array:
    """A JAX copy, as torch's ``load_state_dict`` copies: a view of a torch tensor's CPU
    memory would follow the torch model's in-place optimizer steps."""
    return jnp.array(array, copy=True)


def _check_dtypes(arrays: Mapping[str, np.ndarray]) -> None:
    for key, array in arrays.items():
        if key.rsplit(".", 1)[-1] == COUNTER and np.issubdtype(array.dtype, np.integer):
            continue  # torch's int64 counter: converted exactly (counter_from_torch)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"{key}: expected a floating point array, got dtype {array.dtype}")
        check_float64_allowed(array.dtype, key, ", or convert the state dict to float32 first")


# --- the built-in models' state dicts ------------------------------------------------------


LSTM_FIRST_KEY = "weight_ih_l0"
CELL_KEYS = ("weight_ih", "weight_hh")


def lstm_prefixes(state: Mapping[str, Any]) -> dict[str, str]:
    """``{prefix: "nn.LSTM" or "nn.LSTMCell"}`` for every module whose keys appear in
    ``state`` (``{key: array or shape}``) with an LSTM's gate rows (a GRU's or RNN's
    ``weight_ih_l0`` is not one)."""
    found: dict[str, str] = {}
    for key in state:
        for suffix, kind, partner in (
            (LSTM_FIRST_KEY, "nn.LSTM", "weight_hh_l0"),
            ("weight_ih", "nn.LSTMCell", "weight_hh"),
        ):
            if key.endswith(suffix) and (key[: -len(suffix)] == "" or key[-len(suffix) - 1] == "."):
                prefix = key[: -len(suffix)]
                if prefix + partner in state and _lstm_gates(state, prefix, partner):
                    found[prefix] = kind
    return found


def _lstm_gates(state: Mapping[str, Any], prefix: str, weight_hh: str) -> bool:
    """Whether ``prefix + weight_hh`` is (4*hidden_size, hidden_size or proj_size)."""
    value = state[prefix + weight_hh]
    shape = tuple(value) if isinstance(value, tuple) else tuple(getattr(value, "shape", ()))
    if len(shape) != 2 or shape[0] % 4:
        return False
    return shape[0] // 4 == shape[1] or f"{prefix}weight_hr_l0" in state


def _recurrent(keys: Mapping[str, Any]) -> bool:
    """Whether ``keys`` hold a recurrent layer's first weights (an RNN's, GRU's, LSTM's)."""
    return LSTM_FIRST_KEY in keys or CELL_KEYS[0] in keys


def _prefix_hint(keys: Mapping[str, Any]) -> str:
    """Where LSTM keys are in a whole model's keys (``{key: array or shape}``), and how
    to take them."""
    found = lstm_prefixes(keys)
    if not found:
        return "; no LSTM keys (weight_ih_l0 with weight_hh_l0) were found under any prefix"
    where = ", ".join(f"{p!r} ({kind})" for p, kind in found.items())
    return (
        f"; LSTM keys were found under the prefix(es) {where}: pass "
        f"prefix={next(iter(found))!r} to take that one alone, or model=<the Flax model>, "
        f"example=(<its init arguments>,) to convert the whole model"
    )


def _whole_model_error(keys: Mapping[str, Any], who: str) -> ValueError:
    listing = ", ".join(sorted(keys)[:12]) + (", ..." if len(keys) > 12 else "")
    return ValueError(
        f"{who}: expected the state dict of one nn.LSTM, nn.LSTMCell or LSTMModeler (keys "
        f"'weight_ih_l0' and 'weight_hh_l0', ...), got the {len(keys)} keys of a whole model "
        f"({listing}){_prefix_hint(keys)}"
    )


def _is_modeler_keys(keys: Sequence[str]) -> bool:
    head = {"linear.weight", "linear.bias"}
    return (
        any(k.startswith("lstm.") for k in keys)
        and any(k in head for k in keys)
        and all(k.startswith("lstm.") or k in head for k in keys)
    )


def _is_cell_keys(keys: Sequence[str]) -> bool:
    return all(k in keys for k in CELL_KEYS) and not any("." in k or "_l" in k for k in keys)


def builtin_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The keys and shapes of the built-in model (``nn.LSTM``, ``nn.LSTMCell`` or
    ``LSTMModeler``) that ``shapes`` (``{key: shape}``) describe; whether they fit is
    :func:`check_param_shapes`'s job."""
    keys = list(shapes)
    if _is_cell_keys(keys):
        w_ih, w_hh = shapes["weight_ih"], shapes["weight_hh"]
        if len(w_ih) != 2 or len(w_hh) != 2 or w_hh[0] != 4 * w_hh[1]:
            raise ValueError(
                f"expected an nn.LSTMCell state dict with weight_ih (4*hidden_size, input_size) "
                f"and weight_hh (4*hidden_size, hidden_size), got {tuple(w_ih)} and {tuple(w_hh)}"
                " (a GRUCell or RNNCell state dict?)"
            )
        bias = "bias_ih" in shapes or "bias_hh" in shapes
        return lstm_cell_param_shapes(w_hh[0] // 4, w_ih[1], bias)
    if _is_modeler_keys(keys):
        config, output_size = infer_config(shapes)
        return modeler_param_shapes(config, output_size or 1)
    if any("." in k for k in keys):
        raise _whole_model_error(shapes, "params_from_torch")
    config, _ = infer_config(shapes)
    return config.param_shapes()


def _take_prefix(arrays: dict[str, Any], prefix: str) -> dict[str, Any]:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix: expected a str such as 'rnn.', got {type(prefix).__name__}")
    prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."
    taken = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    if not taken:
        found = lstm_prefixes(arrays)
        raise ValueError(
            f"params_from_torch: no keys start with prefix {prefix!r}; LSTM keys were found "
            f"under {sorted(found) or 'no prefix'} (of {len(arrays)} keys)"
        )
    return taken


def _builtin_from_torch(
    arrays: dict[str, np.ndarray], model: Any, kind: str | None = None
) -> dict[str, Any]:
    shapes = {key: array.shape for key, array in arrays.items()}
    if model is None and kind is not None and kind != "LSTM":
        expected = _kind_shapes(shapes, kind)
    elif model is None:
        expected = builtin_shapes(shapes)
    elif isinstance(model, LSTMModeler):
        expected = expected_shapes(model)
    else:
        first = "weight_ih" if isinstance(model, CELLS) else LSTM_FIRST_KEY
        if first not in arrays:
            module = type(model).__name__
            kind = f"nn.{module}"
            raise ValueError(
                f"expected an {kind} state dict (keys {first!r}, "
                f"{first.replace('ih', 'hh')!r}, ...) for {type(model).__name__}, got keys "
                f"{sorted(arrays)[:12]}"
                + (_prefix_hint(arrays) if any("." in k for k in arrays) else "")
            )
        expected = expected_shapes(model, arrays[first].shape[-1])
    check_param_shapes(expected, shapes)
    _check_dtypes(arrays)
    return {"params": unflatten({key: _copied(arrays[key]) for key in expected})}


# --- the public calls ----------------------------------------------------------------------


def check_flax_model(model: Any) -> None:
    """Raise ``TypeError`` unless ``model`` is a Flax linen module instance, saying what
    came instead (the class itself, the torch model, an NNX module)."""
    if isinstance(model, nn.Module):
        return
    if isinstance(model, type):
        raise TypeError(
            f"model: expected a Flax module instance such as {model.__name__}(...), got the "
            f"class {model.__name__} itself"
        )
    if hasattr(model, "state_dict") and hasattr(model, "named_parameters"):
        raise TypeError(
            f"model: expected the Flax (linen) mirror of the torch model, got the torch "
            f"module {type(model).__name__}: pass torch_model.state_dict() as the state "
            f"dict and the Flax model as model="
        )
    if isinstance(model, nnx.Module):
        raise TypeError(
            f"model: the NNX {type(model).__name__} holds its parameters: use "
            f"module.load_state_dict(state_dict) / module.state_dict() instead"
        )
    raise TypeError(f"model: expected a Flax linen module, got {type(model).__name__}")


def check_nested(params: Mapping[str, Any], who: str) -> None:
    """Raise ``TypeError`` for a flat mapping with torch's dotted keys (a ``state_dict``)
    where a model of one's own's nested Flax params were expected."""
    dotted = sorted(
        str(k) for k, v in params.items() if "." in str(k) and not isinstance(v, Mapping)
    )
    if dotted:
        raise TypeError(
            f'{who}: expected Flax variables {{"params": {{...}}}} (nested, Flax names), got '
            f"a flat mapping with torch-style keys ({', '.join(dotted[:6])}, ...), a torch "
            f"state dict? convert it first: params_from_torch(state_dict, model=..., example=...)"
        )


def check_flax_params(
    params: Mapping[str, Any],
    entries: Sequence[KeyEntry],
    who: str,
    batch_stats: Mapping[str, Any] | None = None,
) -> None:
    """Strictness on the Flax side: every leaf of the model (``entries``) present in
    ``params`` (and ``batch_stats``) with its shape, and no other leaf. The error names
    each Flax leaf (with its torch key) and both shapes."""
    check_nested(params, who)
    expected = {e.flax_name: e.shape for e in entries if e.collection != TORCH_ONLY}
    actual = {k.replace(".", "/"): tuple(np.shape(v)) for k, v in flatten(params).items()}
    actual |= {
        "batch_stats:" + k.replace(".", "/"): tuple(np.shape(v))
        for k, v in flatten(batch_stats or {}).items()
    }
    try:
        check_param_shapes(expected, actual, f"{who}'s params (Flax leaves)")
    except ValueError as err:
        pairs = ", ".join(
            f"{e.flax_name} -> {e.torch_key}"
            for e in entries
            if e.collection != TORCH_ONLY and actual.get(e.flax_name) != e.shape
        )
        raise ValueError(
            f"{err} (Flax leaf -> torch key: {pairs})" if pairs else str(err)
        ) from None


def model_key_map(
    model: nn.Module,
    example: Sequence[Any] | None,
    params: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    what: str = "example",
    batch_stats: Any = None,
) -> list[KeyEntry]:
    """The key map of a Flax model, buffers (``batch_stats``) included: exact with
    ``example`` (the classes and list-held submodules are seen), else read off
    ``params``' (and ``batch_stats``') own leaves."""
    check_flax_model(model)
    if example is not None:
        shapes, layers = discover_layers(model, example, example_kwargs, what)
        return key_map(shapes.get("params", {}), layers, shapes.get("batch_stats"))
    if params is None:
        raise ValueError(
            f"{type(model).__name__} is not an lstm_jax built-in: pass example=(...), the "
            f"positional arguments of its init (only their shapes and dtypes are used)"
        )
    return key_map(params, bound_layers(model, params, batch_stats), batch_stats)


def params_from_torch(
    state_dict: Mapping[str, Any],
    model: Any = None,
    *,
    example: Sequence[Any] | None = None,
    prefix: str | None = None,
    tied: Mapping[str, str] | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """A torch ``state_dict`` -> Flax variables, strictly.

    Arguments:
        state_dict: {torch key: tensor or array}.
        model: optional Flax model. A built-in (``lstm_jax.LSTM``, ``LSTMModeler``,
            ``LSTMCell``) is checked against its configuration; any other needs ``example``.
            Without it the keys must be an ``nn.LSTM``'s, ``nn.LSTMCell``'s or
            ``LSTMModeler``'s, checked against the configuration they describe.
        example: the positional arguments of ``model.init`` (after the rng): arrays,
            ``jax.ShapeDtypeStruct``s or torch tensors; only shapes and dtypes are used.
        prefix: take only the keys under ``prefix`` (``"rnn."``: one ``nn.LSTM`` of a
            larger model), without it.
        tied: ``{torch key: the key whose tensor it shares}`` for ties that memory does
            not show (a checkpoint's record); ties among torch tensors are found by memory.
        kind: without ``model``: the state dict is an ``nn.GRU``'s / ``nn.GRUCell``'s
            (``"GRU"``) or an ``nn.RNN``'s / ``nn.RNNCell``'s (``"RNN_TANH"``, ``"RNN_RELU"``:
            their parameters are the same), checked against the configuration it
            describes. Without ``kind`` or ``model`` the keys must be an LSTM's (a GRU's
            state dict is refused, naming ``kind=``).

    Returns:
        ``{"params": {...}}`` ready for ``model.apply``, with ``"batch_stats"`` (torch's
        buffers ``running_mean``, ``running_var``, ``num_batches_tracked``) for a model
        with BatchNorm; values bitwise equal to the input (in the Flax layout of each
        leaf's rule; the int64 counter as int32 unless x64 is on, exactly). A Flax
        ``nn.BatchNorm`` in the model takes the statistics but not torch's counter or
        training convention: a ``UserWarning`` says so.

    Raises:
        ValueError: naming each missing or unexpected key and each shape mismatch (with
            the Flax leaf it pairs with), the prefixes of LSTM keys when a whole model's
            keys come where one LSTM's were expected, or a float64 state dict while JAX
            runs in 32-bit mode (it would be rounded).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"expected a mapping of parameter names to arrays, got {type(state_dict).__name__}"
            + (": pass model.state_dict()" if hasattr(state_dict, "state_dict") else "")
        )
    nested = [str(k) for k, v in state_dict.items() if isinstance(v, Mapping)]
    if nested:
        raise TypeError(
            f"params_from_torch: expected a flat torch state dict {{key: tensor or array}}, "
            f"got nested mappings under {nested[:6]} (Flax variables? they are Flax's "
            f"already; params_to_torch(variables, model=...) gives torch's keys)"
        )
    tied = check_tied(tied)
    ties = {**find_ties(state_dict), **tied}
    raw = dict(state_dict)
    for alias, source in tied.items():
        if alias not in raw and source in raw:
            raw[alias] = raw[source]
        elif (
            alias in raw
            and source in raw
            and not np.array_equal(
                state_dict_array(alias, raw[alias]), state_dict_array(source, raw[source])
            )
        ):  # a tie would drop the alias's own values where the Flax model holds one
            raise ValueError(
                f"tied: {alias!r} shares {source!r}, but the state dict holds different "
                f"values for them: drop it from tied (they are two tensors)"
            )
    if prefix is not None:
        whole = raw
        raw = _take_prefix(raw, prefix)
        if (
            model is None
            and kind in (None, "LSTM")
            and "" not in lstm_prefixes(raw)
            and not _is_modeler_keys(list(raw))
        ):
            raise ValueError(
                f"params_from_torch: expected the keys under prefix {prefix!r} to be an "
                f"nn.LSTM's, nn.LSTMCell's or LSTMModeler's, got {sorted(raw)[:8]}; LSTM "
                f"keys were found under {sorted(lstm_prefixes(whole)) or 'no prefix'}"
                + (" (a GRU's or RNN's? lstm_jax mirrors LSTMs)" if _recurrent(raw) else "")
            )
    arrays = {key: state_dict_array(key, value) for key, value in raw.items()}
    if model is None or isinstance(model, BUILT_IN):
        return _builtin_from_torch(arrays, model, kind)
    entries = model_key_map(model, example)
    check_state_dict(arrays, entries, ties, f"state_dict for {type(model).__name__}")
    warn_flax_batch_norm(entries, "params_from_torch")
    used = {e.torch_key: arrays[e.torch_key] for e in entries if e.collection != TORCH_ONLY}
    _check_dtypes(used)
    copied = {
        key: _copied(counter_from_torch(key, a) if key.endswith(COUNTER) else a)
        for key, a in used.items()
    }
    return {"params": {}, **torch_to_flax_variables(copied, entries)}


def params_to_torch(
    variables: Mapping[str, Any],
    model: Any = None,
    *,
    example: Sequence[Any] | None = None,
    tied: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Flax variables (or their ``"params"``) -> {torch key: numpy array}, bitwise.

    Arguments:
        variables: ``{"params": ...}`` or the params themselves.
        model: the Flax model they belong to (needed for a model of one's own; the
            built-ins' leaves already carry torch's names).
        example: as for :func:`params_from_torch`. Without it the model is bound to
            the params to find the submodules it holds as attributes (declared in
            ``setup``: their classes, lists, ``nn.Sequential``); a submodule created in
            a ``@compact`` method keeps its Flax name and its leaves decide its rule
            (exact for the built-in rules, not for a layer with a rule of its own).
        tied: ``{torch key: key it shares}``: the ties of the torch model whose tensor
            the Flax model holds once; each alias gets the same array.

    Returns:
        ``{torch key: numpy array}``, bitwise the parameters. Load into torch with
        ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()},
        strict=True)``.
    """
    params = params_of(variables, "params_to_torch", wrapper_optional=True)
    wrapped = isinstance(variables, Mapping) and "params" in variables
    batch_stats = variables.get("batch_stats") if wrapped else None
    if wrapped:
        check_collections(variables, "params_to_torch: variables")
    if batch_stats is not None and (model is None or isinstance(model, BUILT_IN)):
        raise ValueError(
            "params_to_torch: the variables hold batch_stats (torch buffers), which only a "
            "model of one's own has: pass model=<the Flax model> (and example=)"
        )
    if isinstance(model, BUILT_IN):  # checked against its options, as apply checks them
        flat = flatten(params)
        first = flat.get("weight_ih_l0", flat.get("weight_ih", 0))
        input_size = int(np.shape(first)[-1]) if np.ndim(first) == 2 else 0
        check_params(params, expected_shapes(model, input_size), "params_to_torch")
    if model is None:
        _check_torch_named(params)
    if model is None or isinstance(model, BUILT_IN):
        out = {key: np.array(value) for key, value in flatten(params).items()}
    else:
        check_nested(params, "params_to_torch")
        entries = model_key_map(model, example, params, batch_stats=batch_stats)
        if example is not None:  # the model's own shapes: strict, as from_torch is
            check_flax_params(params, entries, "params_to_torch", batch_stats)
        check_buffers_given(model, params, entries, batch_stats, "params_to_torch")
        warn_flax_batch_norm(entries, "params_to_torch")
        out = flax_params_to_torch(params, entries, batch_stats)
    for alias, source in check_tied(tied).items():
        if source not in out:
            raise ValueError(f"tied: {alias!r} shares {source!r}, which the params lack")
        if alias in out and not np.array_equal(out[alias], out[source]):
            raise ValueError(
                f"tied: {alias!r} would share {source!r}, but the params hold {alias!r} "
                f"themselves, with other values (shapes {out[alias].shape} and "
                f"{out[source].shape}): drop it from tied, or from the params"
            )
        out[alias] = out[source]
    return out


# Flax layers' leaf names that torch names otherwise (Dense, Conv, Embed, LayerNorm).
FLAX_LEAF_NAMES = ("kernel", "embedding", "scale")


def _check_torch_named(params: Mapping[str, Any]) -> None:
    """Without a model the leaves keep their names: refuse Flax layers' leaves, which
    would reach torch as ``decoder.kernel`` (Flax's name, Flax's layout)."""
    flax_named = [k for k in flatten(params) if k.rsplit(".", 1)[-1] in FLAX_LEAF_NAMES]
    if flax_named:
        raise ValueError(
            f"params_to_torch: expected the params of an lstm_jax built-in (torch's names "
            f"already), got Flax layers' leaves ({', '.join(flax_named[:6])}): pass "
            f"model=<the Flax model> (and example=) for torch's names and layouts"
        )


def check_tied(tied: Any) -> dict[str, str]:
    """``tied`` as ``{torch key: key it shares}`` (None: no ties), or ``TypeError``."""
    if tied is None:
        return {}
    if not isinstance(tied, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tied.items()
    ):
        raise TypeError(
            f"tied: expected a mapping {{torch key: the key whose tensor it shares}}, such "
            f"as {{'decoder.weight': 'encoder.weight'}}, got {tied!r:.200}"
        )
    return dict(tied)


def check_buffers_given(
    model: Any,
    params: Mapping[str, Any],
    entries: Sequence[KeyEntry],
    batch_stats: Mapping[str, Any] | None,
    who: str,
) -> None:
    """Refuse params alone where the model keeps buffers (a BatchNorm tracking running
    statistics): they would be dropped in silence."""
    if batch_stats is not None or any(e.collection == "batch_stats" for e in entries):
        return
    layers = bound_layers(model, params)
    keeping = [
        "/".join(path) or "the model"
        for path, layer in layers.items()
        if layer.layer_type is not None
        and (
            issubclass(layer.layer_type, nn.BatchNorm)
            or (
                issubclass(layer.layer_type, BatchNorm1d | BatchNorm2d)
                and _attribute(_module_at(model, path, params), "track_running_stats") is not False
            )
        )
    ]
    if keeping:
        raise ValueError(
            f"{who}: {', '.join(keeping)} keeps running statistics (torch buffers, Flax's "
            f"batch_stats), which the variables lack: expected the whole variables "
            f'{{"params": ..., "batch_stats": ...}}, got the params alone'
        )


def _module_at(model: nn.Module, path: Path, params: Mapping[str, Any]) -> Any:
    """The bound submodule at ``path`` (for reading its attributes), or None."""
    found: list[Any] = []

    def walk(root: nn.Module) -> None:
        node: Any = root
        for part in path:
            held = child_of(node, part)
            if held is None:
                return
            node = held[1]
        found.append(node)

    try:
        model.apply({"params": params}, method=walk)
    except Exception:  # a model whose setup needs more than its params
        return None
    return found[0] if found else None


def flax_params_to_torch(
    params: Mapping[str, Any],
    entries: Sequence[KeyEntry],
    batch_stats: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The Flax params (and ``batch_stats``) trees -> ``{torch key: numpy array}`` (C order,
    writable), each leaf through its rule, bitwise; counters as torch's int64 (0 for a
    Flax BatchNorm, which keeps none)."""
    out: dict[str, np.ndarray] = {}
    trees = {"params": params, "batch_stats": batch_stats}
    for entry in entries:
        if entry.collection == TORCH_ONLY:
            out[entry.torch_key] = np.array(0, np.int64)
            continue
        leaf: Any = trees[entry.collection]
        for part in entry.flax_path:
            if not isinstance(leaf, Mapping) or part not in leaf:
                raise ValueError(
                    f"{entry.collection} lack the leaf {entry.flax_name} (torch key "
                    f"{entry.torch_key})"
                )
            leaf = leaf[part]
        if entry.torch_key.endswith(COUNTER):
            out[entry.torch_key] = counter_to_torch(leaf)
            continue
        out[entry.torch_key] = np.array(entry.rule.to_torch(np.asarray(leaf)), order="C")
    return out
