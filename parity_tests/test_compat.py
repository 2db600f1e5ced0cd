"""Code written from an earlier README keeps running: the old module paths and names.

0.2.0 moved ten modules into layers (``lstm_jax.parallel`` -> ``lstm_jax.train.parallel``,
...) without shims. Each old path is back as a deprecated module: importing it, and
reading a name from it, warns (``FutureWarning``) naming the new home, and gives the very
object the new home holds. The tables below are the old modules' public names at 0.1.0
(``git show 32fc775:lstm_jax/<module>.py``) that still exist, with their new homes: they
are written here independently of the shims' own tables, which must agree with them.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from types import ModuleType

import jax
import numpy as np
import optax
import pytest

import lstm_jax
from lstm_jax.common.tolerances import TRAINING, scaled_error

OLD_MODULES: dict[str, dict[str, str]] = {
    "lstm_jax.parallel": {
        "batch_mesh": "lstm_jax.train.parallel",
        "BATCH_AXIS": "lstm_jax.train.parallel",
        "check_divisible": "lstm_jax.train.parallel",
        "auto_mesh": "lstm_jax.train.parallel",
        "initialize_distributed": "lstm_jax.train.distributed",
    },
    "lstm_jax.tolerances": {
        name: "lstm_jax.common.tolerances"
        for name in ("FORWARD", "GRADIENT", "TRAINING", "scaled_error", "assert_close")
    },
    "lstm_jax.specs": {
        name: "lstm_jax.common.config"
        for name in (
            "DIRECTION_SUFFIXES",
            "LSTM_OPTIONS",
            "LSTMConfig",
            "InputLayout",
            "check_input",
            "check_state",
            "check_seq_lengths_layout",
            "check_seq_lengths",
            "check_param_shapes",
            "modeler_param_shapes",
            "infer_config",
        )
    },
    "lstm_jax.checks": {
        name: "lstm_jax.common.finite" for name in ("NonFinite", "find_nonfinite", "check_finite")
    },
    "lstm_jax.transfer": {
        "params_from_torch": "lstm_jax.interop.transfer",
        "params_to_torch": "lstm_jax.interop.transfer",
        "unflatten": "lstm_jax.interop.transfer",
        "expected_shapes": "lstm_jax.interop.transfer",
        "to_numpy": "lstm_jax.common.arrays",
        "flatten": "lstm_jax.common.arrays",
    },
    "lstm_jax.compare": {
        "compare_with_torch": "lstm_jax.interop.compare",
        "ParityReport": "lstm_jax.interop.compare",
        "Difference": "lstm_jax.interop.compare",
        "pinned_precision": "lstm_jax.interop.compare",
        "GROUPS": "lstm_jax.interop.parity",
    },
    "lstm_jax.checkpoint": {
        name: "lstm_jax.interop.checkpoint"
        for name in (
            "save_checkpoint",
            "load_checkpoint",
            "CheckpointError",
            "build_model",
            "Model",
        )
    },
    "lstm_jax.modules": {
        "LSTM": "lstm_jax.linen.modules",
        "LSTMModeler": "lstm_jax.linen.modules",
        "Linear": "lstm_jax.linen.modules",
        "StateLike": "lstm_jax.core.layout",
        "lecture_view": "lstm_jax.core.layout",
        "broadcast_hidden_cell": "lstm_jax.core.layout",
    },
    "lstm_jax.data": {
        "LOSSES": "lstm_jax.common.data",
        "BatchPlan": "lstm_jax.common.data",
        "check_loss": "lstm_jax.common.data",
        "batch_plan": "lstm_jax.common.data",
        "epoch_orders": "lstm_jax.common.data",
        "prepare_data": "lstm_jax.common.data",
        "check_positive_int": "lstm_jax.common.numbers",
    },
    "lstm_jax.errors": {"TrainingDiverged": "lstm_jax.common.errors"},
    # three more files the 0.1.0 README's module map named
    "lstm_jax.init": {
        name: "lstm_jax.core.init"
        for name in ("Initializer", "uniform_symmetric", "lstm_init", "linear_init")
    },
    "lstm_jax.recurrence": {
        "IMPLS": "lstm_jax.core.options",
        "check_options": "lstm_jax.core.options",
        "BACKWARD_ROWS": "lstm_jax.core.scan",
        "on_cuda": "lstm_jax.core.cudnn",
    },
    "lstm_jax.checkpoint_format": {
        name: "lstm_jax.common.checkpoint_format"
        for name in (
            "FORMAT",
            "FORMAT_VERSION",
            "KINDS",
            "DTYPES",
            "METADATA_KEYS",
            "PathLike",
            "CheckpointError",
            "check_fits",
            "common_dtype",
            "tensor_digest",
            "metadata",
            "array_problems",
            "save",
            "write_atomic",
            "load",
        )
    },
}

OLD_NAMES = [
    (old, name, home) for old, names in OLD_MODULES.items() for name, home in names.items()
]
DEPRECATED = r"is deprecated and will be removed in 0\.4\.0"


def fresh_import(old: str) -> ModuleType:
    """Import ``old`` as a first import would (its import-time warning fires again)."""
    sys.modules.pop(old, None)
    return importlib.import_module(old)


def quiet_import(old: str) -> ModuleType:
    """Import ``old``, whether or not it was imported before, without its warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return importlib.import_module(old)


