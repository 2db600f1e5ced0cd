"""Whole-model weight transfer for models around an LSTM, written as users write them.

torch -> ``params_from_torch(sd, model=, example=)`` -> the Flax mirror computes torch's
outputs (torch itself is the reference); ``params_to_torch(variables, model=)`` loads
strictly into torch and round trips are bitwise; strictness both ways, ties, the
``prefix=`` option, a rule for one's own layer, and the errors a user meets.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import flax.linen as fnn
import jax
import numpy as np
import pytest
import torch
import user_models as um
from flax import nnx
from test_transfer import assert_bitwise_equal

import lstm_jax
from lstm_jax.common.tolerances import FORWARD, scaled_error
from lstm_jax.interop.leaf_rules import LeafRule, register_layer
from lstm_jax.interop.transfer import flatten

KINDS = ["lm", "lm-tied", "sentiment", "conv"]
F32 = np.dtype(np.float32)


def torch_outputs(model: torch.nn.Module, args: tuple) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(*[torch.from_numpy(a) for a in args])
    return [t.numpy() for t in torch.utils._pytree.tree_leaves(out)]


def ties_of(kind: str) -> dict[str, str] | None:
    return {"decoder.weight": "encoder.weight"} if kind == "lm-tied" else None


@pytest.mark.parametrize("kind", KINDS)
def test_whole_model_converts_strictly_and_computes_torchs_outputs(kind: str) -> None:
    tm, jm, args = um.torch_model(kind), um.flax_model(kind), um.example(kind)
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=args)
    got = jax.tree.leaves(jm.apply(variables, *args))
    want = torch_outputs(tm, args)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert scaled_error(g, w) <= FORWARD[F32]

    # back to torch: a differently seeded model takes the weights strictly, bit for bit
    state_dict = lstm_jax.params_to_torch(variables, model=jm, tied=ties_of(kind))
    fresh = um.torch_model(kind, seed=7)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
    assert_bitwise_equal(fresh.state_dict(), tm.state_dict(), ordered=False)
    if kind == "lm-tied":
        assert fresh.decoder.weight is fresh.encoder.weight  # the tie survives
    again = lstm_jax.params_from_torch(fresh.state_dict(), model=jm, example=args)
    assert_bitwise_equal(flatten(again["params"]), flatten(variables["params"]), ordered=False)


@pytest.mark.parametrize("kind", ["lm", "conv"])
def test_jax_init_round_trips_through_torch_bitwise(kind: str) -> None:
    jm, args = um.flax_model(kind), um.example(kind)
    variables = jm.init(jax.random.key(3), *args)
    tm = um.torch_model(kind)
    state_dict = lstm_jax.params_to_torch(variables, model=jm)  # no example: bound to params
    assert sorted(state_dict) == sorted(tm.state_dict())
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
    again = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=args)
    assert_bitwise_equal(flatten(again["params"]), flatten(variables["params"]), ordered=False)


def test_leaf_rules_lay_out_each_layer_as_torch() -> None:
    """Conv (K, in, out) <-> (out, in, K), Dense transposed, list items and the
    Sequential's layers under torch's indices."""
    tm, jm, args = um.torch_model("conv"), um.flax_model("conv"), um.example("conv")
    params = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=args)["params"]
    np.testing.assert_array_equal(
        params["conv"]["kernel"], tm.conv.weight.detach().permute(2, 1, 0)
    )
    np.testing.assert_array_equal(
        params["head"]["layers_2"]["kernel"], tm.head[2].weight.detach().T
    )
    np.testing.assert_array_equal(params["norm"]["scale"], tm.norm.weight.detach())
    np.testing.assert_array_equal(
        params["layers_1"]["weight_hh_l0"], tm.layers[1].weight_hh_l0.detach()
    )


def test_strict_both_ways_names_each_key_shape_and_flax_leaf() -> None:
    tm, jm, args = um.torch_model("lm"), um.flax_model("lm"), um.example("lm")
    sd = dict(tm.state_dict())
    missing = {k: v for k, v in sd.items() if k != "rnn.bias_hh_l1"}
    with pytest.raises(ValueError, match=re.escape("missing key(s): rnn.bias_hh_l1")) as err:
        lstm_jax.params_from_torch(missing, model=jm, example=args)
    assert "rnn/bias_hh_l1" in str(err.value)
    extra = {**sd, "extra.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=re.escape("unexpected key(s): extra.weight")):
        lstm_jax.params_from_torch(extra, model=jm, example=args)
    wrong = {**sd, "decoder.weight": torch.zeros(um.VOCAB + 1, um.HIDDEN)}
    expected = f"decoder.weight: expected {(um.VOCAB, um.HIDDEN)}, got {(um.VOCAB + 1, um.HIDDEN)}"
    with pytest.raises(ValueError, match=re.escape(expected)) as err:
        lstm_jax.params_from_torch(wrong, model=jm, example=args)
    assert "decoder/kernel" in str(err.value)


def test_ties_are_accepted_where_the_flax_model_holds_one() -> None:
    tied_torch, args = um.torch_model("lm-tied"), um.example("lm")
    tied_flax = um.flax_model("lm-tied")
    # torch shares one tensor between encoder.weight and decoder.weight: the Flax
    # model holding it once is accepted, and so is one holding both
    lstm_jax.params_from_torch(tied_torch.state_dict(), model=tied_flax, example=args)
    both = lstm_jax.params_from_torch(
        tied_torch.state_dict(), model=um.flax_model("lm"), example=args
    )
    np.testing.assert_array_equal(
        both["params"]["decoder"]["kernel"].T, both["params"]["encoder"]["embedding"]
    )
    # equal values in separate memory are no tie: strict says so, unless told
    copied = {k: v.clone() for k, v in tied_torch.state_dict().items()}
    with pytest.raises(ValueError, match=re.escape("unexpected key(s): decoder.weight")):
        lstm_jax.params_from_torch(copied, model=tied_flax, example=args)
    lstm_jax.params_from_torch(copied, model=tied_flax, example=args, tied=ties_of("lm-tied"))
    untied = um.torch_model("lm").state_dict()
    with pytest.raises(ValueError, match=re.escape("unexpected key(s): decoder.weight")):
        lstm_jax.params_from_torch(untied, model=tied_flax, example=args)
    # told tied, but two tensors of different values: refused (before: decoder.weight dropped)
    with pytest.raises(ValueError, match=r"tied: 'decoder\.weight' shares 'encoder\.weight', but"):
        lstm_jax.params_from_torch(untied, model=tied_flax, example=args, tied=ties_of("lm-tied"))


def test_whole_model_keys_where_one_lstm_was_expected_list_the_lstm_prefixes() -> None:
    lm = um.torch_model("lm").state_dict()
    with pytest.raises(ValueError, match=r"prefix\(es\) 'rnn\.' \(nn\.LSTM\).*prefix='rnn\.'"):
        lstm_jax.params_from_torch(lm)
    # an LSTM attribute named `lstm` is no LSTMModeler: no demand for a linear head
    sentiment = um.torch_model("sentiment").state_dict()
    with pytest.raises(ValueError, match=r"'lstm\.' \(nn\.LSTM\)") as err:
        lstm_jax.params_from_torch(sentiment)
    assert "linear.weight" not in str(err.value)
    with pytest.raises(ValueError, match=r"for LSTM, got keys .*prefix\(es\) 'rnn\.' \(nn\.LSTM\)"):
        lstm_jax.params_from_torch(lm, model=lstm_jax.LSTM(um.HIDDEN, num_layers=2))
    conv = um.torch_model("conv").state_dict()
    with pytest.raises(ValueError, match=r"'layers\.0\.' \(nn\.LSTM\), 'layers\.1\.' \(nn\.LSTM\)"):
        lstm_jax.params_from_torch(conv)
    # a GRU's weight_ih_l0 is no LSTM's: not offered as a prefix (before: 'gru.' (nn.LSTM) first)
    mixed = torch.nn.ModuleDict(
        {"gru": torch.nn.GRU(3, 4), "rnn": torch.nn.LSTM(3, 5, proj_size=2)}
    ).state_dict()
    with pytest.raises(ValueError, match=r"prefix\(es\) 'rnn\.' \(nn\.LSTM\): pass prefix='rnn\.'"):
        lstm_jax.params_from_torch(mixed)
    with pytest.raises(
        ValueError, match=r"under prefix 'gru\.' to be an nn\.LSTM's.*a GRU's or RNN's"
    ):
        lstm_jax.params_from_torch(mixed, prefix="gru.")


def test_prefix_takes_one_lstm_of_a_whole_model() -> None:
    tm = um.torch_model("lm")
    alone = lstm_jax.params_from_torch(tm.rnn.state_dict())
    for prefix in ("rnn.", "rnn"):
        taken = lstm_jax.params_from_torch(tm.state_dict(), prefix=prefix)
        assert_bitwise_equal(flatten(taken["params"]), flatten(alone["params"]))
    checked = lstm_jax.params_from_torch(
        tm.state_dict(), prefix="rnn.", model=lstm_jax.LSTM(um.HIDDEN, num_layers=2)
    )
    assert_bitwise_equal(flatten(checked["params"]), flatten(alone["params"]))
    with pytest.raises(ValueError, match=r"no keys start with prefix 'lstm\.'.*\['rnn\.'\]"):
        lstm_jax.params_from_torch(tm.state_dict(), prefix="lstm.")
    # a prefix of another layer: said so (before: "expected an LSTM state dict", no prefix)
    with pytest.raises(
        ValueError, match=r"under prefix 'decoder\.' to be an nn\.LSTM's.*\['rnn\.'\]"
    ):
        lstm_jax.params_from_torch(tm.state_dict(), prefix="decoder.")
    conv = um.torch_model("conv")
    second = lstm_jax.params_from_torch(conv.state_dict(), prefix="layers.1.")
    np.testing.assert_array_equal(
        second["params"]["weight_ih_l0"], conv.layers[1].weight_ih_l0.detach()
    )


def test_params_to_torch_checks_a_built_in_model_it_is_given() -> None:
    """model= is checked, as apply checks it: never keys of another configuration."""
    lstm_vars = lstm_jax.params_from_torch(torch.nn.LSTM(3, 5).state_dict())
    with pytest.raises(ValueError, match=r"missing key\(s\): lstm\.weight_ih_l0"):
        lstm_jax.params_to_torch(lstm_vars, model=lstm_jax.LSTMModeler(3, 5, 1))
    with pytest.raises(ValueError, match=r"size mismatch for weight_ih_l0: expected \(24, 3\)"):
        lstm_jax.params_to_torch(lstm_vars, model=lstm_jax.LSTM(6))
    cell = lstm_jax.params_from_torch(torch.nn.LSTMCell(3, 5).state_dict())
    assert list(lstm_jax.params_to_torch(cell, model=lstm_jax.LSTMCell(5))) == [
        "weight_ih",
        "weight_hh",
        "bias_ih",
        "bias_hh",
    ]


def test_a_model_of_ones_own_needs_its_example() -> None:
    tm, jm = um.torch_model("lm"), um.flax_model("lm")
    with pytest.raises(ValueError, match=r"FlaxWordLM is not an lstm_jax built-in: pass example"):
        lstm_jax.params_from_torch(tm.state_dict(), model=jm)
    as_torch = tuple(torch.from_numpy(a) for a in um.example("lm"))  # tensors work as example
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=as_torch)
    assert variables["params"]["decoder"]["kernel"].shape == (um.HIDDEN, um.VOCAB)
    with pytest.raises(TypeError, match="example: expected a tuple"):
        lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=um.example("lm")[0])


# --- a layer of one's own ------------------------------------------------------------------


class TorchScaleShift(torch.nn.Module):
    """y = x @ weight.T * gain + shift, torch layout weight (out, in)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_out, n_in))
        self.gain = torch.nn.Parameter(torch.rand(n_out) + 0.5)
        self.shift = torch.nn.Parameter(torch.randn(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T * self.gain + self.shift


class TorchTagger(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.LSTM(3, 4)
        self.out = TorchScaleShift(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x)[0])


class FlaxScaleShift(fnn.Module):
    """The same layer with Flax's layout: ``w`` (in, out), ``g``, ``b``."""

    features: int

    @fnn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("w", fnn.initializers.lecun_normal(), (x.shape[-1], self.features))
        g = self.param("g", fnn.initializers.ones, (self.features,))
        b = self.param("b", fnn.initializers.zeros, (self.features,))
        return x @ w * g + b


class FlaxTagger(fnn.Module):
    def setup(self) -> None:
        self.rnn = lstm_jax.LSTM(4)
        self.out = FlaxScaleShift(2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.rnn(x)[0])


def test_a_registered_rule_for_ones_own_layer() -> None:
    torch.manual_seed(0)
    tm, jm = TorchTagger(), FlaxTagger()
    x = um.features((5, 2, 3))
    with pytest.raises(
        ValueError, match=r"missing key\(s\): out\.b, out\.g, out\.w.*lstm_jax\.register_layer"
    ):
        lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(x,))
    register_layer(
        FlaxScaleShift,
        {
            "w": LeafRule("weight", to_torch=lambda a: a.T, from_torch=lambda a: a.T),
            "g": LeafRule("gain"),
            "b": LeafRule("shift"),
        },
    )
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(x,))
    (want,) = torch_outputs(tm, (x,))
    assert scaled_error(jm.apply(variables, x), want) <= FORWARD[F32]
    report = lstm_jax.compare_with_torch(tm, jm, variables, x)
    assert report.ok, str(report)
    back = lstm_jax.params_to_torch(variables, model=jm, example=(x,))
    assert_bitwise_equal(back, tm.state_dict(), ordered=False)
    with pytest.raises(TypeError, match="expected a LeafRule for leaf 'w'"):
        register_layer(FlaxScaleShift, {"w": "weight"})
    with pytest.raises(ValueError, match="kind must be one of"):
        register_layer(FlaxScaleShift, "gru")


