"""The precision policy of torch on a GPU (`RunConfig.precision`), shared by the torch backend
and the ensemble engine."""
from __future__ import annotations

import contextlib

import torch


def set_precision(device: str, precision: str):
    """FP32 means no TF32 anywhere (cuDNN allows it by default); BF16 autocasts matmuls.

    Sets torch's global TF32 switches for a CUDA device and returns a factory of the context
    that the forward pass runs in (autocast for bf16, else a no-op)."""
    if device.startswith("cuda"):
        allow = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow
    if device.startswith("cuda") and precision == "bf16":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext
