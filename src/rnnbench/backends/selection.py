"""Which backend and which device a run gets: the decisions, in one place.

`make_backend` (rnnbench.backends) builds what `resolve_backend` chose.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from .. import models
from ..cell_table import KERNEL_ACTIVATIONS, numba_trains
from ..config import RunConfig


def cuda_available() -> bool:
    """torch.cuda.is_available(), without importing torch where its build has no GPU support
    (its version.py names no CUDA or ROCm version): a CPU run's process then need not load it."""
    if "torch" not in sys.modules and not _torch_build_has_gpu():
        return False
    import torch
    return torch.cuda.is_available()


def _torch_version_file() -> Path | None:
    """torch/version.py of the installed torch, found without importing it."""
    spec = importlib.util.find_spec("torch")
    origin = getattr(spec, "origin", None)
    return Path(origin).parent / "version.py" if origin else None


def _torch_build_has_gpu() -> bool:
    try:
        text = _torch_version_file().read_text()
    except (AttributeError, OSError):
        return True  # not the usual layout: ask torch
    versions = dict(re.findall(r"^(cuda|hip)\b[^=]*=\s*(.+?)\s*$", text, flags=re.M))
    if set(versions) != {"cuda", "hip"}:
        return True
    return any(v != "None" for v in versions.values())


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise ValueError("field 'device': 'cuda' requested but no CUDA device is available")
    return device


def resolve_backend(cfg: RunConfig) -> str:
    device = resolve_device(cfg.device)
    if cfg.backend == "auto":
        kernels = numba_trains(cfg) and models.is_builtin(cfg.cell)
        return "numba" if device == "cpu" and kernels else "torch"
    if cfg.backend == "numba":
        if device != "cpu":
            raise ValueError("field 'backend': 'numba' runs on the CPU; set device: cpu or auto")
        if not models.is_builtin(cfg.cell):
            raise ValueError(f"field 'backend': 'numba' has kernels for rnn/lstm/gru only; "
                             f"cell {cfg.cell!r} is a plug-in: use backend torch or auto")
        if not numba_trains(cfg):
            raise ValueError("field 'backend': 'numba' supports single-layer, unidirectional "
                             f"rnn ({'/'.join(KERNEL_ACTIVATIONS)}), lstm and gru; "
                             f"got cell={cfg.cell!r} activation={cfg.activation!r} "
                             f"layers={cfg.layers} bidirectional={cfg.bidirectional}")
    return cfg.backend
