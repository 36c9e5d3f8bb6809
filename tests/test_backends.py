"""The backends: both fulfil the `Backend` contract, and the Numba backend measures the spectral
radius from its own weights as the torch backend does from its model."""
import math

import numpy as np
import pytest
import torch

from rnnbench import tasks
from rnnbench.backends import Backend, TorchBackend, make_backend
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
