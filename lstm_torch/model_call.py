"""How ``lstm_torch.fit`` calls a model: the lecture's ``LSTMModeler``, or any ``nn.Module``.

The calling convention mirrors ``lstm_jax.fit``'s for a Flax model of one's own
(:mod:`lstm_jax.train.model`), so the same call trains both sides the same way:

- ``model(x)`` -> the prediction, or a tuple whose first element is the prediction;
  ``x`` is one batch, (T, B, ...) time-major, or (B, T, ...) with ``batch_first``;
- with ``seq_lengths``: ``model(x, seq_lengths=lengths)``, ``lengths`` the batch's
  (B,) valid lengths as an int64 CPU tensor (what ``pack_padded_sequence`` takes);
- stateful: ``model(x, carry)`` -> ``(prediction, carry)``; batch k + 1 gets batch k's
  carry detached (``repackage_hidden``); the first batch of each epoch gets zeros
  shaped as the carry the model returns when called with ``carry=None`` (found once,
  in eval mode, without gradients).

The lecture's ``LSTMModeler`` keeps its own convention: its stored ``hidden_cell`` is
reset to zeros before every batch (stateful: the previous batch's, detached).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

# The keyword fit passes when forward takes it (lstm_jax.fit passes it to a Flax model too).
_KEYWORDS = ("seq_lengths",)


def is_lecture_model(model: nn.Module) -> bool:
    """The lecture's ``LSTMModeler`` (or a model built like it: ``lstm``, ``linear``,
    ``zero_hidden_cell``), trained through its stored ``hidden_cell``."""
    return all(hasattr(model, a) for a in ("lstm", "linear", "zero_hidden_cell"))


def detached(tree: Any) -> Any:
    """``tree`` (tensors in tuples, lists, dicts) with every tensor detached."""
    if isinstance(tree, torch.Tensor):
        return tree.detach()
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # a NamedTuple
        return type(tree)(*(detached(t) for t in tree))
    if isinstance(tree, list | tuple):
        return type(tree)(detached(t) for t in tree)
    if isinstance(tree, Mapping):
        return {k: detached(v) for k, v in tree.items()}
    return tree


def zeros_like_tree(tree: Any) -> Any:
    """Zeros of every tensor's shape, dtype and device in ``tree``."""
    if isinstance(tree, torch.Tensor):
        return torch.zeros_like(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(zeros_like_tree(t) for t in tree))
    if isinstance(tree, list | tuple):
        return type(tree)(zeros_like_tree(t) for t in tree)
    if isinstance(tree, Mapping):
        return {k: zeros_like_tree(v) for k, v in tree.items()}
    return tree


def structure(tree: Any) -> Any:
    """The nesting, types and tensor shapes of ``tree`` (to compare two carries)."""
    if isinstance(tree, torch.Tensor):
        return ("tensor", tuple(tree.shape), str(tree.dtype))
    if isinstance(tree, list | tuple):
        return (type(tree).__name__, tuple(structure(t) for t in tree))
    if isinstance(tree, Mapping):
        return ("dict", tuple((k, structure(v)) for k, v in tree.items()))
    return type(tree).__name__


class LectureCall:
    """The lecture's ``LSTMModeler``: ``hidden_cell`` set before every batch."""

    def __init__(self, model: nn.Module, batch_first: bool | None) -> None:
        self.model: Any = model
        modeler: Any = model  # an LSTMModeler by is_lecture_model
        own = bool(getattr(modeler.lstm, "batch_first", False))
        _check_layout(model, own, batch_first)
        self.batch_first = own
        self.input_size: int | None = modeler.lstm.input_size
        self.output_size: int | None = modeler.linear.out_features
        self._stored = model.hidden_cell

    def check(self, seq_lengths: Any, stateful: bool) -> None:
        """The LSTMModeler takes ``seq_lengths`` and carries ``hidden_cell``: nothing to refuse."""

    def zero_carry(self, x: torch.Tensor, lengths: torch.Tensor | None) -> Any:
        return self.model.zero_hidden_cell(x.shape[1] if not self.batch_first else x.shape[0])

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor | None, carry: Any, stateful: bool
    ) -> tuple[torch.Tensor, Any]:
        batch = x.shape[0] if self.batch_first else x.shape[1]
        self.model.hidden_cell = carry if stateful else self.model.zero_hidden_cell(batch)
        y_hat = self.model(x) if lengths is None else self.model(x, seq_lengths=lengths)
        # repackage_hidden: the next batch starts here, no gradient back
        return y_hat, (tuple(t.detach() for t in self.model.hidden_cell) if stateful else None)

    def restore(self) -> None:
        """Put back the stored ``hidden_cell`` (the last batch's, with its graph and batch
        size, would make the next forward of another batch size fail)."""
        self.model.hidden_cell = self._stored


