"""Leaf rules: how one layer's Flax parameter leaf is named and laid out in torch.

A Flax model whose submodules carry the torch model's attribute names pairs the
Flax path ``a/b/<leaf>`` with the torch key ``a.b.<torch name>``. A *leaf rule*
says, for one layer kind, the torch name of each Flax leaf and how its array
converts in each direction. The rules depend on neither linen nor NNX: a layer
class is mapped to a *kind* (:func:`register_layer`), and a kind holds its rules.

=================  ==============  ===================  ===========================
kind               Flax leaf       torch key            array
=================  ==============  ===================  ===========================
``dense``          ``kernel``      ``weight``           transposed: (in, out) ↔ (out, in)
                   ``bias``        ``bias``             as is
``embed``          ``embedding``   ``weight``           as is (num_embeddings, features)
``layer_norm``     ``scale``       ``weight``           as is
                   ``bias``        ``bias``             as is
``conv``           ``kernel``      ``weight``           axes permuted: (K…, in, out) ↔ (out, in, K…)
                   ``bias``        ``bias``             as is
``batch_norm``     ``scale``       ``weight``           as is (Flax's ``nn.BatchNorm``,
                   ``bias``        ``bias``             ``nnx.BatchNorm``)
                   ``mean``        ``running_mean``     as is (``batch_stats``)
                   ``var``         ``running_var``      as is (``batch_stats``)
``torch_named``    any             the same name        as is (``lstm_jax.LSTM``,
                                                        ``Linear``, ``LSTMCell``,
                                                        ``BatchNorm1d``/``2d``)
=================  ==============  ===================  ===========================

Buffers: the ``batch_stats`` collection pairs with torch's buffers by the same rules
(``lstm_jax.BatchNorm1d``'s ``running_mean``, ``running_var``, ``num_batches_tracked``
keep their names). Flax's own BatchNorm has no ``num_batches_tracked``: torch's counter
is read and left aside, and written as 0 (with a warning: Flax's momentum weights the
old value and its running variance is biased, so only eval-mode outputs match torch).

Linen's ``nn.Dense``, ``nn.Embed``, ``nn.LayerNorm`` (and ``nn.GroupNorm``,
``nn.RMSNorm`` as layer_norm), ``nn.Conv`` and lstm_jax's own modules are registered
by :mod:`lstm_jax.interop.transfer`; Flax NNX's
(``nnx.Linear``, ``nnx.Embed``, ``nnx.LayerNorm``, ``nnx.GroupNorm``, ``nnx.RMSNorm``,
``nnx.Conv``) register the same kinds. A layer of one's own::

    from lstm_jax.interop.leaf_rules import LeafRule, register_layer

    register_layer(MyGatedDense, {"w": LeafRule("weight", to_torch=lambda a: a.T,
                                                from_torch=lambda a: a.T),
                                  "b": LeafRule("bias")})

A class without a rule keeps its leaves' names and layout (a module of one's own
whose ``self.param`` names are torch's). Where a layer's class is not known (a
submodule created inside ``@compact``, seen by ``params_to_torch`` without
``example``), its kind is read off its leaves (:func:`kind_from_leaves`):
``embedding`` -> embed, ``kernel`` of 2 axes -> dense, of 3 or more -> conv,
``scale`` -> layer_norm, anything else -> torch_named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Convert = Callable[[Any], Any]


def _same(array: Any) -> Any:
    return array


def _transpose(array: Any) -> Any:
    return array.T


def conv_kernel_to_torch(kernel: Any) -> Any:
    """Flax (K_1, …, K_d, in/groups, out) -> torch (out, in/groups, K_1, …, K_d)."""
    n = kernel.ndim
    return kernel.transpose((n - 1, n - 2, *range(n - 2)))


def conv_kernel_from_torch(weight: Any) -> Any:
    """torch (out, in/groups, K_1, …, K_d) -> Flax (K_1, …, K_d, in/groups, out)."""
    n = weight.ndim
    return weight.transpose((*range(2, n), 1, 0))


@dataclass(frozen=True)
class LeafRule:
    """One Flax leaf's torch name and its array conversions (numpy or JAX arrays in,
    the same kind out; JAX-traceable, so gradients convert through them too).

    Attributes:
        torch_name: the last part of the torch key (``weight``, ``bias``, ...).
        to_torch: Flax layout -> torch layout.
        from_torch: torch layout -> Flax layout (the inverse of ``to_torch``).
    """

    torch_name: str
    to_torch: Convert = _same
    from_torch: Convert = _same


TORCH_NAMED = "torch_named"
KIND_RULES: dict[str, dict[str, LeafRule]] = {
    "dense": {
        "kernel": LeafRule("weight", _transpose, _transpose),
        "bias": LeafRule("bias"),
    },
    "embed": {"embedding": LeafRule("weight")},
    "layer_norm": {"scale": LeafRule("weight"), "bias": LeafRule("bias")},
    "conv": {
        "kernel": LeafRule("weight", conv_kernel_to_torch, conv_kernel_from_torch),
        "bias": LeafRule("bias"),
    },
    "batch_norm": {
        "scale": LeafRule("weight"),
        "bias": LeafRule("bias"),
        "mean": LeafRule("running_mean"),
        "var": LeafRule("running_var"),
    },
    TORCH_NAMED: {},  # every leaf keeps its name and layout
}

_LAYER_KINDS: dict[type, str] = {}
_LAYER_RULES: dict[type, dict[str, LeafRule]] = {}


def register_layer(layer_type: type, kind: str | Mapping[str, LeafRule]) -> None:
    """Say how the parameters of ``layer_type`` (and its subclasses) map to torch.

    Arguments:
        layer_type: a linen or NNX module class.
        kind: one of :data:`KIND_RULES`' kinds (``"dense"``, ``"embed"``,
            ``"layer_norm"``, ``"conv"``, ``"batch_norm"``, ``"torch_named"``), or the layer's own
            ``{flax leaf name: LeafRule}``; leaves it does not name keep their name.
    """
    if not isinstance(layer_type, type):
        raise TypeError(f"register_layer: expected a class, got {layer_type!r}")
    if isinstance(kind, str):
        if kind not in KIND_RULES:
            raise ValueError(
                f"register_layer: kind must be one of {sorted(KIND_RULES)}, got {kind!r}"
            )
        _LAYER_KINDS[layer_type] = kind
        _LAYER_RULES.pop(layer_type, None)
        return
    rules = dict(kind)
    for name, rule in rules.items():
        if not isinstance(rule, LeafRule):
            raise TypeError(
                f"register_layer: expected a LeafRule for leaf {name!r}, got {type(rule).__name__}"
            )
    _LAYER_RULES[layer_type] = rules
    _LAYER_KINDS.pop(layer_type, None)


def rules_for_type(layer_type: type) -> dict[str, LeafRule] | None:
    """The rules registered for ``layer_type`` or its nearest registered base class."""
    for cls in layer_type.__mro__:
        if cls in _LAYER_RULES:
            return _LAYER_RULES[cls]
        if cls in _LAYER_KINDS:
            return KIND_RULES[_LAYER_KINDS[cls]]
    return None


def kind_from_leaves(leaves: Mapping[str, tuple[int, ...]]) -> str:
    """A layer's kind read off its own leaves ``{name: shape}`` (class unknown)."""
    if "embedding" in leaves:
        return "embed"
    if "kernel" in leaves:
        return "dense" if len(leaves["kernel"]) == 2 else "conv"
    if "mean" in leaves or "var" in leaves:
        return "batch_norm"
    if "scale" in leaves:
        return "layer_norm"
    return TORCH_NAMED


