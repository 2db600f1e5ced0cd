"""A model reduced to what training needs: ``apply(variables, x, [carry], **kw)`` and a layout.

:func:`as_train_model` turns any ``flax.linen.Module`` into a :class:`TrainModel`;
everything in :mod:`lstm_jax.train` calls the model only through it, so other model
kinds (Flax NNX) need only another constructor of a :class:`TrainModel`.

The calling convention training uses:

- ``apply(variables, x, **kw)`` -> the prediction, or a tuple whose first element is
  the prediction (``LSTMModeler`` returns ``(y, hidden_cell)``);
- stateful training: ``apply(variables, x, carry, **kw)`` -> ``(prediction, carry)``;
  the first batch of each epoch passes zeros shaped as the carry the model returns
  when called with ``carry=None``;
- ``kw``: ``deterministic=`` (when the module's ``__call__`` takes it), ``train=``
  (its negation, Flax's other convention, when ``__call__`` names it),
  ``seq_lengths=`` (when given), ``rngs={"dropout": key}`` (with an ``rng``).

Training mode is the default (``deterministic=False``, ``train=True``, as torch's
``model.train()``), with or without an rng: a model that then draws dropout needs one
and is refused without (as is a dropout layer left deterministic in training mode,
which would train without it in silence); ``fit(..., deterministic=True)`` trains in
eval mode on purpose. In training mode the ``batch_stats`` collection is mutable and
its updates (BatchNorm's running statistics) are carried from step to step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import unfreeze

from lstm_jax.linen.modules import LSTM, LSTMModeler

PyTree = Any


@dataclass(frozen=True)
class TrainModel:
    """A model as training sees it (hashable: a static argument of the compiled run).

    Attributes:
        identity: what makes two TrainModels compile to the same program (the module).
        apply: ``apply(variables, x, [carry], **kw)``, see the module docstring.
        batch_first: batches are (B, T, ...) instead of (T, B, ...).
        keywords: the keyword arguments ``apply`` takes among ``deterministic``, ``train`` and
            ``seq_lengths`` (or ``"*"``: any).
        takes_carry: ``apply`` takes a carry after ``x`` (stateful training).
        input_size, output_size: the lecture's model's I and O (its data are checked
            against them and cast to floats); None for any other model.
        dropout: whether the model uses dropout in training mode (then it needs an
            ``rng``; without, an ``rng`` is ignored); None: not known (an ``rng``
            given is passed as the ``"dropout"`` stream).
        name: the model's class name, for messages.
        clone_with_param_dtype: the same model computing in another dtype (mixed
            precision), or None when the model has no ``param_dtype``.
        training: training mode (the default) or eval mode (``fit(deterministic=True)``).
        mode_keyword: ``apply`` takes ``training=`` itself (an NNX model's ``apply``).
        updated: the variable collections updated in training mode, where present.
    """

    identity: Hashable
    apply: Callable[..., Any] = field(compare=False)
    batch_first: bool
    keywords: frozenset[str]
    takes_carry: bool
    input_size: int | None
    output_size: int | None
    dropout: bool | None
    name: str
    clone_with_param_dtype: Callable[[Any], TrainModel] | None = field(default=None, compare=False)
    training: bool = True
    mode_keyword: bool = False
    updated: tuple[str, ...] = ("batch_stats",)

    def uses_rng(self, rng: jax.Array | None) -> bool:
        return rng is not None and self.dropout is not False and self.training

    def takes(self, keyword: str) -> bool:
        return "*" in self.keywords or keyword in self.keywords

    def prediction(
        self,
        variables: PyTree,
        x: jax.Array,
        carry: PyTree | None = None,
        *,
        stateful: bool = False,
        seq_lengths: jax.Array | None = None,
        rng: jax.Array | None = None,
    ) -> tuple[jax.Array, PyTree | None]:
        """(prediction, the new carry or None) for one batch ``x`` (model layout)."""
        prediction, new_carry, _ = self.prediction_and_updates(
            variables, x, carry, stateful=stateful, seq_lengths=seq_lengths, rng=rng
        )
        return prediction, new_carry

    def prediction_and_updates(
        self,
        variables: PyTree,
        x: jax.Array,
        carry: PyTree | None = None,
        *,
        stateful: bool = False,
        seq_lengths: jax.Array | None = None,
        rng: jax.Array | None = None,
    ) -> tuple[jax.Array, PyTree | None, dict[str, Any] | None]:
        """As :meth:`prediction`, and the collections the step updated (training mode:
        ``{"batch_stats": ...}``), or None."""
        training = self.training
        kw: dict[str, Any] = {}
        if self.mode_keyword:
            kw["training"] = training
        if self.takes("deterministic"):
            kw["deterministic"] = not training
        if "train" in self.keywords:  # named only: not sent into a **kwargs
            kw["train"] = training
        if rng is not None and training:
            kw["rngs"] = {"dropout": rng}
        if seq_lengths is not None:
            kw["seq_lengths"] = seq_lengths
        mutable = [c for c in self.updated if c in variables] if training else []
        if mutable:
            kw["mutable"] = mutable
        args = (x, carry) if stateful else (x,)
        try:
            if training:
                with nn.intercept_methods(_silent_dropout_refused(self.name)):
                    out = self.apply(variables, *args, **kw)
            else:
                out = self.apply(variables, *args, **kw)
        except flax.errors.InvalidRngError as error:
            if rng is None and 'for "dropout"' in str(error):
                raise ValueError(
                    f"{self.name} draws random numbers in training (Flax: {_first_line(error)}): "
                    f"expected an rng (fit(rng=jax.random.key(...)), a train_step's fifth "
                    f"argument), passed to apply as rngs={{'dropout': key}}, got none; "
                    f"to train in eval mode (no dropout, BatchNorm's running statistics "
                    f"fixed) on purpose: fit(..., deterministic=True)"
                ) from None
            raise ValueError(
                f"{self.name} draws from an rng stream other than 'dropout' (Flax: "
                f"{_first_line(error)}): training passes its rng as rngs={{'dropout': key}} "
                f"only; expected a model that draws from 'dropout', got one that does not"
            ) from None
        except flax.errors.ModifyScopeVariableError as error:
            raise TypeError(
                f"{self.name} updates a variable collection in training (Flax: "
                f"{_first_line(error)}): fit, make_train_step and update update 'batch_stats' "
                f"(in training mode) and keep every other collection as given; expected a "
                f"model that changes no other collection, got one that does; a loop of your "
                f"own can apply it with mutable=[...]"
            ) from None
        except (
            flax.errors.ScopeParamNotFoundError,
            flax.errors.ScopeParamShapeError,
            flax.errors.ScopeCollectionNotFound,
        ) as error:
            raise ValueError(
                f"variables: expected the variables of this {self.name} ({self.name}().init(key, "
                f"x)), got variables that do not fit it (Flax: {_first_line(error)})"
            ) from None
        updates = None
        if mutable:
            out, changed = out
            updates = {k: unfreeze(changed[k]) for k in mutable if k in changed}
        if not stateful:
            return (out[0] if isinstance(out, tuple) else out), None, updates
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(
                f"stateful training: expected {self.name} to return (prediction, carry), "
                f"got {f'a tuple of {len(out)}' if isinstance(out, tuple) else type(out).__name__}"
            )
        return out[0], out[1], updates


def _silent_dropout_refused(name: str) -> Callable[..., Any]:
    """An ``nn.intercept_methods`` interceptor for training mode: a dropout layer (Flax's
    ``nn.Dropout``, lstm_jax's ``LSTM``/``LSTMModeler`` with dropout between layers)
    called deterministic would train without its dropout and without a word."""

    def check(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        module = context.module
        if context.method_name == "__call__":
            silent = None
            if isinstance(module, nn.Dropout) and module.rate > 0:
                flag = kwargs.get("deterministic", args[1] if len(args) > 1 else None)
                silent = module.deterministic if flag is None else flag
                what = f"nn.Dropout({module.rate})"
            elif isinstance(module, LSTM | LSTMModeler) and uses_dropout(module):
                silent = kwargs.get("deterministic", True)
                what = f"{type(module).__name__}(dropout={module.dropout})"
            if silent is True:
                where = "/".join(module.path) or "the model"
                raise ValueError(
                    f"{name} in training mode: {where}, an {what}, is called "
                    f"deterministic=True, so training would run without its dropout and "
                    f"without a word: expected the model's training flag passed on to it "
                    f"(e.g. deterministic=not train), or fit(..., deterministic=True) to "
                    f"train in eval mode on purpose"
                )
        return next_fun(*args, **kwargs)

    return check


def uses_dropout(module: Any) -> bool:
    """An lstm_jax LSTM/LSTMModeler with dropout between its layers."""
    return float(module.dropout) > 0 and module.num_layers > 1


def _first_line(error: Exception) -> str:
    """A Flax error's message without its documentation link."""
    return str(error).split(" (https://")[0]


# The keyword arguments training passes when ``__call__`` takes them (see the module docstring).
_KEYWORDS = ("deterministic", "train", "seq_lengths")


def _call_signature(module: nn.Module) -> tuple[frozenset[str], bool]:
    """The keywords among ``deterministic``/``train``/``seq_lengths`` that ``__call__`` takes, and
    whether it takes a second positional argument (the carry)."""
    try:
        signature = inspect.signature(type(module).__call__)
    except (TypeError, ValueError):
        return frozenset({"*"}), True
    params = list(signature.parameters.values())[1:]  # without self
    keywords = frozenset(
        p.name for p in params if p.name in _KEYWORDS and p.kind is not p.POSITIONAL_ONLY
    )
    if any(p.kind is p.VAR_KEYWORD for p in params):
        keywords |= {"*"}
    # a flag after x (``__call__(self, x, train=False)``) is no carry
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _KEYWORDS
    ]
    takes_carry = len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
    return keywords, takes_carry


def as_train_model(model: Any, batch_first: bool | None = None) -> TrainModel:
    """Any ``flax.linen.Module`` as a :class:`TrainModel`.

    Arguments:
        model: the module. One with a ``batch_first`` attribute (``lstm_jax.LSTM``,
            ``LSTMModeler``) sets the layout itself; for any other one it is
            ``batch_first`` (default False: time-major (T, B, ...) batches).
        batch_first: None, or the layout of a model without its own ``batch_first``
            (for one with it, the same value).
    """
    if isinstance(model, TrainModel):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model: expected an lstm_jax model (LSTMModeler, LSTM) or any flax.linen.Module, "
            f"got {type(model).__name__}"
        )
    if batch_first is not None and not isinstance(batch_first, bool):
        raise TypeError(f"batch_first: expected None or a bool, got {batch_first!r}")
    own = getattr(model, "batch_first", None)
    if isinstance(own, bool):
        if batch_first is not None and batch_first != own:
            raise ValueError(
                f"batch_first: {type(model).__name__} sets its own layout (batch_first={own}), "
                f"got batch_first={batch_first}"
            )
        layout = own
    else:
        layout = bool(batch_first)
    keywords, takes_carry = _call_signature(model)
    # the lecture's model only: a model of one's own may name its vocabulary input_size
    lecture = isinstance(model, LSTMModeler)
    dropout = None  # another model's own dropout: an rng given is passed on
    if isinstance(model, LSTM | LSTMModeler):  # dropout between layers only
        dropout = uses_dropout(model)

    def clone(dtype: Any) -> TrainModel:
        return as_train_model(model.clone(param_dtype=dtype), batch_first)

    return TrainModel(
        identity=model,
        apply=model.apply,
        batch_first=layout,
        keywords=keywords,
        takes_carry=takes_carry,
        input_size=model.input_size if lecture else None,
        output_size=model.output_size if lecture else None,
        dropout=dropout,
        name=type(model).__name__,
        clone_with_param_dtype=clone if hasattr(model, "param_dtype") else None,
    )


def zeros_like_tree(tree: PyTree) -> PyTree:
    """Zeros of every leaf's shape and dtype (works on ``jax.ShapeDtypeStruct`` leaves)."""
    return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), tree)