# --- the porting guide's walk-through ------------------------------------------------------


def test_docs_porting_walkthrough_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The porting guide's walk-through (its first two code blocks: the models, then the
    three calls), run as written (in a scratch folder)."""
    guide = Path(__file__).resolve().parents[1] / "docs" / "guides" / "porting.md"
    code = "".join(re.findall(r"```python\n(.*?)```", guide.read_text(), flags=re.S)[:2])
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("readme_porting")  # flax Modules are dataclasses: a real module
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    exec(compile(code, "docs/guides/porting.md", "exec"), namespace)
    assert namespace["report"].ok
    assert (tmp_path / "sentiment.safetensors").exists()
    assert sorted(namespace["lstm_vars"]["params"]) == sorted(
        k.removeprefix("rnn.")
        for k in namespace["torch_model"].state_dict()
        if k.startswith("rnn.")
    )


class TorchScaled(torch.nn.Module):
    """A parameter of the model's own, named `scale` like a LayerNorm's Flax leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.LSTM(3, 4)
        self.scale = torch.nn.Parameter(torch.rand(4) + 0.5)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0] * self.scale)


class FlaxScaled(fnn.Module):
    def setup(self) -> None:
        self.rnn = lstm_jax.LSTM(4)
        self.scale = self.param("scale", fnn.initializers.ones, (4,))
        self.head = fnn.Dense(2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.rnn(x)[0] * self.scale)