def layer_rules(
    layer_type: type | None, leaves: Mapping[str, tuple[int, ...]]
) -> dict[str, LeafRule]:
    """The rules of one layer: its class's if registered; none (every leaf keeps its name
    and layout) for a class without a rule, such as a module of one's own holding torch-named
    ``self.param``s; where the class is unknown (None), those of the kind its leaves show
    (:func:`kind_from_leaves`)."""
    if layer_type is None:
        return KIND_RULES[kind_from_leaves(leaves)]
    rules = rules_for_type(layer_type)
    return KIND_RULES[TORCH_NAMED] if rules is None else rules


def leaf_rule(rules: Mapping[str, LeafRule], flax_name: str) -> LeafRule:
    """The rule of one leaf: the layer's, or its own name unchanged."""
    return rules.get(flax_name) or LeafRule(flax_name)


def torch_prefix(segments: Iterable[str]) -> str:
    """Torch's module prefix (``"a.b."``) from the torch names of a layer's path."""
    return "".join(f"{s}." for s in segments)


# Flax layers' leaf names that torch names otherwise: a leaf of these names reaching torch
# unchanged means its layer has no rule (Flax's name, Flax's layout).
FLAX_LEAF_NAMES = ("kernel", "embedding", "scale", "mean", "var")
COUNTER = "num_batches_tracked"


def is_flax_batch_norm(rules: Mapping[str, LeafRule]) -> bool:
    """Whether ``rules`` are Flax's BatchNorm's (``mean`` -> ``running_mean``): a layer
    without torch's ``num_batches_tracked`` and with Flax's momentum convention."""
    rule = rules.get("mean")
    return rule is not None and rule.torch_name == "running_mean"
