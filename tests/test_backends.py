"""The backends: both fulfil the `Backend` contract, the Numba backend measures the spectral
radius from its own weights as the torch backend does from its model, and its float32 steps
flush subnormals without changing a result."""
import contextlib
import math

import numpy as np
import pytest
import torch

from rnnbench import reference, tasks
from rnnbench.backends import Backend, TorchBackend, make_backend
from rnnbench.backends import numba_backend
from rnnbench.backends.numba_backend import NumbaBackend
from rnnbench.config import RunConfig

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def pair(cell, activation, init="default", dtype="float64", seed=3):
    cfg = RunConfig(task="adding", T=8, cell=cell, activation=activation, hidden=7, init=init,
                    dtype=dtype, seed=seed, device="cpu", batch_size=16, optimizer="sgd",
                    lr=0.5)
    task = tasks.make(cfg.task, cfg.T)
    return (TorchBackend(cfg.replace(backend="torch"), task),
            NumbaBackend(cfg.replace(backend="numba"), task), task)


def test_both_backends_fulfil_the_contract():
    torch_backend, numba_backend, task = pair("lstm", "tanh")
    for backend in (torch_backend, numba_backend):
        assert isinstance(backend, Backend), type(backend).__name__
    cfg = torch_backend.cfg
    assert isinstance(make_backend(cfg.replace(backend="auto"), task), NumbaBackend)
    assert isinstance(make_backend(cfg.replace(backend="torch"), task), TorchBackend)


def test_backend_protocol_documents_every_member():
    assert set(Backend.__annotations__) == {"name", "device", "cfg"}
    for method in ("step", "predict", "spectral_radius", "gradflow", "n_params", "state_dict",
                   "load_state_dict"):
        assert callable(getattr(Backend, method)) and getattr(Backend, method).__doc__, method


def test_numba_backend_keeps_no_torch_model():
    _, numba_backend, _ = pair("gru", "tanh")
    held = [k for k, v in vars(numba_backend).items() if isinstance(v, torch.nn.Module)]
    assert held == []


@pytest.mark.parametrize("cell,activation", CELLS)
@pytest.mark.parametrize("init,dtype", [("default", "float64"), ("orthogonal", "float64"),
                                        ("smart", "float32")])
def test_numba_spectral_radius_equals_torch(cell, activation, init, dtype):
    torch_backend, numba_backend, task = pair(cell, activation, init, dtype)
    start = torch_backend.spectral_radius()
    assert math.isfinite(start) and start > 0
    assert numba_backend.spectral_radius() == start  # one function, the same weights: bit-equal
    if dtype == "float64":  # same weights after a few identical steps (float64: to rounding)
        for step in range(3):
            batch = task.sample(16, step)
            torch_backend.step(batch)
            numba_backend.step(batch)
        moved = torch_backend.spectral_radius()
        assert moved != start
        assert numba_backend.spectral_radius() == pytest.approx(moved, rel=1e-9, abs=0)


def test_numba_spectral_radius_of_a_non_finite_weight_is_nan():
    torch_backend, numba_backend, _ = pair("rnn", "tanh")
    numba_backend.params["weight_hh"][0, 0] = np.inf
    with torch.no_grad():
        torch_backend.model.rnn.weight_hh_l0[0, 0] = math.inf
    assert math.isnan(numba_backend.spectral_radius())
    assert math.isnan(torch_backend.spectral_radius())


# --- float32 steps flush subnormals ----------------------------------------------------------
def _flush_supported() -> bool:
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(False)
    return supported


@pytest.mark.skipif(not _flush_supported(), reason="this CPU cannot flush subnormals")
@pytest.mark.parametrize("dtype,inside", [("float32", True), ("float64", False)])
def test_numba_steps_flush_subnormals_in_float32_only_and_restore_the_thread(dtype, inside):
    _, backend, task = pair("rnn", "tanh", dtype=dtype)
    seen = []
    gradients = backend.gradients
    backend.gradients = lambda batch: (seen.append(numba_backend.flushing_subnormals()),
                                       gradients(batch))[1]
    states = backend._states
    backend._states = lambda x: (seen.append(numba_backend.flushing_subnormals()), states(x))[1]
    assert not numba_backend.flushing_subnormals()
    backend.step(task.sample(16, 0))
    backend.predict(task.sample(16, 1).x)
    assert seen and all(s == inside for s in seen), seen
    assert not numba_backend.flushing_subnormals()  # as before the step
    with numba_backend.subnormals_flushed():        # a caller's own setting is left alone
        backend.step(task.sample(16, 2))
        assert numba_backend.flushing_subnormals()
    assert not numba_backend.flushing_subnormals()


def test_flushing_subnormals_changes_no_float32_step(monkeypatch):
    """A tanh RNN whose BPTT error underflows within the sequence: the same steps with and
    without flushing give bit-identical losses, gradient norms and weights."""
    cfg = RunConfig(task="adding", T=60, cell="rnn", hidden=16, dtype="float32", seed=1,
                    batch_size=16, optimizer="adam", lr=0.01, clip="norm", clip_threshold=1.0,
                    backend="numba")
    task = tasks.make(cfg.task, cfg.T)
    batches = [task.sample(16, seed) for seed in range(4)]

    def backend():
        b = NumbaBackend(cfg, task)
        b.params["weight_hh"] *= 0.2  # δ shrinks about 5x per step back: subnormal by lag ~55
        return b

    probe = backend()
    states = probe._states(batches[0].x)
    grad_h = np.zeros_like(states.h)
    grad_h[-1] = 1e-3
    dh = reference.backward(states, grad_h, return_dh=True)["dh"]
    tiny = np.finfo(np.float32).tiny
    assert np.any((dh != 0) & (np.abs(dh) < tiny)), "no subnormals: the test would prove nothing"

    flushed, plain = backend(), backend()
    steps_flushed = [flushed.step(b) for b in batches]
    monkeypatch.setattr(numba_backend, "subnormals_flushed", contextlib.nullcontext)
    steps_plain = [plain.step(b) for b in batches]
    assert steps_flushed == steps_plain
    assert np.array_equal(flushed.flat, plain.flat)


@pytest.mark.parametrize("cell,activation", CELLS)
@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_numba_predict_does_not_depend_on_the_chunk(cell, activation, dtype, rtol):
    """Evaluation runs in chunks of sequences: the outputs, in order, must be those of a single
    pass over all of them (to rounding: BLAS may sum in another order for a small chunk), for a
    last-step and a per-step readout and a hidden size off the GEMM tile."""
    for task_name, hidden in (("adding", 7), ("copy", 32)):
        cfg = RunConfig(task=task_name, T=12, cell=cell, activation=activation, hidden=hidden,
                        dtype=dtype, seed=2, backend="numba")
        task = tasks.make(cfg.task, cfg.T)
        backend = NumbaBackend(cfg, task)
        x = task.sample(203, 5).x
        whole = backend.predict(x, chunk=len(x))
        assert whole.shape[0] == len(x)
        for chunk in (1, 5, 64):
            np.testing.assert_allclose(backend.predict(x, chunk=chunk), whole, rtol=rtol,
                                       atol=rtol * 1e-2, err_msg=f"{task_name} chunk {chunk}")