def test_a_models_own_parameters_keep_their_names() -> None:
    torch.manual_seed(0)
    tm, jm, x = TorchScaled(), FlaxScaled(), um.features((5, 2, 3))
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(x,))
    np.testing.assert_array_equal(variables["params"]["scale"], tm.scale.detach())
    (want,) = torch_outputs(tm, (x,))
    assert scaled_error(jm.apply(variables, x), want) <= FORWARD[F32]
    back = lstm_jax.params_to_torch(variables, model=jm)  # bound: the root's class is known
    assert_bitwise_equal(back, tm.state_dict(), ordered=False)


# --- mistakes a user porting a model makes ----------------------------------------------


def test_params_to_torch_with_example_is_strict_on_the_flax_side() -> None:
    """Given ``example``, every Flax leaf of the model is needed with its shape and no
    other leaf is taken (before: a wrong shape went through to torch, an extra leaf
    was dropped silently)."""
    tm, jm, args = um.torch_model("lm"), um.flax_model("lm"), um.example("lm")
    params = jax.tree.map(
        np.asarray, lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=args)["params"]
    )
    narrow = {
        **params,
        "decoder": {**params["decoder"], "kernel": params["decoder"]["kernel"][:, :3]},
    }
    expected = (
        f"size mismatch for decoder/kernel: expected {(um.HIDDEN, um.VOCAB)}, got {(um.HIDDEN, 3)}"
    )
    with pytest.raises(
        ValueError, match=re.escape(expected) + r".*decoder/kernel -> decoder\.weight"
    ):
        lstm_jax.params_to_torch({"params": narrow}, model=jm, example=args)
    extra = {**params, "junk": {"w": np.zeros(2, np.float32)}}
    with pytest.raises(ValueError, match=re.escape("unexpected key(s): junk/w")):
        lstm_jax.params_to_torch({"params": extra}, model=jm, example=args)
    lacking = {k: v for k, v in params.items() if k != "decoder"}
    with pytest.raises(ValueError, match=re.escape("missing key(s): decoder/bias, decoder/kernel")):
        lstm_jax.params_to_torch({"params": lacking}, model=jm, example=args)
    # a torch state dict where Flax variables go: said, not passed through as if converted
    with pytest.raises(TypeError, match=r"flat mapping with torch-style keys .*params_from_torch"):
        lstm_jax.params_to_torch(tm.state_dict(), model=jm)
    # no model: Flax's leaf names are refused (before: decoder.kernel in Flax's layout)
    with pytest.raises(ValueError, match=r"Flax layers' leaves \(decoder\.kernel, .*pass model="):
        lstm_jax.params_to_torch({"params": params})


def test_a_wrong_model_argument_is_named() -> None:
    """The class, the torch model or an NNX module where the Flax model goes: a
    TypeError saying so (before: Flax's InvalidInstanceModuleError, torch's
    AttributeError, or keys read off the params as if the model fitted)."""
    tm, jm, args = um.torch_model("lm"), um.flax_model("lm"), um.example("lm")
    sd = tm.state_dict()
    variables = lstm_jax.params_from_torch(sd, model=jm, example=args)
    with pytest.raises(TypeError, match=r"instance such as FlaxWordLM\(\.\.\.\), got the class"):
        lstm_jax.params_from_torch(sd, model=um.FlaxWordLM, example=args)
    with pytest.raises(TypeError, match=r"Flax \(linen\) mirror .* got the torch module WordLM"):
        lstm_jax.params_from_torch(sd, model=tm, example=args)
    with pytest.raises(TypeError, match=r"got the torch module WordLM"):
        lstm_jax.params_to_torch(variables, model=tm)
    with pytest.raises(TypeError, match=r"got the class FlaxWordLM"):
        lstm_jax.params_to_torch(variables, model=um.FlaxWordLM)
    with pytest.raises(
        TypeError, match=r"expected a mapping .* got WordLM: pass model\.state_dict"
    ):
        lstm_jax.params_from_torch(tm, model=jm, example=args)
    with pytest.raises(
        TypeError, match=r"flat torch state dict .* nested mappings under \['params'\]"
    ):
        lstm_jax.params_from_torch(variables, model=jm, example=args)


def test_an_example_the_model_refuses_is_named() -> None:
    """The model's own complaint about its example comes with what was given (before:
    Flax's bare "Input type must be an integer" or a Python TypeError from __call__)."""
    tm, jm, (tokens,) = um.torch_model("lm"), um.flax_model("lm"), um.example("lm")
    with pytest.raises(
        ValueError,
        match=r"example: .* got \(float32\(7, 3\)\), on which its init raised ValueError: Input",
    ):
        lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(tokens.astype(np.float32),))
    with pytest.raises(
        TypeError, match=r"example: .*on which its init raised TypeError: .*positional"
    ):
        lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(tokens, None, True, 5))


def test_state_dict_values_and_ties_that_cannot_be_taken_are_named() -> None:
    tm, jm, args = um.torch_model("lm"), um.flax_model("lm"), um.example("lm")
    sd = tm.state_dict()
    half = {
        **sd,
        "decoder.bias": sd["decoder.bias"].bfloat16(),
    }  # before: torch's "unsupported ScalarType"
    with pytest.raises(
        TypeError, match=r"decoder\.bias: expected a float32 or float64 tensor, got torch\.bfloat16"
    ):
        lstm_jax.params_from_torch(half, model=jm, example=args)
    with pytest.raises(TypeError, match=r"decoder\.bias: expected a tensor or array, got NoneType"):
        lstm_jax.params_from_torch({**sd, "decoder.bias": None}, model=jm, example=args)
    with pytest.raises(TypeError, match=r"tied: expected a mapping"):
        lstm_jax.params_from_torch(sd, model=jm, example=args, tied=["decoder.weight"])
    variables = lstm_jax.params_from_torch(sd, model=jm, example=args)
    # an alias the params hold themselves, with other values: refused, never overwritten
    with pytest.raises(
        ValueError, match=r"tied: 'decoder\.weight' would share 'encoder\.weight'.*other values"
    ):
        lstm_jax.params_to_torch(variables, model=jm, tied={"decoder.weight": "encoder.weight"})


