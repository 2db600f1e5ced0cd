"""Weight transfer between torch ``state_dict``s and Flax variables.

Both sides use torch's names and layout, so transfer is flatten/unflatten on
"." plus array conversion: no transposes, no bias folding, bitwise round trips.
torch is never imported: any mapping of arrays works (tensors go through numpy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.common.config import (
    LSTMConfig,
    check_param_shapes,
    infer_config,
    modeler_param_shapes,
)


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device, with or without grad), jax or numpy array -> numpy."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, by duck typing
        value = value.detach().cpu()
    return np.asarray(value)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"lstm": {"weight_ih_l0": a}} -> {"lstm.weight_ih_l0": a}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


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
    """The state_dict names and shapes a ``lstm_jax.LSTM`` or ``LSTMModeler`` expects."""
    config: LSTMConfig = model.config
    if hasattr(model, "output_size"):
        return modeler_param_shapes(config, model.output_size)
    return config.param_shapes(input_size)


def params_from_torch(state_dict: Mapping[str, Any], model: Any = None) -> dict[str, Any]:
    """A torch ``state_dict`` (of ``nn.LSTM`` or ``LSTMModeler``) -> Flax variables.

    Arguments:
        state_dict: {torch key: tensor or array}.
        model: optional ``lstm_jax.LSTM``/``LSTMModeler`` to check the keys and shapes
            against; without it they are checked against the configuration the
            keys themselves describe.

    Returns:
        ``{"params": {...}}`` ready for ``model.apply``; values bitwise equal to the input.

    Raises:
        ValueError: naming each missing or unexpected key and each shape mismatch,
            or a float64 state dict while JAX runs in 32-bit mode (it would be rounded).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"expected a mapping of parameter names to arrays, got {type(state_dict).__name__}"
        )
    arrays = {key: to_numpy(value) for key, value in state_dict.items()}
    shapes = {key: array.shape for key, array in arrays.items()}
    if model is not None:
        input_size = arrays["weight_ih_l0"].shape[-1] if "weight_ih_l0" in arrays else None
        if input_size is None and not hasattr(model, "output_size"):
            raise ValueError(
                f"expected an nn.LSTM state dict (keys 'weight_ih_l0', 'weight_hh_l0', ...) "
                f"for {type(model).__name__}, got keys {sorted(arrays)[:12]}"
            )
        expected = expected_shapes(model, input_size)
    else:
        config, output_size = infer_config(shapes)
        expected = (
            config.param_shapes()
            if output_size is None
            else modeler_param_shapes(config, output_size)
        )
    check_param_shapes(expected, shapes)
    for key, array in arrays.items():
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"{key}: expected a floating point array, got dtype {array.dtype}")
        if array.dtype == np.float64 and not jax.config.jax_enable_x64:
            raise ValueError(
                f"{key} is float64 but JAX runs in 32-bit mode and would round it: enable "
                f"float64 (jax.config.update('jax_enable_x64', True)) or convert the "
                f"state dict to float32 first"
            )
    return {"params": unflatten({key: jnp.asarray(arrays[key]) for key in expected})}


def params_to_torch(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax variables (or their ``"params"``) -> {torch key: numpy array}, bitwise.

    Load into torch with
    ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    params = variables.get("params", variables) if isinstance(variables, Mapping) else None
    if params is None:
        raise TypeError(f"expected Flax variables (a mapping), got {type(variables).__name__}")
    return {key: np.array(value) for key, value in flatten(params).items()}
