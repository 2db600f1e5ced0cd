"""Arrays from either backend, and trees of them, as numpy (numpy only).

torch is never imported: a torch tensor is recognised by duck typing (it has
``detach``, ``cpu`` and ``device``), so ``lstm_jax`` accepts tensors without
depending on torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def is_torch_tensor(value: Any) -> bool:
    """Whether ``value`` looks like a ``torch.Tensor`` (duck typing, no torch import)."""
    return hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "device")


def is_pair(value: Any) -> bool:
    """Whether ``value`` is an (h, c) pair as torch takes one: a tuple or list of two."""
    return isinstance(value, tuple | list) and len(value) == 2


def describe_non_pair(value: Any) -> str:
    """What came instead of a pair, for an error: 'a tuple of 1', 'a NoneType'."""
    kind = f"a {type(value).__name__}"
    return kind + (f" of {len(value)}" if isinstance(value, tuple | list) else "")


def to_numpy(value: Any, name: str = "value") -> np.ndarray:
    """A torch tensor (any device, with or without grad), JAX or numpy array -> numpy.

    Raises:
        ValueError: a torch tensor on the meta device (no data to read; ``name`` says
            which, e.g. the state dict key).
    """
    if is_torch_tensor(value):
        if getattr(value.device, "type", None) == "meta":
            raise ValueError(
                f"{name}: expected a tensor holding data, got a torch tensor on the meta "
                f"device, which has none (a model built under torch.device('meta')? load "
                f"or initialize its weights first)"
            )
        value = value.detach().cpu()
    return np.asarray(value)


def host_tensor_to_numpy(value: Any, who: str, name: str) -> Any:
    """A CPU torch tensor as numpy (detached); anything else unchanged (a JAX tracer too).

    Arguments:
        value: what a module was called with (input, state, lengths).
        who, name: for the error: the module and the argument.

    Raises:
        TypeError: a torch ``PackedSequence`` (the JAX modules take ``seq_lengths``).
        ValueError: a torch tensor on another device than the CPU (a CUDA tensor):
            JAX cannot read its memory, and a silent copy to the host would hide a
            device transfer on every call.
    """
    if type(value).__name__ == "PackedSequence" and hasattr(value, "batch_sizes"):
        raise TypeError(
            f"{who}: expected {name} as a padded array, got a torch PackedSequence: pass "
            f"what pack_padded_sequence was given, the padded batch and seq_lengths=lengths"
        )
    if not is_torch_tensor(value):
        return value
    device = value.device
    if getattr(device, "type", str(device)) != "cpu":
        raise ValueError(
            f"{who}: expected {name} as an array or a CPU torch tensor, got a torch tensor "
            f"on device {device}: move it to the host first ({name}.cpu())"
        )
    return value.detach().numpy()


def host_call_args(who: str, x: Any, state: Any, seq_lengths: Any) -> tuple[Any, Any, Any]:
    """An ``nn.LSTM``-style call's input, initial state (a pair, or None) and lengths with
    every CPU torch tensor as numpy (:func:`host_tensor_to_numpy`); the rest unchanged."""
    if is_pair(state):  # a tuple, or a list as torch takes it
        h, c = (
            host_tensor_to_numpy(state[0], who, "h_0"),
            host_tensor_to_numpy(state[1], who, "c_0"),
        )
        named: Any = type(state)  # an LSTMState (a NamedTuple) stays one
        state = named(h, c) if hasattr(state, "_fields") else (h, c)
    return (
        host_tensor_to_numpy(x, who, "input"),
        state,
        host_tensor_to_numpy(seq_lengths, who, "seq_lengths"),
    )


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings joined on ".": ``{"lstm": {"weight_ih_l0": a}}`` ->
    ``{"lstm.weight_ih_l0": a}`` (Flax ``params`` -> torch ``state_dict`` keys)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
