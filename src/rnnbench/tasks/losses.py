"""The three loss kinds, in numpy (evaluation, Numba backend) and torch (training).

    mse     out (B,) or (B, 1), y (B,) float   mean over the batch of (out - y)^2
    ce      out (B, C) logits,  y (B,) int     mean cross-entropy over the batch (last step)
    ce_seq  out (B, L, C),      y (B, L) int   cross-entropy averaged over all B*L steps
                                               (the copy baseline 10 ln 8/(T+20) needs this)

Shapes are checked strictly: a (L, B, C) output for a batch-first target is an error, not a
silent broadcast.
"""
from __future__ import annotations

import numpy as np

KINDS = ("mse", "ce", "ce_seq")


def check_shapes(kind: str, out_shape: tuple, y_shape: tuple) -> None:
    out_shape, y_shape = tuple(out_shape), tuple(y_shape)
    if kind == "mse":
        ok = len(y_shape) == 1 and out_shape in (y_shape, y_shape + (1,))
        want = "(B,) or (B, 1) for y (B,)"
    elif kind == "ce":
        ok = len(y_shape) == 1 and len(out_shape) == 2 and out_shape[0] == y_shape[0]
        want = "(B, C) for y (B,)"
    elif kind == "ce_seq":
        ok = len(y_shape) == 2 and len(out_shape) == 3 and out_shape[:2] == y_shape
        want = "(B, L, C) for y (B, L)"
    else:
        raise ValueError(f"unknown loss kind {kind!r}; allowed: {list(KINDS)}")
    if not ok:
        raise ValueError(f"{kind} loss: output shape {out_shape} does not fit target shape "
                         f"{y_shape}; expected output {want}")


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)  # stable: exp never overflows
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def numpy_loss(kind: str, out, y) -> float:
    """The mean loss as a Python float, computed in float64."""
    out, y = np.asarray(out), np.asarray(y)
    check_shapes(kind, out.shape, y.shape)
    out = out.astype(np.float64)
    if kind == "mse":
        return float(np.mean((out.reshape(y.shape) - y) ** 2))
    logp = _log_softmax(out)
    picked = np.take_along_axis(logp, y.astype(np.int64)[..., None], axis=-1)
    return float(-picked.mean())


def loss_grad(kind: str, out, y) -> np.ndarray:
    """d(mean loss)/d(out), same shape as out; float64 in, float64 out (float32 stays float32)."""
    out, y = np.asarray(out), np.asarray(y)
    check_shapes(kind, out.shape, y.shape)
    dtype = out.dtype if out.dtype in (np.float32, np.float64) else np.float64
    out64 = out.astype(np.float64)
    if kind == "mse":
        grad = 2.0 * (out64.reshape(y.shape) - y) / y.size
        return grad.reshape(out.shape).astype(dtype)
    grad = np.exp(_log_softmax(out64))  # (softmax - onehot) / number of terms
    target = y.astype(np.int64)[..., None]
    np.put_along_axis(grad, target, np.take_along_axis(grad, target, axis=-1) - 1.0, axis=-1)
    return (grad / y.size).astype(dtype)


def torch_loss(kind: str, out, y):
    """Differentiable mean loss of a torch output; y may be a tensor or a numpy array."""
    import torch  # lazy: numpy users of this module need not load torch
    import torch.nn.functional as F

    y = torch.as_tensor(y, device=out.device)
    check_shapes(kind, out.shape, y.shape)
    if kind == "mse":
        return F.mse_loss(out.reshape(y.shape), y.to(out.dtype))
    if kind == "ce":
        return F.cross_entropy(out, y.long())
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1).long())
