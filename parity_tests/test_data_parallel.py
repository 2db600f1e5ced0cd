"""Data-parallel ``lstm_jax.fit(..., mesh=, batch_axis=, process_local=)`` on 8
simulated CPU devices (real processes: ``test_multiprocess.py``).

XLA reads ``--xla_force_host_platform_device_count`` when JAX starts, so the
runs happen in a fresh subprocess. The reference is the same ``fit`` on one
device (whose parity with torch ``test_training_parity`` establishes): the mesh
run must give the same losses and parameters within float32 training
tolerance (the gradient sums are ordered differently), keep the parameters
replicated, and really partition the program (an all-reduce in the compiled
training run, absent from the one-device run), on 1-D and 2-D meshes whatever
the batch axis is called, and with the data set split over the devices
(``process_local=True``: bit for bit the replicated run).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lstm_jax.common.tolerances import TRAINING, scaled_error

ROOT = Path(__file__).resolve().parents[1]
F32 = np.dtype(np.float32)
DEVICES = 8

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import lstm_jax
    from lstm_jax.train.parallel import batch_mesh

    out = sys.argv[1]
    assert jax.device_count() == 8, jax.devices()


    def tiny_runs():
        # A small model: a checkpoint of a mesh run resumed on one device, fit under a
        # jax.set_mesh context of another mesh, the results used under it.
        import tempfile
        from jax.sharding import Mesh
        rng = np.random.default_rng(1)
        xs = rng.standard_normal((16, 4, 3)).astype(np.float32)
        ys = xs[:, -1, :1].copy()
        model = lstm_jax.LSTMModeler(3, 4, 1)
        variables = model.init(jax.random.key(1), xs[0])
        options = dict(optimizer=lstm_jax.Adam(0.01), batch_size=8, shuffle_seed=0)
        runs = {}

        def record(name, trained, losses):
            flat = lstm_jax.params_to_torch(trained)
            runs[name] = {"losses": losses.tolist(), **{k: v.tolist() for k, v in flat.items()}}

        one, losses = lstm_jax.fit(model, variables, xs, ys, epochs=2, **options)
        record("tiny_one", one, losses)
        runs["tiny_apply"] = np.asarray(model.apply(one, xs[0])[0]).tolist()
        # A process-local mesh run's checkpoint, resumed on one device.
        import logging
        said = []
        handler = logging.Handler()
        handler.emit = lambda record: said.append(record.getMessage())
        logging.getLogger("lstm_jax.train").addHandler(handler)
        logging.getLogger("lstm_jax.train").setLevel(logging.INFO)
        with tempfile.TemporaryDirectory() as directory:
            _, first = lstm_jax.fit(model, variables, xs, ys, epochs=1, mesh=batch_mesh(),
                                    process_local=True, **options, checkpoint_dir=directory)
            try:
                record("resumed", *lstm_jax.fit(model, variables, xs, ys, epochs=2, **options,
                                                checkpoint_dir=directory))
                runs["resumed"]["first"] = first.tolist()
                runs["resumed"]["said"] = [m for m in said if m.startswith("resumed")]
            except ValueError as error:
                runs["resumed"] = str(error)
        explicit = jax.make_mesh((8,), ("batch",))  # Explicit axes
        with jax.set_mesh(explicit):
            trained, losses = lstm_jax.fit(model, variables, xs, ys, epochs=2, mesh=explicit,
                                           **options)
            record("context", trained, losses)
            runs["context_apply"] = np.asarray(model.apply(trained, xs[0])[0]).tolist()
            runs["context_types"] = [t.name for t in trained["params"]["linear"]["bias"]
                                     .sharding.mesh.axis_types]
            record("context_other", *lstm_jax.fit(
                model, variables, xs, ys, epochs=2, mesh=Mesh(jax.devices()[:4], ("batch",)),
                **options))
        return runs
    rng = np.random.default_rng(0)
    # N = 56 in batches of 16: three full batches and a remainder of 8 per epoch.
    xs = rng.standard_normal((56, 12, 3)).astype(np.float32)
    ys = np.tanh(xs[:, -3:, 0].sum(1, keepdims=True)).astype(np.float32)
    lengths = rng.integers(1, 13, 56)
    model = lstm_jax.LSTMModeler(3, 16, 1, num_layers=2)
    variables = model.init(jax.random.key(0), xs[0])
    options = dict(optimizer=lstm_jax.Adam(0.003), epochs=8, batch_size=16, shuffle_seed=0)
    result = {}
    with jax.default_matmul_precision("highest"):
        for name, extra in (
            ("one", {}),
            ("mesh", dict(mesh=batch_mesh())),
            ("explicit", dict(mesh=jax.make_mesh((8,), ("batch",)))),  # Explicit axes
            # "data" is the batch axis; replicated over "model".
            ("data_model", dict(mesh=jax.make_mesh((4, 2), ("data", "model")))),
            ("named", dict(mesh=jax.make_mesh((2, 4), ("x", "y")), batch_axis="y")),
            # Each "process" (here the one) passes its own samples: all of them.
            ("local", dict(mesh=batch_mesh(), process_local=True)),
            ("local_model", dict(mesh=jax.make_mesh((2, 4), ("model", "data")),
                                 process_local=True)),
            # Per-sample lengths travel with their rows (an int32 reduce-scatter).
            ("one_lengths", dict(seq_lengths=lengths)),
            ("local_lengths", dict(mesh=batch_mesh(), process_local=True, seq_lengths=lengths)),
        ):
            trained, losses = lstm_jax.fit(model, variables, xs, ys, **extra, **options)
            flat = lstm_jax.params_to_torch(trained)
            result[name] = {"losses": losses.tolist(), **{k: v.tolist() for k, v in flat.items()}}
            leaf = jax.tree.leaves(trained)[0]
            sharding = leaf.sharding
            result[name + "_sharding"] = [sharding.is_fully_replicated, len(sharding.device_set)]
        errors = {}
        for label, kwargs in (
            ("batch", dict(xs=xs, ys=ys, batch_size=12)),
            ("remainder", dict(xs=xs[:52], ys=ys[:52], batch_size=16)),
            ("axis", dict(xs=xs, ys=ys, batch_size=16, mesh=jax.make_mesh((4, 2), ("x", "y")))),
            ("no_such_axis", dict(xs=xs, ys=ys, batch_size=16, batch_axis="z")),
            ("type", dict(xs=xs, ys=ys, batch_size=16, mesh="batch")),
            ("2d", dict(xs=xs[:48], ys=ys[:48], batch_size=6,
                        mesh=jax.make_mesh((4, 2), ("data", "model")))),
            ("local_no_mesh", dict(xs=xs, ys=ys, batch_size=16, mesh=None,
                                   process_local=True)),
            ("one_batch", dict(xs=xs[:12], ys=ys[:12], batch_size=16)),
            ("empty_mesh", dict(xs=xs, ys=ys, batch_size=16,
                                mesh=jax.sharding.Mesh(np.empty((0,), object), ("batch",)))),
            ("int_axis_name", dict(xs=xs, ys=ys, batch_size=16,
                                   mesh=jax.sharding.Mesh(np.array(jax.devices()), (0,)))),
        ):
            kwargs.setdefault("mesh", batch_mesh())
            try:
                lstm_jax.fit(model, variables, kwargs.pop("xs"), kwargs.pop("ys"),
                             optimizer=lstm_jax.SGD(0.1), epochs=1, **kwargs)
                errors[label] = None
            except (ValueError, TypeError) as error:
                errors[label] = [type(error).__name__, str(error)]
        result["errors"] = errors
        result.update(tiny_runs())
    json.dump(result, open(out, "w"))
    """
)


def run_worker(tmp_path: Path) -> tuple[dict, Path]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    dump = tmp_path / "hlo"
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES} "
        f"--xla_dump_to={dump} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*train_run.*",
    }
    out = tmp_path / "result.json"
    python([str(script), str(out)], env, tmp_path)
    return json.loads(out.read_text()), dump


def python(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run ``python *argv`` in a fresh process; its stdout (it must succeed)."""
    result = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    return run_worker(tmp_path_factory.mktemp("data_parallel"))


def main_model_programs(dump: Path) -> list[str]:
    """The compiled training runs of the worker's main model (H = 16: products with
    4H = 64 columns), not its tiny model's (H = 4)."""
    texts = [p.read_text() for p in sorted(dump.glob("*train_run*after_optimizations.txt"))]
    return [text for text in texts if re.search(r"f32\[\d+,64\]", text)]


MESHES = ["mesh", "explicit", "data_model", "named", "local", "local_model"]


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_mesh_run_matches_one_device(worker: tuple[dict, Path], mesh: str) -> None:
    result, _ = worker
    one, many = result["one"], result[mesh]
    assert one.keys() == many.keys()
    losses = np.array(one["losses"])
    assert losses[-1] < 0.8 * losses[0]  # it trains
    for key in one:
        err = scaled_error(np.array(many[key]), np.array(one[key]))
        assert err <= TRAINING[F32], f"{mesh} {key}: scaled error {err:.3g}"
    # One device is not bitwise the mesh: the runs did differ in summation order.
    assert any(one[k] != many[k] for k in one if k != "losses")


