"""Training through the faults clusters and users cause, in process (fast tier).

- A stop (SIGTERM, Ctrl-C) at a step boundary in the middle of an epoch saves that
  step; the same call then resumes and ends bitwise as an uninterrupted run. The
  stop is injected where ``fit`` asks whether one was requested (between windows),
  so the step is known; the real signals, in real processes, are in
  ``test_faults_processes.py``.
- Without a checkpoint_dir, Ctrl-C raises with the parameters reached.
- A run cut into windows of one step is the one-window run, bit for bit.
- A failing save (ENOSPC injected under the checkpoint layer) raises
  ``CheckpointWriteError`` with the parameters; the half-written step is removed,
  earlier checkpoints stay, and the same call resumes from them.
- A directory that cannot be written is refused before training.
- The run lock: a second holder is refused at once naming the first; a stale
  record is taken over with a warning; the lock is gone when fit returns.
- The stop handlers: only a flag is set; the previous handlers come back; ignored
  signals stay ignored; nothing is installed outside the main thread.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

import lstm_jax
from lstm_jax.common.data import epoch_orders
from lstm_jax.common.errors import (
    PREEMPTED_EXIT,
    CheckpointDirBusy,
    CheckpointWriteError,
    Preempted,
    TrainingInterrupted,
)
from lstm_jax.common.optim import Adam
from lstm_jax.common.run_lock import LOCK_NAME, RunLock
from lstm_jax.common.stop_signals import StopRequests
from lstm_jax.common.tolerances import TRAINING, assert_close
from lstm_jax.train import checkpointing, loop

MODEL = lstm_jax.LSTMModeler(2, 6, 1)
# N = 10 in batches of 4: two full batches and a remainder of 2, three steps an epoch.
OPTIONS: dict[str, Any] = dict(optimizer=Adam(0.01), epochs=5, batch_size=4, shuffle_seed=3)
UNITS = 3


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((10, 4, 2)).astype(np.float32)
    return xs, np.tanh(xs[:, -1, :1] + xs[:, 0, 1:]).astype(np.float32)


def variables() -> Any:
    return MODEL.init(jax.random.key(0), data()[0][0])


def assert_same(a: Any, b: Any) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def uninterrupted() -> tuple[Any, np.ndarray]:
    xs, ys = data()
    return lstm_jax.fit(MODEL, variables(), xs, ys, **OPTIONS)


@pytest.fixture
def one_step_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every window one step: a stop can come after any step."""
    monkeypatch.setattr(loop, "_window_for", lambda seconds_per_step: 1)


def stop_after(monkeypatch: pytest.MonkeyPatch, windows: int, signum: int) -> None:
    """``fit`` is told that ``signum`` arrived after its ``windows``-th window."""
    real = loop._agree
    seen = [0]

    def agree(requested: int | None, window: int) -> tuple[int | None, int]:
        seen[0] += 1
        return real(signum if seen[0] == windows else requested, window)

    monkeypatch.setattr(loop, "_agree", agree)


def test_windows_of_one_step_are_one_program_bitwise(
    uninterrupted: tuple[Any, np.ndarray], one_step_windows: None
) -> None:
    xs, ys = data()
    trained, losses = lstm_jax.fit(MODEL, variables(), xs, ys, **OPTIONS)
    np.testing.assert_array_equal(losses, uninterrupted[1])
    assert_same(trained, uninterrupted[0])