@pytest.mark.parametrize("old", sorted(OLD_MODULES))
def test_importing_an_old_module_warns_naming_the_new_homes(old: str) -> None:
    with pytest.warns(FutureWarning, match=rf"^{re.escape(old)} {DEPRECATED}") as record:
        module = fresh_import(old)
    message = str(record[0].message)
    for home in set(OLD_MODULES[old].values()):
        assert home in message
    # the user's line, not the shim's or importlib's
    assert record[0].filename == __file__
    assert sorted(dir(module)) == sorted(OLD_MODULES[old])


@pytest.mark.parametrize(
    ("old", "name", "home"), OLD_NAMES, ids=[f"{o}.{n}" for o, n, _ in OLD_NAMES]
)
def test_an_old_name_warns_naming_its_home_and_is_the_same_object(
    old: str, name: str, home: str
) -> None:
    module = quiet_import(old)
    with pytest.warns(FutureWarning, match=rf"^{re.escape(old)} {DEPRECATED}") as record:
        value = getattr(module, name)
    message = str(record[0].message)
    assert f"import {name} from " in message and home in message, message
    assert record[0].filename == __file__
    assert value is getattr(importlib.import_module(home), name)
    if name in lstm_jax.__all__:  # a top-level name is suggested from the top level
        assert f"import {name} from lstm_jax ({home})" in message
        assert value is getattr(lstm_jax, name)


def test_from_old_module_import_name_warns_and_binds_the_new_object() -> None:
    sys.modules.pop("lstm_jax.parallel", None)
    with pytest.warns(FutureWarning, match=r"^lstm_jax\.parallel is deprecated") as record:
        from lstm_jax.parallel import batch_mesh
    assert [str(w.message).split(";")[1] for w in record] == [
        " import its names from lstm_jax.train.parallel or lstm_jax.train.distributed (see "
        "CHANGELOG.md)",
        " import batch_mesh from lstm_jax (lstm_jax.train.parallel)",
    ]
    from lstm_jax.train.parallel import batch_mesh as new_batch_mesh

    assert batch_mesh is new_batch_mesh is lstm_jax.batch_mesh


def test_an_unknown_name_of_an_old_module_is_an_attribute_error() -> None:
    module = quiet_import("lstm_jax.parallel")
    # an internal helper of 0.1.0 that no longer exists, and a plain typo
    for name in ("shard_batch", "batch_msh"):
        with pytest.raises(AttributeError, match=rf"'lstm_jax.parallel' has no attribute '{name}'"):
            getattr(module, name)
    with pytest.raises(ImportError, match="shard_batch"):
        from lstm_jax.parallel import shard_batch  # noqa: F401


def test_batch_mesh_at_top_level() -> None:
    from lstm_jax.train.parallel import batch_mesh

    assert "batch_mesh" in lstm_jax.__all__
    assert lstm_jax.batch_mesh is batch_mesh
    mesh = lstm_jax.batch_mesh()
    assert mesh.axis_names == ("batch",) and mesh.devices.size == jax.device_count()


def test_lstm_jax_optim_is_not_deprecated_but_its_clip_name_is() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optim = fresh_import("lstm_jax.optim")
        from lstm_jax.optim import SGD, Adam, AdamW  # noqa: F401
    from lstm_jax.train.optimizers import clip_by_global_norm_torch

    with pytest.warns(
        FutureWarning,
        match=r"^lstm_jax\.optim\.clip_by_global_norm_torch is deprecated and will be removed in "
        r"0\.4\.0; import clip_by_global_norm_torch from lstm_jax\.train\.optimizers$",
    ) as record:
        old = optim.clip_by_global_norm_torch
    assert record[0].filename == __file__
    assert old is clip_by_global_norm_torch
    with pytest.raises(AttributeError, match=r"'lstm_jax\.optim' has no attribute 'nope'$"):
        optim.nope  # noqa: B018


def test_the_old_clip_is_torchs_clip_grad_norm_formula() -> None:
    """The 0.1.0 README: the specs clip with ``lstm_jax.optim.clip_by_global_norm_torch``,
    ``g * min(c / (norm + 1e-6), 1)`` (torch.nn.utils.clip_grad_norm_), written in numpy."""
    optim = quiet_import("lstm_jax.optim")
    with pytest.warns(FutureWarning, match="clip_by_global_norm_torch"):
        clip_by_global_norm_torch = optim.clip_by_global_norm_torch
    grads = {"a": np.array([3.0, 4.0], np.float32), "b": np.array([[12.0]], np.float32)}
    norm = np.sqrt(9.0 + 16.0 + 144.0)  # 13
    for c in (1.0, 13.0, 100.0):
        clip = clip_by_global_norm_torch(c)
        updates, _ = clip.update(grads, clip.init(grads))
        scale = min(c / (norm + 1e-6), 1.0)
        for key in grads:
            np.testing.assert_allclose(updates[key], grads[key] * scale, rtol=1e-6)


@pytest.mark.parametrize(
    "spec",
    [
        lstm_jax.SGD(0.1, momentum=0.9),
        lstm_jax.Adam(1e-3, weight_decay=0.1),
        lstm_jax.AdamW(1e-3, clip_norm=1.0),
    ],
    ids=["SGD", "Adam", "AdamW"],
)
def test_spec_to_optax_warns_and_is_as_optax(spec: object) -> None:
    name = type(spec).__name__
    with pytest.warns(
        FutureWarning,
        match=rf"^{name}\.to_optax\(\) {DEPRECATED}; use lstm_jax\.as_optax\(spec\)",
    ) as record:
        chain = spec.to_optax()  # type: ignore[attr-defined]
    assert record[0].filename == __file__
    assert chain is lstm_jax.as_optax(spec)
    assert isinstance(chain, optax.GradientTransformation)


def lecture_data(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((n, 4, 1)).astype(np.float32)
    return xs, xs[:, -1].copy()


def test_old_readme_training_snippets() -> None:
    """The 0.1.0 README's own loop (``opt_state = opt.to_optax().init(params)``, then
    ``make_train_step``) and its data-parallel run (``from lstm_jax.parallel import
    batch_mesh``, ``fit(..., mesh=batch_mesh())``) train alike from the same weights."""
    from lstm_jax.optim import SGD  # the README's import: numpy only, no warning

    with pytest.warns(FutureWarning, match=r"^lstm_jax\.parallel is deprecated"):
        from lstm_jax.parallel import batch_mesh

    xs, ys = lecture_data(6)
    jm = lstm_jax.LSTMModeler(1, 6, 1)
    variables = jm.init(jax.random.key(0), xs[0])
    opt = SGD(0.01)
    step = lstm_jax.make_train_step(jm, opt)
    with pytest.warns(FutureWarning, match="to_optax"):
        opt_state = opt.to_optax().init(variables["params"])
    trained, loss_sum = variables, 0.0
    for i in range(len(xs)):
        x = xs[i : i + 1].transpose(1, 0, 2)  # one (T, B=1, I) batch, the model's layout
        trained, opt_state, loss = step(trained, opt_state, x, ys[i : i + 1])
        loss_sum += float(loss)
    fitted, losses = lstm_jax.fit(
        jm, variables, xs, ys, optimizer=opt, epochs=1, batch_size=1, mesh=batch_mesh()
    )
    tol = TRAINING[np.dtype(np.float32)]
    assert scaled_error(np.array([loss_sum]), losses) <= tol
    reference = lstm_jax.params_to_torch(fitted)
    for key, value in lstm_jax.params_to_torch(trained).items():
        assert scaled_error(value, reference[key]) <= tol, key


def test_old_readme_tolerances_snippet() -> None:
    """The 0.1.0 README: results agree "within ``tolerances.TRAINING``"."""
    tolerances = quiet_import("lstm_jax.tolerances")
    with pytest.warns(FutureWarning, match="import TRAINING from lstm_jax.common.tolerances"):
        assert tolerances.TRAINING is TRAINING
    with pytest.warns(FutureWarning), pytest.raises(AssertionError):
        tolerances.assert_close(np.ones(3), np.zeros(3), 1e-5, "loss")