@pytest.mark.slow
def test_process_local_carries_seq_lengths(worker: tuple[dict, Path]) -> None:
    result, _ = worker
    one, local = result["one_lengths"], result["local_lengths"]
    for key in one:
        err = scaled_error(np.array(local[key]), np.array(one[key]))
        assert err <= TRAINING[F32], f"{key}: scaled error {err:.3g}"
    # The lengths were used: another run than without them.
    assert scaled_error(np.array(one["losses"]), np.array(result["one"]["losses"])) > 1e-3


@pytest.mark.slow
def test_parameters_stay_replicated(worker: tuple[dict, Path]) -> None:
    result, _ = worker
    for mesh in MESHES:
        assert result[mesh + "_sharding"] == [True, DEVICES], mesh
    assert result["one_sharding"] == [True, 1]


@pytest.mark.slow
def test_process_local_is_the_replicated_run_bit_for_bit(worker: tuple[dict, Path]) -> None:
    """The data set split over the devices, each batch gathered from them, is the
    replicated run's batches in its order: the same bits on the same mesh."""
    result, _ = worker
    assert result["local"] == result["mesh"]


@pytest.mark.slow
def test_the_program_is_partitioned(worker: tuple[dict, Path]) -> None:
    """XLA inserted the gradient all-reduce in the mesh runs, not in the one-device run;
    each device's LSTM matmuls see its rows of the batch only."""
    _, dump = worker
    programs = main_model_programs(dump)
    reduced = ["all-reduce(" in text for text in programs]
    assert sorted(set(reduced)) == [False, True], sorted(p.name for p in dump.iterdir())[:20]
    for text, partitioned in zip(programs, reduced, strict=True):
        # Products with 4H = 64 columns: (B_local, 64) for the recurrent and input
        # products, (H, 64) and (I, 64) for weight gradients. One device: B_local = 16
        # and 8 (the remainder batch); partitioned, 16 / 8 and 8 / 8 on the 1-D meshes,
        # 16 / 4 and 8 / 4 on the 2-D ones (4 batch shards): never 8.
        rows = {int(m) for m in re.findall(r"f32\[(\d+),64\]\{1,0\} dot\(", text)}
        assert bool(rows & {2, 4}) == partitioned, rows
        assert (8 in rows) != partitioned, rows


@pytest.mark.slow
def test_process_local_gathers_each_batch_in_one_collective(worker: tuple[dict, Path]) -> None:
    """The process-local runs move a batch's inputs, targets and lengths in ONE
    reduce-scatter of their bytes (each collective is a round trip between processes),
    not one per array."""
    _, dump = worker
    programs = main_model_programs(dump)
    scatters = [re.findall(r"= (\w+)\[[\d,]*\]\S* reduce-scatter\(", text) for text in programs]
    local = [found for found in scatters if found]
    assert len(local) == 3, scatters  # local, local_model, local_lengths
    for found in local:
        # One per compiled batch step (the full batches, the remainder): never 2 per step.
        assert found and all(dtype == "u8" for dtype in found), found
        assert len(found) <= 2, found


