"""Training backends: who holds the parameters and computes one optimisation step.

    backend = make_backend(cfg, task)      # the backend resolve_backend(cfg) names
    loss, grad_norm, clipped = backend.step(batch)

The contract (`Backend`, a Protocol) is base.py; selection.py decides which backend and device
a run gets; one module per backend: torch_backend.py (any cell, CPU or GPU) and
numba_backend.py (CPU, through the Numba reference kernels); precision.py is the GPU precision
policy. Both backends start from `init.build_initialised_model(cfg, task)`'s weights (the Numba
backend draws them in numpy where `init_numpy` can, without importing torch), so a seed gives
the same weights on either.
"""
from __future__ import annotations

import importlib

from ..config import RunConfig
from .base import Backend
from .selection import resolve_backend, resolve_device

__all__ = ["Backend", "TorchBackend", "make_backend", "resolve_backend", "resolve_device",
           "set_precision"]

# Loaded on first use (PEP 562), as they import torch: a Numba run's process does not need it.
_LAZY = {"TorchBackend": "torch_backend", "set_precision": "precision"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def make_backend(cfg: RunConfig, task) -> Backend:
    """The backend that `resolve_backend(cfg)` names, holding the run's initial weights."""
    name = resolve_backend(cfg)
    if name == "numba":
        from .numba_backend import NumbaBackend  # lazy: torch-only runs never load Numba
        return NumbaBackend(cfg, task)
    if name == "ensemble":
        raise ValueError("field 'backend': 'ensemble' trains groups of runs; use "
                         "rnnbench.ensemble.run_group (the pipeline does this for you)")
    from .torch_backend import TorchBackend
    return TorchBackend(cfg, task)