class ModuleCall:
    """Any ``nn.Module``, called as :mod:`this module <lstm_torch.model_call>` describes."""

    def __init__(self, model: nn.Module, batch_first: bool | None) -> None:
        self.model = model
        own = getattr(model, "batch_first", None)
        if isinstance(own, bool):
            _check_layout(model, own, batch_first)
            self.batch_first = own
        else:
            if batch_first is not None and not isinstance(batch_first, bool):
                raise TypeError(f"batch_first: expected None or a bool, got {batch_first!r}")
            self.batch_first = bool(batch_first)
        self.input_size = None
        self.output_size = None
        self.name = type(model).__name__
        self.keywords, self.takes_carry = _call_signature(model)
        self._zeros: Any = None

    def check(self, seq_lengths: Any, stateful: bool) -> None:
        """Refuse, before any step, a call the model's ``forward`` cannot take."""
        if seq_lengths is not None and not ({"*", "seq_lengths"} & self.keywords):
            raise TypeError(
                f"seq_lengths: {self.name}.forward takes no seq_lengths argument (fit passes "
                f"the batch's lengths as seq_lengths=...: name the parameter so)"
            )
        if stateful and not self.takes_carry:
            raise TypeError(
                f"stateful=True: expected {self.name}.forward to take a carry after x "
                f"(model(x, carry) -> (prediction, carry)), got a forward without one"
            )

    def _forward(self, x: torch.Tensor, lengths: torch.Tensor | None, carry: Any, stateful: bool):
        args = (x, carry) if stateful else (x,)
        return self.model(*args) if lengths is None else self.model(*args, seq_lengths=lengths)

    def zero_carry(self, x: torch.Tensor, lengths: torch.Tensor | None) -> Any:
        """Zeros shaped as the carry the model returns for ``x`` and ``carry=None`` (found
        on the first call, in eval mode: no dropout drawn, no statistics updated)."""
        if self._zeros is None:
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.no_grad():
                    _, carry = self._split(self._forward(x, lengths, None, True), True)
            finally:
                self.model.train(was_training)
            self._zeros = zeros_like_tree(carry)
        return self._zeros

    def _split(self, out: Any, stateful: bool) -> tuple[torch.Tensor, Any]:
        if not stateful:
            return (out[0] if isinstance(out, tuple) else out), None
        if not isinstance(out, tuple) or len(out) != 2:
            got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
            raise TypeError(
                f"stateful training: expected {self.name} to return (prediction, carry), got {got}"
            )
        return out[0], out[1]

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor | None, carry: Any, stateful: bool
    ) -> tuple[torch.Tensor, Any]:
        y_hat, new_carry = self._split(self._forward(x, lengths, carry, stateful), stateful)
        if stateful and structure(new_carry) != structure(carry):
            raise TypeError(
                f"stateful training: {self.name} returned a carry of structure "
                f"{structure(new_carry)}, expected the structure it returns for carry=None "
                f"({structure(carry)})"
            )
        return y_hat, (detached(new_carry) if stateful else None)

    def restore(self) -> None:
        """Nothing stored to put back."""


def _check_layout(model: nn.Module, own: bool, batch_first: bool | None) -> None:
    if batch_first is not None and batch_first != own:
        raise ValueError(
            f"batch_first: {type(model).__name__} sets its own layout (batch_first={own}), "
            f"got batch_first={batch_first}"
        )


def _call_signature(model: nn.Module) -> tuple[frozenset[str], bool]:
    """The keywords among :data:`_KEYWORDS` that ``forward`` takes (``"*"``: any), and
    whether it takes a second positional argument (the carry)."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return frozenset({"*"}), True
    params = list(signature.parameters.values())  # bound: without self
    keywords = frozenset(
        p.name for p in params if p.name in _KEYWORDS and p.kind is not p.POSITIONAL_ONLY
    )
    if any(p.kind is p.VAR_KEYWORD for p in params):
        keywords |= {"*"}
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _KEYWORDS
    ]
    takes_carry = len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
    return keywords, takes_carry


def model_call(model: Any, batch_first: bool | None) -> LectureCall | ModuleCall:
    """The adapter ``fit`` calls ``model`` through.

    Raises:
        TypeError: ``model`` is not a ``torch.nn.Module``; ``batch_first`` not a bool.
        ValueError: ``batch_first`` contradicts the model's own layout.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model: expected an lstm_torch.LSTMModeler or any torch.nn.Module (a model of "
            f"your own), got {type(model).__name__}"
        )
    if is_lecture_model(model):
        return LectureCall(model, batch_first)
    return ModuleCall(model, batch_first)


__all__ = ["LectureCall", "ModuleCall", "detached", "is_lecture_model", "model_call"]
