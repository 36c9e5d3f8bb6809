"""Gradient clipping (Pascanu et al. 2013): by global norm, or elementwise by value.

`clip_(parameters, cfg) -> (grad_norm_before, clipped)`. The global L2 norm of all gradients is
always measured first (computed in float64, so a float32 overflow of the sum of squares does not
fake a divergence). A non-finite norm is returned as it is and the gradients are left alone:
the trainer records divergence.
"""
from __future__ import annotations

import math

import torch

from .optim import CLIP_MODES

MODES = tuple(CLIP_MODES)  # the table: rnnbench.optim


@torch.no_grad()
def grad_norm(parameters) -> float:
    """Global L2 norm of the gradients of `parameters` (those without a gradient are skipped)."""
    return _global_norm([p.grad for p in parameters if p.grad is not None])


def _global_norm(grads: list[torch.Tensor]) -> float:
    if not grads:
        return 0.0
    norms = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads])
    return float(torch.linalg.vector_norm(norms))


@torch.no_grad()
def clip_(parameters, cfg) -> tuple[float, bool]:
    """Clip in place by `cfg.clip` in {none, norm, value} with threshold `cfg.clip_threshold`."""
    mode, threshold = cfg.clip, float(cfg.clip_threshold)
    if mode not in MODES:
        raise ValueError(f"field 'clip': unknown value {mode!r}; allowed: {list(MODES)}")
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = _global_norm(grads)
    if mode == "none" or not math.isfinite(norm):
        return norm, False
    if mode == "norm":
        if norm <= threshold:
            return norm, False
        coef = threshold / norm  # g <- theta g / ||g||: direction kept, length theta
        for g in grads:
            g.mul_(coef)
        return norm, True
    clipped = any(bool((g.abs() > threshold).any()) for g in grads)
    if clipped:
        for g in grads:
            g.clamp_(-threshold, threshold)
    return norm, clipped