@pytest.mark.parametrize(
    ("signum", "kind"), [(signal.SIGTERM, Preempted), (signal.SIGINT, TrainingInterrupted)]
)
@pytest.mark.parametrize("steps", [1, 4, 6, 14])  # mid-epoch, mid-epoch, at an epoch's end, last
def test_a_stop_saves_that_step_and_the_same_call_resumes_bitwise(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    uninterrupted: tuple[Any, np.ndarray],
    one_step_windows: None,
    signum: int,
    kind: type,
    steps: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    xs, ys = data()
    options = dict(OPTIONS, checkpoint_dir=tmp_path, checkpoint_every=2)
    stop_after(monkeypatch, steps, signum)
    with pytest.raises(kind) as stopped:
        lstm_jax.fit(MODEL, variables(), xs, ys, **options)
    stop = stopped.value
    assert stop.global_step == steps
    epoch = steps // UNITS
    np.testing.assert_array_equal(stop.losses, uninterrupted[1][:epoch])
    if kind is Preempted:
        assert stop.code == PREEMPTED_EXIT == 143 and isinstance(stop, SystemExit)
    else:
        assert isinstance(stop, KeyboardInterrupt)
    assert stop.checkpoint is not None and Path(stop.checkpoint).is_dir()
    assert not (tmp_path / LOCK_NAME).exists()
    monkeypatch.undo()  # no stop this time, windows of a second
    with caplog.at_level(logging.INFO, logger="lstm_jax.train"):
        trained, losses = lstm_jax.fit(MODEL, variables(), xs, ys, **options)
    if steps < 15:
        assert "resumed from epoch" in caplog.text
    np.testing.assert_array_equal(losses, uninterrupted[1])
    assert_same(trained, uninterrupted[0])
    assert not (tmp_path / checkpointing.STOPPED).exists()  # an epoch's save passed it


def test_a_stop_carries_the_parameters_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a checkpoint_dir: Ctrl-C after 4 steps raises with the parameters of
    those 4 steps (a run of 4 steps gives them too)."""
    xs, ys = data()
    monkeypatch.setattr(loop, "_window_for", lambda seconds_per_step: 1)
    stop_after(monkeypatch, 4, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as stopped:
        lstm_jax.fit(MODEL, variables(), xs, ys, **OPTIONS)
    stop = stopped.value
    assert isinstance(stop, TrainingInterrupted) and stop.checkpoint is None
    assert "not saved (no checkpoint_dir)" in str(stop)
    assert stop.losses.shape == (1,)
    # The reference: the same 4 steps as a hand-written loop of make_train_step.
    step = lstm_jax.make_train_step(MODEL, OPTIONS["optimizer"])
    state = variables()
    opt_state = lstm_jax.as_optax(OPTIONS["optimizer"]).init(state["params"])
    orders = epoch_orders(len(xs), 2, OPTIONS["shuffle_seed"])
    batches = [o[k : k + 4] for o in orders for k in (0, 4, 8)][:4]
    for index in batches:
        state, opt_state, _ = step(state, opt_state, np.swapaxes(xs[index], 0, 1), ys[index])
    for got, want in zip(jax.tree.leaves(stop.variables), jax.tree.leaves(state), strict=True):
        assert_close(got, want, TRAINING[np.dtype(np.float32)], "parameters after 4 steps")


def no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_save_raises_with_the_parameters_and_keeps_earlier_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: tuple[Any, np.ndarray]
) -> None:
    xs, ys = data()
    options = dict(OPTIONS, checkpoint_dir=tmp_path, checkpoint_every=2)
    real_save = checkpointing.ocp.CheckpointManager.save

    def failing_at_epoch_4(self: Any, step: int, *args: Any, **kwargs: Any) -> Any:
        if step == 4:  # a half-written step, as a full disk leaves it
            (Path(self.directory) / f"{step}.orbax-checkpoint-tmp-123").mkdir()
            no_space()
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpointing.ocp.CheckpointManager, "save", failing_at_epoch_4)
    with pytest.raises(CheckpointWriteError) as failed:
        lstm_jax.fit(MODEL, variables(), xs, ys, **options)
    error = failed.value
    message = str(error)
    assert str(tmp_path) in message and "the checkpoint of epoch 4" in message
    assert "No space left on device" in message and "free" in message
    assert error.needed > 0 and error.free is not None
    assert error.last_complete == str(tmp_path / "2") and str(tmp_path / "2") in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2"]  # no tmp, no lock
    np.testing.assert_array_equal(error.losses, uninterrupted[1][:4])
    # the parameters after 4 epochs: a 4-epoch run's
    four, _ = lstm_jax.fit(MODEL, variables(), xs, ys, **{**OPTIONS, "epochs": 4})
    assert_same(error.variables, four)
    monkeypatch.undo()
    trained, losses = lstm_jax.fit(MODEL, variables(), xs, ys, **options)
    np.testing.assert_array_equal(losses, uninterrupted[1])
    assert_same(trained, uninterrupted[0])


def test_a_failed_saves_late_writer_does_not_leave_its_directory_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed save's other writers go on after orbax reports the first error: one that
    recreates the temporary directory after the first removal must not leave it there."""
    xs, ys = data()
    real_save = checkpointing.ocp.CheckpointManager.save
    late: list[threading.Thread] = []

    def failing_with_a_late_writer(self: Any, step: int, *args: Any, **kwargs: Any) -> Any:
        if step == 3:
            half = Path(self.directory) / f"{step}.orbax-checkpoint-tmp-7" / "state"
            half.mkdir(parents=True)

            def write_late() -> None:  # after the first removal, as TensorStore's I/O does
                while half.exists():
                    threading.Event().wait(0.005)
                threading.Event().wait(0.15)
                (half / "d").mkdir(parents=True, exist_ok=True)

            late.append(threading.Thread(target=write_late))
            late[0].start()
            no_space()
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpointing.ocp.CheckpointManager, "save", failing_with_a_late_writer)
    with pytest.raises(CheckpointWriteError, match="the half-written checkpoint was removed"):
        lstm_jax.fit(MODEL, variables(), xs, ys, **OPTIONS, checkpoint_dir=tmp_path)
    late[0].join()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


