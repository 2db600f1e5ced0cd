"""torch's ``state_dict()`` / ``load_state_dict()`` for any Flax NNX module.

Generic over ``flax.nnx`` (it knows no lstm_jax module), so the checkpoints and the
parity report take NNX models too; :mod:`lstm_jax.nnx` gives its modules these as methods.

An NNX model whose attributes carry the torch model's names pairs its parameter
path ``a.b.<leaf>`` with the torch key ``a.b.<torch name>``; the leaf rules of
:mod:`lstm_jax.interop.leaf_rules` give each layer's torch names and layouts
(``nnx.Linear``'s ``kernel`` is ``weight`` transposed, ``nnx.Embed``'s
``embedding`` is ``weight``, ``nnx.LayerNorm``'s ``scale`` is ``weight``,
``nnx.Conv``'s ``kernel`` has its axes permuted; lstm_jax's own NNX modules and
any leaf without a rule keep their names). List-held submodules (``nnx.List``)
give ``layers.0.weight`` as ``nn.ModuleList`` does.

Only ``nnx.Param`` leaves are torch parameters: the stored ``hidden_cell``,
rng streams and other state stay out, as torch keeps a plain attribute out of
its ``state_dict``. Batch statistics (``nnx.BatchStat``) are torch's buffers:
``lstm_jax.nnx.BatchNorm1d``'s keep torch's names (``running_mean``, ``running_var``,
``num_batches_tracked``, the counter int64 on torch's side), Flax's ``nnx.BatchNorm``'s
``mean``/``var`` map to ``running_mean``/``running_var`` (its missing counter is read
and left aside, written as 0, with a warning: its training convention is not torch's).

:func:`load_state_dict` is all or nothing: every key, shape and dtype is checked
before any parameter changes. Values keep the module's dtype and are bitwise
those given (a cast that would round, float64 into float32, is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lstm_jax.common.config import check_param_shapes
from lstm_jax.common.ties import find_ties
from lstm_jax.interop import leaf_rules
from lstm_jax.interop.transfer import (
    _check_dtypes,
    counter_from_torch,
    counter_to_torch,
    state_dict_array,
    warn_flax_batch_norm_layers,
)

Path = tuple[Any, ...]

for _layer, _kind in (
    (nnx.Linear, "dense"),
    (nnx.Embed, "embed"),
    (nnx.LayerNorm, "layer_norm"),
    (nnx.RMSNorm, "layer_norm"),  # torch's nn.RMSNorm: weight
    (nnx.GroupNorm, "layer_norm"),  # torch's nn.GroupNorm: weight, bias
    (nnx.Conv, "conv"),
    (nnx.BatchNorm, "batch_norm"),  # Flax's conventions: see leaf_rules
):
    if leaf_rules.rules_for_type(_layer) is None:
        leaf_rules.register_layer(_layer, _kind)


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` left aside, as torch returns it."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class TorchLeaf(NamedTuple):
    """One torch parameter or buffer of an NNX model: its ``nnx.Param`` or
    ``nnx.BatchStat`` (None for a Flax ``nnx.BatchNorm``'s counter, which it lacks), its
    leaf rule and its path in the module (as ``nnx.split`` / ``nnx.iter_graph`` give it)."""

    variable: nnx.Variable | None
    rule: leaf_rules.LeafRule
    path: Path


def _rank(parent: Any, key: Any) -> int:
    """Where attribute ``key`` was assigned in ``parent`` (torch orders its state_dict by
    registration; NNX's own traversal sorts names)."""
    names = list(vars(parent)) if hasattr(parent, "__dict__") else []
    return names.index(str(key)) if str(key) in names else len(names)


def torch_leaves(module: nnx.Module) -> dict[str, TorchLeaf]:
    """Every ``nnx.Param`` of ``module`` under its torch key, in assignment order.

    Buffers (``nnx.BatchStat``) come with the parameters, as in torch's ``state_dict``.
    """
    nodes: dict[Path, Any] = {}
    variables: dict[Path, nnx.Variable] = {}
    for path, value in nnx.iter_graph(module):
        if isinstance(value, nnx.Param | nnx.BatchStat):
            variables[tuple(path)] = value
        elif isinstance(value, nnx.Pytree):
            nodes[tuple(path)] = value

    def order(path: Path) -> tuple[int, ...]:
        return tuple(_rank(nodes.get(path[:i]), path[i]) for i in range(len(path)))

    by_owner: dict[Path, dict[str, tuple[int, ...]]] = {}
    for path, variable in variables.items():
        by_owner.setdefault(path[:-1], {})[str(path[-1])] = tuple(np.shape(variable.get_value()))
    leaves: dict[str, TorchLeaf] = {}
    for path in sorted(variables, key=order):
        owner = nodes.get(path[:-1])
        rules = leaf_rules.layer_rules(None if owner is None else type(owner), by_owner[path[:-1]])
        rule = leaf_rules.leaf_rule(rules, str(path[-1]))
        segments = [  # nnx.Sequential holds its items as .layers; nn.Sequential's keys are 0.
            str(part)
            for i, part in enumerate(path[:-1])
            if not (part == "layers" and isinstance(nodes.get(path[:i]), nnx.Sequential))
        ]
        prefix = leaf_rules.torch_prefix(segments)
        key = prefix + rule.torch_name
        if key in leaves:
            raise ValueError(f"state_dict: two parameters map to the torch key {key!r}")
        leaves[key] = TorchLeaf(variables[path], rule, path)
        if str(path[-1]) == "mean" and leaf_rules.is_flax_batch_norm(rules):
            counter = prefix + leaf_rules.COUNTER  # torch's, which Flax's BatchNorm lacks
            leaves[counter] = TorchLeaf(None, leaf_rules.LeafRule(leaf_rules.COUNTER), path)
    return leaves


def _is_counter(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == leaf_rules.COUNTER


def _torch_shape(leaf: TorchLeaf) -> tuple[int, ...]:
    if leaf.variable is None:
        return ()
    value = leaf.variable.get_value()
    spec = jax.ShapeDtypeStruct(np.shape(value), value.dtype)
    return tuple(jax.eval_shape(leaf.rule.to_torch, spec).shape)


def state_dict(module: nnx.Module) -> dict[str, np.ndarray]:
    """``module``'s parameters as ``{torch key: numpy array}``, bitwise.

    Returns:
        ``{torch key: numpy array}``. Load into torch with
        ``torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    leaves = torch_leaves(module)
    warn_flax_batch_norm_layers(
        [k for k, leaf in leaves.items() if leaf.variable is None], "state_dict"
    )
    out = {}
    for key, leaf in leaves.items():
        if leaf.variable is None:
            out[key] = np.array(0, np.int64)
        elif _is_counter(key):
            out[key] = counter_to_torch(leaf.variable.get_value())
        else:
            out[key] = np.array(leaf.rule.to_torch(np.asarray(leaf.variable.get_value())))
    return out


def _converted(key: str, leaf: TorchLeaf, array: np.ndarray) -> jax.Array:
    """The torch array in the leaf's layout and dtype, or an error naming the key."""
    if leaf.variable is None:  # only leaves the model holds are converted
        raise ValueError(f"{key}: the NNX model holds no variable for this torch key")
    if _is_counter(key):
        return jnp.array(counter_from_torch(key, array), copy=True)
    target = np.dtype(leaf.variable.get_value().dtype)
    if not np.can_cast(array.dtype, target, casting="safe"):
        raise TypeError(
            f"{key}: expected dtype {target} (the module's parameters), got {array.dtype}, "
            f"which would be rounded: convert the state dict or build the module with "
            f"param_dtype={array.dtype}"
        )
    # a copy: on the CPU jnp.asarray may alias the numpy memory of a torch tensor, which
    # torch's optimizer then changes in place under the module (torch's load copies too)
    return jnp.array(leaf.rule.from_torch(array), dtype=target, copy=True)


def load_state_dict(
    module: nnx.Module, state_dict: Mapping[str, Any], strict: bool = True
) -> IncompatibleKeys:
    """Copy a torch ``state_dict`` (tensors or arrays) into ``module``'s parameters.

    Arguments:
        state_dict: ``{torch key: tensor or array}``, e.g. ``torch_model.state_dict()``.
        strict: every key of the module present and no other (torch's meaning); with
            False, missing and unexpected keys are returned instead of raised.
            Shapes must match either way.

    Returns:
        ``IncompatibleKeys(missing_keys, unexpected_keys)``.

    Raises:
        ValueError: naming each missing and unexpected key and each shape mismatch with
            both shapes; nothing is changed when anything is wrong.
        TypeError: a non-floating array, one that the module's dtype would round, or
            nested mappings (Flax variables) instead of torch's flat keys.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"load_state_dict: expected a mapping of parameter names to tensors or arrays, "
            f"got {type(state_dict).__name__}"
        )
    nested = [key for key, value in state_dict.items() if isinstance(value, Mapping)]
    if nested:
        raise TypeError(
            f"load_state_dict: expected a flat torch state dict {{key: tensor or array}}, "
            f"got nested mappings under {nested} (Flax variables?): pass "
            f"lstm_jax.params_to_torch(variables), or use lstm_jax.nnx.from_linen"
        )
    leaves = torch_leaves(module)
    arrays = {key: state_dict_array(key, value) for key, value in state_dict.items()}
    expected = {key: _torch_shape(leaf) for key, leaf in leaves.items()}
    # a tied tensor (torch's decoder.weight = encoder.weight) that the module holds once
    group = find_ties(state_dict)
    held = {group.get(key, key) for key in expected if key in arrays}
    arrays = {k: a for k, a in arrays.items() if k in expected or group.get(k, k) not in held}
    actual = {key: tuple(array.shape) for key, array in arrays.items()}
    what = f"loading state_dict for {type(module).__name__}"
    missing = [key for key in expected if key not in actual]
    unexpected = [key for key in actual if key not in expected]
    if strict:
        check_param_shapes(expected, actual, what)
    else:
        common = [key for key in expected if key in actual]
        check_param_shapes({k: expected[k] for k in common}, {k: actual[k] for k in common}, what)
    _check_dtypes({key: arrays[key] for key in expected if key in arrays})
    holding = [k for k in expected if leaves[k].variable is not None]
    warn_flax_batch_norm_layers(
        [k for k in expected if leaves[k].variable is None], "load_state_dict"
    )
    values = {key: _converted(key, leaves[key], arrays[key]) for key in holding if key in arrays}
    for key, value in values.items():
        variable = leaves[key].variable
        if variable is not None:  # always, for a key in `holding`
            variable.set_value(value)
    return IncompatibleKeys(missing, unexpected)


def variable_at(module: nnx.Module, path: Path) -> nnx.Variable:
    """The variable at ``path`` (a :class:`TorchLeaf`'s) in ``module`` or a copy of it."""
    node: Any = module
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    return node
