"""Elman RNN cell: Numba forward and BPTT kernels (PyTorch `nn.RNN` conventions).

    net_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        h_t = f(net_t)

Backward (the BPTT recursion of SCIENCE.md §1, written in PyTorch's row convention):

    dL/dh_t   = grad_h_t + δ_{t+1} W_hh                  (external + recurrent part)
    δ_t       = dL/dh_t ⊙ f'(net_t)                      i.e. δ_k = δ_t Π W_hh diag f'(net)
    dW_ih = Σ_t δ_t^T x_t,  dW_hh = Σ_t δ_t^T h_{t-1},  db_ih = db_hh = Σ_t δ_t,  dx_t = δ_t W_ih

Layout choices for speed: the input projection x W_ih^T of all T steps is one GEMM before the
loop; each step then does one (B×H)·(H×H) GEMM into a preallocated buffer plus one fused
elementwise pass. The weight gradients are one GEMM each after the loop (δ of all steps is kept),
not T small accumulations. f'(net_t) is recovered from h_t (tanh: 1−h², sigmoid: h(1−h),
relu: [h>0], identity: 1), so the forward pass saves only h.

This file is self-contained (no jitted helpers imported) so `cache=True` sees every edit.
"""
from __future__ import annotations

import numba
import numpy as np

ACTIVATION_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "identity": 3}


@numba.njit(cache=True, inline="always")
def _activate(a, one, code):
    """f(a) for the activation `code`; `one` carries the compute dtype."""
    if code == 0:
        return np.tanh(a)
    if code == 1:
        return a if a > 0 else a * 0
    if code == 2:
        return one / (one + np.exp(-a))
    return a


@numba.njit(cache=True, inline="always")
def _derivative_from_output(h, one, code):
    """f'(net) expressed through h = f(net) (relu: 0 at net = 0, as in PyTorch)."""
    if code == 0:
        return one - h * h
    if code == 1:
        return one if h > 0 else h * 0
    if code == 2:
        return h * (one - h)
    return one


@numba.njit(cache=True)
def forward_kernel(x, h0, w_ih, w_hh, b_ih, b_hh, code):
    """Return h (T, B, H). All arrays C-contiguous and of one float dtype."""
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    bias = b_ih + b_hh
    w_hh_t = np.ascontiguousarray(w_hh.T)
    h = np.empty((T, B, H), dtype=x.dtype)
    # input projection of every step in one GEMM, written straight into h (overwritten below)
    np.dot(x.reshape(T * B, I), np.ascontiguousarray(w_ih.T), h.reshape(T * B, H))
    recurrent = np.empty((B, H), dtype=x.dtype)
    for t in range(T):
        h_prev = h0 if t == 0 else h[t - 1]
        np.dot(h_prev, w_hh_t, recurrent)
        h_t = h[t]
        for b in range(B):
            for j in range(H):
                h_t[b, j] = _activate(h_t[b, j] + recurrent[b, j] + bias[j], one, code)
    return h


@numba.njit(cache=True)
def backward_kernel(x, h0, w_ih, w_hh, h, grad_h, code, dh_trace):
    """BPTT. Returns (d_w_ih, d_w_hh, d_b, d_x, d_h0); d_b is both bias gradients.

    dh_trace: (T, B, H) array that receives the total dL/dh_t of every step, or a (0, B, H)
    array to skip that (only the diagnostics need it).
    """
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    keep_trace = dh_trace.shape[0] == T
    delta = np.empty((T, B, H), dtype=x.dtype)       # δ_t = dL/dnet_t
    recurrent = np.zeros((B, H), dtype=x.dtype)      # δ_{t+1} W_hh
    for t in range(T - 1, -1, -1):
        h_t = h[t]
        g_t = grad_h[t]
        d_t = delta[t]
        for b in range(B):
            for j in range(H):
                dh = g_t[b, j] + recurrent[b, j]
                if keep_trace:
                    dh_trace[t, b, j] = dh
                d_t[b, j] = dh * _derivative_from_output(h_t[b, j], one, code)
        np.dot(d_t, w_hh, recurrent)  # the recursion δ_{t-1} ∝ δ_t W_hh diag f'(net_{t-1})
    d_h0 = recurrent

    # weight gradients: one GEMM each over all T·B rows instead of T small accumulations
    delta_rows = delta.reshape(T * B, H)
    d_w_ih = np.dot(delta_rows.T, x.reshape(T * B, I))
    d_w_hh = np.dot(delta[0].T, h0)
    if T > 1:
        d_w_hh += np.dot(delta[1:].reshape((T - 1) * B, H).T, h[:T - 1].reshape((T - 1) * B, H))
    d_b = np.zeros(H, dtype=x.dtype)
    for r in range(T * B):
        for j in range(H):
            d_b[j] += delta_rows[r, j]
    d_x = np.dot(delta_rows, w_ih).reshape(T, B, I)
    return d_w_ih, d_w_hh, d_b, d_x, d_h0


def forward(params, x, h0, c0, activation):
    """Validated inputs in; returns the saved arrays (h, c, gates, hn) = (h, None, None, None)."""
    h = forward_kernel(x, h0, params["weight_ih"], params["weight_hh"], params["bias_ih"],
                       params["bias_hh"], ACTIVATION_CODES[activation])
    return h, None, None, None


def backward(states, grad_h, dh_trace):
    """Gradients dict from the saved forward states (see `_common.ForwardStates`)."""
    p = states.params
    d_w_ih, d_w_hh, d_b, d_x, d_h0 = backward_kernel(
        states.x, states.h0, p["weight_ih"], p["weight_hh"], states.h, grad_h,
        ACTIVATION_CODES[states.activation], dh_trace)
    return {"weight_ih": d_w_ih, "weight_hh": d_w_hh, "bias_ih": d_b, "bias_hh": d_b.copy(),
            "x": d_x, "h0": d_h0}