@pytest.mark.slow
def test_batches_that_do_not_divide_are_a_clear_error(worker: tuple[dict, Path]) -> None:
    errors = worker[0]["errors"]
    kind, message = errors["batch"]
    assert kind == "ValueError"
    assert "batch_size of 12 samples does not divide among the mesh's 8 devices" in message
    kind, message = errors["remainder"]
    assert kind == "ValueError"
    assert "remainder" in message and "4 samples" in message and "8 devices" in message
    kind, message = errors["axis"]
    assert kind == "ValueError" and "axis named 'batch' or 'data'" in message, message
    assert "('x', 'y')" in message and "batch_axis=" in message
    kind, message = errors["no_such_axis"]
    assert kind == "ValueError" and "batch_axis: expected one of the mesh's axes" in message
    assert "'z'" in message
    kind, message = errors["type"]
    assert kind == "TypeError" and "jax.sharding.Mesh" in message
    kind, message = errors["2d"]
    assert kind == "ValueError" and "batch_size of 6 samples does not divide" in message
    assert "4 devices on axis 'data'" in message
    kind, message = errors["local_no_mesh"]
    assert kind == "ValueError" and "process_local=True: expected a mesh=" in message
    kind, message = errors["one_batch"]
    assert kind == "ValueError", message
    assert "the one batch (N < batch_size) of 12 samples does not divide" in message
    # not a ZeroDivisionError, nor a KeyError of '0'
    assert errors["empty_mesh"] == [
        "ValueError",
        "mesh: expected at least one device, got an empty mesh of axes ('batch',)",
    ]
    assert errors["int_axis_name"] == [
        "TypeError",
        "mesh: expected axis names that are str (as jax.make_mesh's), got 0",
    ]


@pytest.mark.parametrize(
    ("kwargs", "kind", "message"),
    [
        (dict(axis_name=3), TypeError, "batch_mesh: expected an axis_name (str), got 3"),
        (
            dict(devices="cpu"),
            TypeError,
            "batch_mesh: expected a sequence of jax devices, got 'cpu'",
        ),
        (
            dict(devices=[0, 1]),
            TypeError,
            "batch_mesh: expected jax devices (e.g. jax.devices()), got int 0",
        ),
        (dict(devices=[]), ValueError, "batch_mesh: expected at least one device, got none"),
    ],
)
def test_batch_mesh_refuses_what_is_no_device_list(kwargs: dict, kind: type, message: str) -> None:
    """Not a mesh of the characters of 'cpu' that fit fails on later, nor a KeyError."""
    from lstm_jax.train.parallel import batch_mesh

    with pytest.raises(kind) as caught:
        batch_mesh(**kwargs)
    assert str(caught.value) == message


