"""Runs that survive being killed: ``fit(checkpoint_dir=, checkpoint_every=)`` in both
backends.

A worker process trains the lecture's model (two layers with dropout between
them, so the random streams count too; Adam; shuffled batches) with checkpoints.
It is killed with SIGKILL as soon as its first checkpoint appears (or while a
checkpoint is being written), then run again: the second run must say that it
resumed and end bitwise equal (losses and parameters) to an uninterrupted run with
the same settings. In-process tests cover the rest: a chunked run equals one
compiled program bitwise, a checkpoint of another run is refused, only the last
few checkpoints stay, a TrainState resumes as a TrainState.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState

import lstm_jax
import lstm_torch
from lstm_jax.common.optim import Adam

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 24

WORKER = textwrap.dedent(
    f"""
    import hashlib, json, logging, sys, time
    import numpy as np

    backend, directory, out, mode = sys.argv[1:5]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((16, 5, 2)).astype(np.float32)
    ys = np.tanh(xs[:, -2:, 0].sum(1, keepdims=True)).astype(np.float32)
    options = dict(epochs={EPOCHS}, batch_size=4, shuffle_seed=0)
    if directory != "-":
        options.update(checkpoint_dir=directory, checkpoint_every=2)

    def digest(named):
        h = hashlib.sha256()
        for key in sorted(named):
            a = np.ascontiguousarray(np.asarray(named[key]))
            h.update(f"{{key}}:{{a.dtype}}:{{a.shape}}".encode() + a.tobytes())
        return h.hexdigest()

    if backend == "jax":
        import jax, lstm_jax
        if mode == "slow-save":  # each save waits before its final rename
            import asyncio
            from orbax.checkpoint._src.path import atomicity
            finalize = atomicity.AtomicRenameTemporaryPath.finalize
            async def slow(self):
                await asyncio.sleep(0.3)
                await finalize(self)
            atomicity.AtomicRenameTemporaryPath.finalize = slow
        model = lstm_jax.LSTMModeler(2, 8, 1, num_layers=2, dropout=0.25)
        variables = model.init(jax.random.key(0), xs[0])
        trained, losses = lstm_jax.fit(model, variables, xs, ys, optimizer=lstm_jax.Adam(0.01),
                                       rng=jax.random.key(1), **options)
        params = lstm_jax.params_to_torch(trained)
    else:
        import torch, lstm_torch
        from lstm_jax.common.optim import Adam
        torch.set_num_threads(1)
        if mode == "slow-save":  # the file is written, not yet renamed, when killed
            from lstm_torch import resume
            real = resume.torch.save
            def slow(obj, f):
                real(obj, f)
                f.flush()
                time.sleep(0.3)
            resume.torch.save = slow
        torch.manual_seed(0)
        model = lstm_torch.LSTMModeler(2, 8, 1, num_layers=2, dropout=0.25)
        losses = lstm_torch.fit(model, xs, ys, optimizer=Adam(0.01), **options)
        params = {{k: v.detach().numpy() for k, v in model.state_dict().items()}}
    json.dump({{"losses": [float(v) for v in losses], "params": digest(params)}}, open(out, "w"))
    """
)


def worker(tmp_path: Path, backend: str, directory: str, mode: str = "run") -> list[str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"{backend}-{mode}-{len(list(tmp_path.iterdir()))}.json"
    return [sys.executable, str(script), backend, directory, str(out), mode]


def environment(cache: Path) -> dict[str, str]:
    """The workers share JAX's persistent compilation cache: only the first compiles."""
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }


def run(argv: list[str], cache: Path) -> tuple[dict[str, Any], str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, cwd=ROOT, env=environment(cache)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(Path(argv[4]).read_text()), result.stderr


def complete_checkpoint(directory: Path, backend: str) -> bool:
    if not directory.is_dir():
        return False
    pattern = r"^\d+$" if backend == "jax" else r"^epoch_\d+\.pt$"
    return any(re.match(pattern, p.name) for p in directory.iterdir())


def save_under_way(directory: Path, backend: str) -> bool:
    if not directory.is_dir():
        return False
    marker = ".orbax-checkpoint-tmp" if backend == "jax" else ".pt.tmp-"
    return any(marker in p.name for p in directory.iterdir())


def kill_when(argv: list[str], condition: Any, cache: Path) -> int:
    """Start ``argv``, SIGKILL it as soon as ``condition()`` holds; its return code."""
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment(cache),
    )
    deadline = time.monotonic() + 240
    try:
        while not condition():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the worker ended (or timed out) before the moment to kill it: "
                    f"{process.stderr.read().decode()[-2000:] if process.stderr else ''}"
                )
            time.sleep(0.0005)
        os.kill(process.pid, signal.SIGKILL)
        return process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory, cache: Path
) -> dict[str, dict[str, Any]]:
    """Each backend's run with the same checkpoint settings, never killed."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    return {
        b: run(worker(tmp, b, str(tmp / f"{b}-checkpoints")), cache)[0] for b in ("jax", "torch")
    }


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["after-first-checkpoint", "during-a-save"])
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_killed_run_resumes_bitwise(
    tmp_path: Path,
    cache: Path,
    uninterrupted: dict[str, dict[str, Any]],
    backend: str,
    moment: str,
) -> None:
    directory = tmp_path / "checkpoints"
    if moment == "after-first-checkpoint":
        argv = worker(tmp_path, backend, str(directory))
        code = kill_when(argv, lambda: complete_checkpoint(directory, backend), cache)
    else:
        argv = worker(tmp_path, backend, str(directory), "slow-save")
        # Let one checkpoint complete, then kill while the next is being written.
        first = [False]

        def second_save_under_way() -> bool:
            first[0] = first[0] or complete_checkpoint(directory, backend)
            return first[0] and save_under_way(directory, backend)

        code = kill_when(argv, second_save_under_way, cache)
    assert code == -signal.SIGKILL
    assert complete_checkpoint(directory, backend)
    result, log = run(worker(tmp_path, backend, str(directory)), cache)
    resumed = re.search(r"resumed from epoch (\d+) of (\d+)", log)
    assert resumed, log[-2000:]
    assert 0 < int(resumed[1]) < EPOCHS and int(resumed[2]) == EPOCHS, resumed[0]
    assert result == uninterrupted[backend], (resumed[0], result, uninterrupted[backend])
    assert not save_under_way(directory, backend)  # the leftover was cleaned up


@pytest.mark.slow
def test_uninterrupted_runs_train(uninterrupted: dict[str, dict[str, Any]]) -> None:
    for backend, result in uninterrupted.items():
        losses = result["losses"]
        assert len(losses) == EPOCHS and losses[-1] < 0.8 * losses[0], backend


# --- in-process ------------------------------------------------------------------------


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((10, 4, 2)).astype(np.float32)
    return xs, np.tanh(xs[:, -1, :1] + xs[:, 0, 1:]).astype(np.float32)


MODEL = lstm_jax.LSTMModeler(2, 6, 1)
OPTIONS = dict(optimizer=Adam(0.01), epochs=7, batch_size=4, shuffle_seed=3)


def variables() -> Any:
    xs, _ = data()
    return MODEL.init(jax.random.key(0), xs[0])


def assert_same(a: Any, b: Any) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow  # over 10 s on 2 cores (17 s of CPU measured)
def test_chunked_run_is_one_program_bitwise(tmp_path: Path) -> None:
    """Epochs in chunks of 2 (checkpoints) or of 1 (progress) = one compiled program."""
    xs, ys = data()
    one, one_losses = lstm_jax.fit(MODEL, variables(), xs, ys, **OPTIONS)
    for extra in (dict(checkpoint_dir=tmp_path / "a", checkpoint_every=2), dict(progress=True)):
        chunked, losses = lstm_jax.fit(MODEL, variables(), xs, ys, **OPTIONS, **extra)
        np.testing.assert_array_equal(losses, one_losses)
        assert_same(chunked, one)


def test_resume_from_an_earlier_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    xs, ys = data()
    directory = tmp_path / "run"
    options = dict(**OPTIONS, checkpoint_dir=directory, checkpoint_every=2)
    full, losses = lstm_jax.fit(MODEL, variables(), xs, ys, **options, keep_checkpoints=2)
    kept = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    assert kept == [6, 7]  # the last two of 2, 4, 6, 7
    shutil.rmtree(directory / "7")
    with caplog.at_level(logging.INFO, logger="lstm_jax.train"):
        again, again_losses = lstm_jax.fit(MODEL, variables(), xs, ys, **options)
    assert "resumed from epoch 6 of 7" in caplog.text
    np.testing.assert_array_equal(again_losses, losses)
    assert_same(again, full)
    # A finished run resumes at its end: nothing left to train, the same result.
    done, done_losses = lstm_jax.fit(MODEL, variables(), xs, ys, **options)
    np.testing.assert_array_equal(done_losses, losses)
    assert_same(done, full)


OTHER_RUNS = {
    "batch_size": (dict(batch_size=2), "batch_size differs"),
    "model": (dict(model=lstm_jax.LSTMModeler(2, 7, 1)), "model differs"),
    "data shape": (dict(xs=np.zeros((10, 5, 2), np.float32)), "xs differs"),
    "data values": (dict(ys=np.zeros((10, 1), np.float32)), "data differs"),
    "optimizer": (dict(optimizer=Adam(0.02)), "optimizer differs"),
    "loss": (dict(loss=lambda p, t: ((p - t) ** 2).sum()), "loss differs"),
    "past the end": (dict(epochs=3), "past this call's 3 epochs"),
}


@pytest.mark.parametrize("case", list(OTHER_RUNS))
def test_another_runs_checkpoint_is_refused(tmp_path: Path, case: str) -> None:
    xs, ys = data()
    lstm_jax.fit(MODEL, variables(), xs, ys, **OPTIONS, checkpoint_dir=tmp_path)
    changes, message = OTHER_RUNS[case]
    call = {"model": MODEL, "xs": xs, "ys": ys, **OPTIONS, **changes}
    model, x, y = call.pop("model"), call.pop("xs"), call.pop("ys")
    init = model.init(jax.random.key(0), x[0])
    with pytest.raises(ValueError, match=re.escape(message)):
        lstm_jax.fit(model, init, x, y, **call, checkpoint_dir=tmp_path)


def test_torch_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    xs, ys = data()
    model = lstm_torch.LSTMModeler(2, 6, 1)
    lstm_torch.fit(model, xs, ys, **OPTIONS, checkpoint_dir=tmp_path, checkpoint_every=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch_00000003.pt",
        "epoch_00000006.pt",
        "epoch_00000007.pt",
    ]
    with pytest.raises(ValueError, match="batch_size differs"):
        lstm_torch.fit(
            model,
            xs,
            ys,
            **{**OPTIONS, "batch_size": 2},
            checkpoint_dir=tmp_path,
            checkpoint_every=3,
        )
    with pytest.raises(ValueError, match="model differs"):
        lstm_torch.fit(
            lstm_torch.LSTMModeler(2, 6, 1, num_layers=2),
            xs,
            ys,
            **OPTIONS,
            checkpoint_dir=tmp_path,
            checkpoint_every=3,
        )


def test_train_state_resumes_as_a_train_state(tmp_path: Path) -> None:
    xs, ys = data()
    params = variables()["params"]
    state = TrainState.create(apply_fn=MODEL.apply, params=params, tx=optax.adamw(0.01))
    options = dict(epochs=5, batch_size=4, shuffle_seed=1, checkpoint_dir=tmp_path)
    first, losses = lstm_jax.fit(MODEL, state, xs, ys, **options)
    shutil.rmtree(tmp_path / "5")
    again, again_losses = lstm_jax.fit(MODEL, state, xs, ys, **options)
    assert isinstance(again, TrainState) and int(again.step) == int(first.step) == 15
    np.testing.assert_array_equal(again_losses, losses)
    assert_same(again, first)


def test_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    """A directory holding another program's checkpoints is not resumed from."""
    import orbax.checkpoint as ocp

    xs, ys = data()
    with ocp.CheckpointManager(tmp_path / "orbax") as manager:
        manager.save(3, args=ocp.args.Composite(other=ocp.args.StandardSave({"w": np.ones(2)})))
    with pytest.raises(ValueError, match=re.escape("is not a checkpoint of lstm_jax.fit")):
        lstm_jax.fit(MODEL, variables(), xs, ys, **OPTIONS, checkpoint_dir=tmp_path / "orbax")
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "epoch_00000002.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=re.escape("is not a checkpoint of lstm_torch.fit")):
        lstm_torch.fit(
            lstm_torch.LSTMModeler(2, 6, 1), xs, ys, **OPTIONS, checkpoint_dir=tmp_path / "torch"
        )


def test_a_continued_train_state_in_the_same_directory_says_how_to_go_on(
    tmp_path: Path,
) -> None:
    """fit(state) into a directory, then fit(its result) into the same one: refused
    (another start step) with what to do instead, and doing that resumes the run."""
    xs = np.random.default_rng(0).standard_normal((6, 3, 2)).astype(np.float32)
    ys = xs[:, -1, :1]
    model = lstm_jax.LSTMModeler(2, 4, 1)
    params = model.init(jax.random.key(0), xs[0])["params"]
    state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(0.01))
    options = dict(batch_size=3, shuffle_seed=0, checkpoint_dir=str(tmp_path))
    half, first = lstm_jax.fit(model, state, xs, ys, epochs=2, **options)
    with pytest.raises(ValueError, match="call fit with the run's first state and the total"):
        lstm_jax.fit(model, half, xs, ys, epochs=2, **options)
    whole, losses = lstm_jax.fit(model, state, xs, ys, epochs=4, **options)
    np.testing.assert_array_equal(losses[:2], first)  # resumed: the saved epochs' losses
    assert int(whole.step) == 8 and np.all(np.isfinite(losses))