def test_an_unwritable_directory_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xs, ys = data()
    (tmp_path / "a_file").write_text("")
    trained = []
    monkeypatch.setattr(loop, "_run_windows", lambda *a, **k: trained.append(1))
    with pytest.raises(CheckpointWriteError, match="refusing to train") as refused:
        lstm_jax.fit(
            MODEL, variables(), xs, ys, **OPTIONS, checkpoint_dir=tmp_path / "a_file" / "d"
        )
    assert "a probe file, before training" in str(refused.value) and not trained


def test_a_second_run_is_refused_naming_the_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    xs, ys = data()
    first = RunLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(CheckpointDirBusy) as busy:
            lstm_jax.fit(MODEL, variables(), xs, ys, **OPTIONS, checkpoint_dir=tmp_path)
    finally:
        first.release()
    message = str(busy.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert busy.value.holder["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()
    # A record left by a dead holder (its flock gone with it) is taken over, with a warning.
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "started": "then"})
    )
    with caplog.at_level(logging.WARNING, logger="lstm_jax.train"):
        lstm_jax.fit(
            MODEL, variables(), xs, ys, **{**OPTIONS, "epochs": 1}, checkpoint_dir=tmp_path
        )
    assert "taking over the lock" in caplog.text and "which is gone" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists()


def dead_pid() -> int:
    """A pid no process has now."""
    pid = 2**22 - 1
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid -= 1


