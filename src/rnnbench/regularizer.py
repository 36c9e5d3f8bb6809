"""Pascanu et al. 2013's regulariser Omega (their eq. 9) for the plain rnn cell.

Omega pushes the norm of the error, as it travels back one step, to stay the same:

    r_{b,t} = || dE/dh_t . dh_t/dh_{t-1} || / || dE/dh_t ||      (sequence b, step t = 1..L)
    Omega   = mean over (b, t) with ||dE/dh_t||^2 >= TINY of (r_{b,t} - 1)^2

and the run minimises E + alpha * Omega with alpha = `RunConfig.regularizer` (the paper: 2).
dE/dh_t is the total BPTT error at h_t (through the readout and all later steps). As in the
authors' code (pascanur/trainingRNNs, RNN.py), dE/dh_t and the slopes f'(net_t) are held
constant: Omega is differentiated with respect to W_hh only. For the rnn cell,
dh_t/dh_{t-1} = diag f'(net_t) W_hh, so the vector-Jacobian product of sequence b is the row
(g_t * f'(net_t)) @ W_hh. Two choices follow the code rather than eq. 9's text, because alpha = 2
was tuned with them: the terms are averaged over steps and sequences (eq. 9 sums over steps;
the sum would weigh Omega about L times more), and a step whose error is numerically zero is
left out (0/0). The ratio of norms is eq. 9's (the code compares squared norms; both are
minimal at r = 1). The transition h_0 -> h_1 counts (h_0 = 0 is a constant).

Two implementations: `loss_and_omega` and `omega` for the torch backend (autograd through a
loop over time), and `omega_and_grad` for the Numba backend, which has dE/dh_t from its BPTT
kernel and writes Omega's gradient out (it is `omega`'s autograd gradient; the tests hold the
two to each other, to a hand computation and to finite differences). torch is imported only by
the torch functions.
"""
from __future__ import annotations

import numpy as np

TINY = 1e-20  # squared error norms below this are left out of the mean, as in the authors' code


def check(cfg) -> None:
    """ValueError, naming the field, for a run whose regulariser cannot be computed."""
    where = f"field 'regularizer' (= {cfg.regularizer:g}, Pascanu 2013's Omega)"
    if cfg.cell != "rnn":
        raise ValueError(f"{where}: implemented for cell 'rnn' only, got cell={cfg.cell!r}; "
                         "set regularizer: 0 for this method")
    if cfg.layers != 1 or cfg.bidirectional:
        raise ValueError(f"{where}: implemented for a single-layer, one-direction rnn, got "
                         f"layers={cfg.layers} bidirectional={cfg.bidirectional}")
    if cfg.backend not in ("auto", "torch", "numba"):
        raise ValueError(f"{where}: trains on backend 'numba' or 'torch' ('auto' picks numba on "
                         f"the CPU, torch elsewhere); got backend={cfg.backend!r}")


def omega_and_grad(grad_h: np.ndarray, slope: np.ndarray, weight_hh: np.ndarray):
    """(Omega, dOmega/dW_hh) in numpy, in grad_h's dtype: dE/dh_t and f'(net_t), both (..., H)
    and constant (any order of the sequence and step axes), and W_hh (H, H).

    With u = g * f', v = u W_hh and r = |v| / |g| per (sequence, step), each of the n valid
    terms adds 2 (r - 1) / (n |g|) u^T (v / |v|) to the gradient (nothing where |v| = 0, as
    torch's norm backward), so the gradient is one (H x n) (n x H) product."""
    hidden = weight_hh.shape[0]
    g = grad_h.reshape(-1, hidden)
    u = (grad_h * slope).reshape(-1, hidden)
    v = u @ weight_hh
    squared = np.einsum("ij,ij->i", g, g)
    valid = squared >= TINY
    n = max(int(valid.sum()), 1)
    norm_g = np.sqrt(np.maximum(squared, TINY))
    norm_v = np.sqrt(np.einsum("ij,ij->i", v, v))
    ratio = norm_v / norm_g
    value = np.where(valid, (ratio - 1.0) ** 2, 0.0).sum() / n
    with np.errstate(divide="ignore", invalid="ignore"):
        direction = np.where((valid & (norm_v > 0))[:, None], v / norm_v[:, None], 0.0)
    return value, u.T @ ((2.0 * (ratio - 1.0) / (n * norm_g))[:, None] * direction)


def omega(grad_h, slope, weight_hh):
    """Omega (a torch scalar) from dE/dh_t and f'(net_t), both (B, L, H) tensors and constant,
    and W_hh (H, H)."""
    import torch

    vjp = (grad_h * slope) @ weight_hh                    # dE/dh_t . dh_t/dh_{t-1}, (B, L, H)
    squared = (grad_h * grad_h).sum(dim=-1)
    valid = squared >= TINY
    ratio = torch.linalg.vector_norm(vjp, dim=-1) / squared.clamp_min(TINY).sqrt()
    terms = torch.where(valid, (ratio - 1.0) ** 2, torch.zeros_like(ratio))
    return terms.sum() / valid.sum().clamp_min(1)


def loss_and_omega(model, x: torch.Tensor, y: torch.Tensor, loss_kind: str):
    """(task loss E, Omega) of a single-layer rnn `model` (a SequenceModel) on one batch.

    The recurrence runs as a loop that keeps every h_t in the graph (nn.RNN's fused kernel
    hides them), with the model's own parameters, so E equals `torch_loss(model(x), y)`.
    The graph of E is kept for the caller's backward of E + alpha * Omega."""
    import torch
    import torch.nn.functional as F

    from .models import get_activation
    from .tasks.losses import torch_loss

    rnn = model.rnn
    f = get_activation(model.activation).fn
    w_hh = rnn.weight_hh_l0
    xw = F.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0) + rnn.bias_hh_l0
    h = x.new_zeros(x.shape[0], rnn.hidden_size)
    states, nets = [], []
    for t in range(x.shape[1]):
        net = xw[:, t] + F.linear(h, w_hh)
        h = f(net)
        nets.append(net)
        states.append(h)
    loss = torch_loss(loss_kind, model.readout(torch.stack(states, dim=1)), y)
    grads = torch.autograd.grad(loss, states, retain_graph=True)   # total dE/dh_t, t = 1..L
    grad_h = torch.stack(grads, dim=1).detach()
    net = torch.stack(nets, dim=1).detach().requires_grad_(True)
    with torch.enable_grad():
        slope, = torch.autograd.grad(f(net).sum(), net)             # f'(net_t), any activation
    return loss, omega(grad_h, slope, w_hh)
