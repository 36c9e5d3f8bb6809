"""Training backends: who holds the parameters and computes one optimisation step.

    backend = make_backend(cfg, task)      # the backend resolve_backend(cfg) names
    loss, grad_norm, clipped = backend.step(batch)

The contract (`Backend`, a Protocol) is base.py; selection.py decides which backend and device
a run gets; one module per backend: torch_backend.py (any cell, CPU or GPU) and
numba_backend.py (CPU, through the Numba reference kernels); precision.py is the GPU precision
policy. Both backends start from `init.build_initialised_model(cfg, task)`, so a seed gives the
same weights on either.
"""
from __future__ import annotations

from ..config import RunConfig
from .base import Backend
from .precision import set_precision
from .selection import resolve_backend, resolve_device
from .torch_backend import TorchBackend

__all__ = ["Backend", "TorchBackend", "make_backend", "resolve_backend", "resolve_device",
           "set_precision"]


def make_backend(cfg: RunConfig, task) -> Backend:
    """The backend that `resolve_backend(cfg)` names, holding the run's initial weights."""
    name = resolve_backend(cfg)
    if name == "numba":
        from .numba_backend import NumbaBackend  # lazy: torch-only runs never load Numba
        return NumbaBackend(cfg, task)
    if name == "ensemble":
        raise ValueError("field 'backend': 'ensemble' trains groups of runs; use "
                         "rnnbench.ensemble.run_group (the pipeline does this for you)")
    return TorchBackend(cfg, task)