class TorchNested(torch.nn.Module):
    """Containers in containers: a ModuleList of ModuleLists, a ModuleDict holding a
    ModuleList and a Sequential under a key with an underscore."""

    def __init__(self) -> None:
        super().__init__()
        lstm = torch.nn.LSTM
        self.stacks = torch.nn.ModuleList(
            [torch.nn.ModuleList([lstm(3, 3), lstm(3, 3)]), torch.nn.ModuleList([lstm(3, 3)])]
        )
        self.heads = torch.nn.ModuleDict(
            {
                "a": torch.nn.ModuleList([torch.nn.Linear(3, 2)]),
                "b_c": torch.nn.Sequential(torch.nn.Linear(3, 2)),
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stack in self.stacks:
            for layer in stack:
                x, _ = layer(x)
        return self.heads["a"][0](x) + self.heads["b_c"](x)


class FlaxNested(fnn.Module):
    def setup(self) -> None:
        self.stacks = [[lstm_jax.LSTM(3), lstm_jax.LSTM(3)], [lstm_jax.LSTM(3)]]
        self.heads = {"a": [fnn.Dense(2)], "b_c": fnn.Sequential([fnn.Dense(2)])}

    def __call__(self, x: jax.Array) -> jax.Array:
        for stack in self.stacks:
            for layer in stack:
                x, _ = layer(x)
        return self.heads["a"][0](x) + self.heads["b_c"](x)


def test_containers_in_containers_pair_with_torchs_indices() -> None:
    """Flax names ``stacks_0_1``, ``heads_a_0``, ``heads_b_c/layers_0``: torch's
    ``stacks.0.1``, ``heads.a.0``, ``heads.b_c.0`` (before: missing/unexpected keys)."""
    torch.manual_seed(0)
    tm, jm, x = TorchNested().eval(), FlaxNested(), um.features((5, 2, 3))
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(x,))
    np.testing.assert_array_equal(
        variables["params"]["stacks_0_1"]["weight_hh_l0"], tm.stacks[0][1].weight_hh_l0.detach()
    )
    (want,) = torch_outputs(tm, (x,))
    assert scaled_error(jm.apply(variables, x), want) <= FORWARD[F32]
    back = lstm_jax.params_to_torch(variables, model=jm)  # bound: the containers are seen
    assert_bitwise_equal(back, tm.state_dict(), ordered=False)


class TorchNormed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gn = torch.nn.GroupNorm(2, 4)
        self.rnn = torch.nn.LSTM(4, 4, batch_first=True)
        self.rms = torch.nn.RMSNorm(4, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rms(self.rnn(self.gn(x.transpose(1, 2)).transpose(1, 2))[0])


class FlaxNormed(fnn.Module):
    def setup(self) -> None:
        self.gn = fnn.GroupNorm(num_groups=2, epsilon=1e-5)
        self.rnn = lstm_jax.LSTM(4, batch_first=True)
        self.rms = fnn.RMSNorm(epsilon=1e-6)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.rms(self.rnn(self.gn(x))[0])


def test_group_norm_and_rms_norm_scale_is_torchs_weight() -> None:
    """Before: their ``scale`` kept its name (missing gn.scale, unexpected gn.weight)."""
    torch.manual_seed(0)
    tm, jm, x = TorchNormed().eval(), FlaxNormed(), um.features((2, 5, 4))
    with torch.no_grad():  # non-trivial scales and shifts, so a swapped rule shows
        for p in tm.parameters():
            p.add_(torch.rand_like(p) * 0.3)
    variables = lstm_jax.params_from_torch(tm.state_dict(), model=jm, example=(x,))
    np.testing.assert_array_equal(variables["params"]["rms"]["scale"], tm.rms.weight.detach())
    (want,) = torch_outputs(tm, (x,))
    assert scaled_error(jm.apply(variables, x), want) <= FORWARD[F32]
    assert_bitwise_equal(
        lstm_jax.params_to_torch(variables, model=jm), tm.state_dict(), ordered=False
    )

    class NnxNormed(nnx.Module):  # the NNX layers take the same rule
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.gn = nnx.GroupNorm(4, num_groups=2, rngs=rngs)
            self.rnn = lstm_jax.nnx.LSTM(4, 4, rngs=rngs)
            self.rms = nnx.RMSNorm(4, rngs=rngs)

    twin = NnxNormed(nnx.Rngs(0))
    lstm_jax.nnx.load_state_dict(twin, tm.state_dict())
    assert_bitwise_equal(lstm_jax.nnx.state_dict(twin), tm.state_dict(), ordered=False)


def test_near_misses_in_naming_are_explained() -> None:
    """A list made inside ``@nn.compact`` (Flax ``layers_0``, torch ``layers.0``) and
    BatchNorm's buffers: the error says where each comes from."""

    class CompactList(fnn.Module):
        @fnn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            for i in range(2):
                x, _ = lstm_jax.LSTM(um.HIDDEN, name=f"layers_{i}")(x)
            return x

    torch.manual_seed(0)
    x = um.features((5, 2, um.HIDDEN))
    stacked = torch.nn.ModuleDict(
        {"layers": torch.nn.ModuleList([torch.nn.LSTM(um.HIDDEN, um.HIDDEN) for _ in range(2)])}
    )
    with pytest.raises(ValueError, match=r"layers_0, layers_1: .*@nn\.compact .*self\.layers = \["):
        lstm_jax.params_from_torch(stacked.state_dict(), model=CompactList(), example=(x,))
    normed = torch.nn.ModuleDict(
        {"bn": torch.nn.BatchNorm1d(um.HIDDEN), "layers": stacked["layers"]}
    ).state_dict()
    with pytest.raises(ValueError, match=r"bn\.running_mean, bn\.running_var, .*torch buffers"):
        lstm_jax.params_from_torch(normed, model=CompactList(), example=(x,))