@pytest.mark.slow
def test_data_parallel_example_tiny(tmp_path: Path) -> None:
    """``examples/data_parallel.py`` sets up the simulated devices itself."""
    argv = ["--samples", "64", "--batch-size", "16", "--epochs", "2", "--repeats", "1"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = python([str(ROOT / "examples" / "data_parallel.py"), *argv], env, tmp_path)
    assert "8 cpu device(s) (simulated)" in out, out
    errors = re.search(r"losses scaled error (\S+), parameters (\S+)", out)
    assert errors, out
    assert float(errors[1]) <= TRAINING[F32] and float(errors[2]) <= TRAINING[F32], out
    rates = re.findall(r"^(?:one device|mesh of 8)\s+\S+\s+\S+\s+(\d+)\s*$", out, flags=re.M)
    assert len(rates) == 2 and all(int(r) > 0 for r in rates), out


@pytest.mark.slow
def test_data_parallel_example_processes_tiny(tmp_path: Path) -> None:
    """``--processes 2``: two real processes (and the one-process baseline) train the
    same parameters and report both rates."""
    argv = ["--processes", "2", "--process-local", "--samples", "32", "--batch-size", "16"]
    argv += ["--epochs", "2", "--repeats", "1", "--layers", "1", "--hidden", "8", "--no-pin"]
    argv += ["--timeout", "240"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = python([str(ROOT / "examples" / "data_parallel.py"), *argv], env, tmp_path)
    error = re.search(r"parameters, 2 processes against 1 process: scaled error (\S+)", out)
    assert error and float(error[1]) <= TRAINING[F32], out
    rates = re.findall(r"^1 process, every core\s+\S+\s+\S+\s+(\d+)\s*$", out, flags=re.M)
    rates += re.findall(r"^2 processes x 1 device, cores shared\s+\S+\s+\S+\s+(\d+)$", out, re.M)
    assert len(rates) == 2 and all(int(r) > 0 for r in rates), out


def close(name: str, run: dict, one: dict) -> None:
    assert run.keys() >= one.keys(), name
    for key in one:
        err = scaled_error(np.array(run[key]), np.array(one[key]))
        assert err <= TRAINING[F32], f"{name} {key}: scaled error {err:.3g}"


@pytest.mark.slow
def test_a_mesh_runs_checkpoint_resumes_on_one_device(worker: tuple[dict, Path]) -> None:
    """A process-local mesh run's checkpoint resumed by the one-device run: its data
    digest is the one-device run's (not 'data differs'), and what Orbax restores onto
    the mesh's devices comes onto one (not JAX's 'incompatible devices')."""
    result, _ = worker
    resumed = result["resumed"]
    assert isinstance(resumed, dict), resumed
    said = resumed["said"]
    assert len(said) == 1 and said[0].startswith("resumed from epoch 1 of 2 "), said
    assert resumed["losses"][0] == resumed["first"][0]
    close("resumed", resumed, result["tiny_one"])


@pytest.mark.slow
def test_fit_under_another_context_mesh(worker: tuple[dict, Path]) -> None:
    """Inside ``jax.set_mesh`` of an Explicit mesh, fit over it (and over a mesh of other
    devices) trains as one device, and hands the parameters back on the mesh given, so
    they are used under that context as they are."""
    result, _ = worker
    close("context", result["context"], result["tiny_one"])
    close("context_other", result["context_other"], result["tiny_one"])
    assert result["context_types"] == ["Explicit"]
    err = scaled_error(np.array(result["context_apply"]), np.array(result["tiny_apply"]))
    assert err <= TRAINING[F32], err


def test_fewer_samples_than_batch_size_is_one_batch_of_them_all() -> None:
    """With N < batch_size an epoch is one batch of N samples (as on one device): it is
    what must divide, not batch_size (N = 8 in batches of 10 on 4 devices trains)."""
    from lstm_jax.train.parallel import check_divisible

    check_divisible(8, 10, 4)
    check_divisible(8, 8, 4)
    with pytest.raises(ValueError, match=r"the one batch \(N < batch_size\) of 6 samples"):
        check_divisible(6, 10, 4)
    with pytest.raises(ValueError, match="batch_size of 10 samples does not divide"):
        check_divisible(20, 10, 4)
    with pytest.raises(ValueError, match=r"the last \(remainder\) batch of 2 samples"):
        check_divisible(10, 8, 4)


def test_a_global_array_spread_over_processes_is_named() -> None:
    """A jax.Array over several processes' devices (e.g. from
    jax.make_array_from_process_local_data) as xs or ys: what to pass instead, not
    JAX's RuntimeError from reading it on one host (seen with 2 real processes)."""
    import jax

    import lstm_jax
    from lstm_jax.train.parallel import check_host_data

    class Spread:  # what fit sees of such an array
        shape = (16, 4, 3)
        is_fully_addressable = False

    check_host_data(xs=np.zeros((2, 3)), ys=jax.numpy.zeros(2), seq_lengths=None)
    model = lstm_jax.LSTMModeler(3, 4, 1)
    variables = model.init(jax.random.key(0), np.zeros((4, 3), np.float32))
    for name in ("xs", "ys"):
        data = {"xs": np.zeros((16, 4, 3), np.float32), "ys": np.zeros((16, 1), np.float32)}
        data[name] = Spread()
        with pytest.raises(ValueError) as caught:
            lstm_jax.fit(
                model, variables, data["xs"], data["ys"], optimizer=lstm_jax.SGD(0.1), epochs=1
            )
        message = str(caught.value)
        assert message.startswith(f"{name}: expected this process's data"), message
        assert "global shape (16, 4, 3)" in message and "process_local=True" in message