def test_stop_requests_only_set_a_flag_and_restore_the_handlers() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopRequests() as stops:
        assert stops.active and stops.requested is None
        signal.raise_signal(signal.SIGTERM)
        assert stops.requested == signal.SIGTERM and stops.sigterm
        signal.raise_signal(signal.SIGTERM)  # a second SIGTERM changes nothing
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C: out at once
            signal.raise_signal(signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_stop_requests_leave_ignored_signals_and_other_threads_alone() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopRequests():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    seen: list[bool] = []

    def in_a_thread() -> None:
        with StopRequests() as stops:
            seen.append(stops.active)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [False]


# --- lstm_torch.fit ---------------------------------------------------------------------


class StopAfter:
    """Stands for the installed stop requests: ``signum`` arrived after ``steps`` steps
    (``lstm_torch.fit`` asks once a step)."""

    def __init__(self, steps: int, signum: int) -> None:
        self.steps, self.signum, self.asked = steps, signum, 0

    @property
    def requested(self) -> int | None:
        self.asked += 1
        return self.signum if self.asked >= self.steps else None

    @property
    def sigterm(self) -> bool:
        return self.signum == signal.SIGTERM


def torch_model() -> Any:
    import torch

    import lstm_torch

    torch.manual_seed(0)
    return lstm_torch.LSTMModeler(2, 6, 1, num_layers=2, dropout=0.25)


def torch_params(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def torch_uninterrupted() -> tuple[dict[str, np.ndarray], np.ndarray]:
    import torch

    import lstm_torch

    xs, ys = data()
    model = torch_model()
    torch.manual_seed(1)  # dropout's stream
    losses = lstm_torch.fit(model, xs, ys, **OPTIONS)
    return torch_params(model), losses


@pytest.mark.parametrize(
    ("signum", "kind"), [(signal.SIGTERM, Preempted), (signal.SIGINT, TrainingInterrupted)]
)
@pytest.mark.parametrize("steps", [2, 6, 13])  # mid-epoch, an epoch's end, mid-epoch
def test_torch_a_stop_saves_that_step_and_resumes_bitwise(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    torch_uninterrupted: tuple[dict[str, np.ndarray], np.ndarray],
    signum: int,
    kind: type,
    steps: int,
) -> None:
    import torch

    import lstm_torch
    from lstm_torch import resume

    xs, ys = data()
    options = dict(OPTIONS, checkpoint_dir=tmp_path, checkpoint_every=2)
    model = torch_model()
    torch.manual_seed(1)
    stops = StopAfter(steps, signum)
    monkeypatch.setattr(resume, "current", lambda: stops)
    with pytest.raises(kind) as stopped:
        lstm_torch.fit(model, xs, ys, **options)
    stop = stopped.value
    assert stop.global_step == steps and Path(stop.checkpoint).is_file()
    np.testing.assert_array_equal(stop.losses, torch_uninterrupted[1][: steps // UNITS])
    assert sorted(stop.variables) == sorted(torch_uninterrupted[0])
    assert not (tmp_path / LOCK_NAME).exists()
    monkeypatch.undo()
    again = torch_model()
    torch.manual_seed(123)  # the checkpoint's random state is restored
    losses = lstm_torch.fit(again, xs, ys, **options)
    np.testing.assert_array_equal(losses, torch_uninterrupted[1])
    for key, value in torch_params(again).items():
        np.testing.assert_array_equal(value, torch_uninterrupted[0][key], err_msg=key)
    assert not (tmp_path / "stopped.pt").exists()


def test_torch_a_failed_save_raises_with_the_state_and_keeps_earlier_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import lstm_torch
    from lstm_torch import resume

    xs, ys = data()
    real = resume.torch.save
    calls = [0]

    def failing_third(obj: Any, f: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:
            f.write(b"half")
            no_space()
        real(obj, f)

    monkeypatch.setattr(resume.torch, "save", failing_third)
    model = torch_model()
    with pytest.raises(CheckpointWriteError) as failed:
        lstm_torch.fit(model, xs, ys, **OPTIONS, checkpoint_dir=tmp_path)
    error = failed.value
    assert "the checkpoint of epoch 3" in str(error) and "No space left on device" in str(error)
    assert error.last_complete == str(tmp_path / "epoch_00000002.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_00000001.pt", "epoch_00000002.pt"]
    assert error.needed > 0 and len(error.losses) == 3
    for key, value in model.state_dict().items():  # the model's state, as trained
        assert torch.equal(error.variables[key], value), key
    with pytest.raises(CheckpointDirBusy):  # and the torch side takes the lock too
        first = RunLock(tmp_path)
        first.acquire()
        try:
            lstm_torch.fit(torch_model(), xs, ys, **OPTIONS, checkpoint_dir=tmp_path)
        finally:
            first.release()
