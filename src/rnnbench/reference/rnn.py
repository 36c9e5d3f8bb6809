"""Elman RNN cell: Numba forward and BPTT kernels (PyTorch `nn.RNN` conventions).

    net_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        h_t = f(net_t)

Backward (the BPTT recursion of docs/science/model-and-bptt.md §2, written in PyTorch's row convention):

    dL/dh_t   = grad_h_t + δ_{t+1} W_hh                  (external + recurrent part)
    δ_t       = dL/dh_t ⊙ f'(net_t)                      i.e. δ_k = δ_t Π W_hh diag f'(net)
    dW_ih = Σ_t δ_t^T x_t,  dW_hh = Σ_t δ_t^T h_{t-1},  db_ih = db_hh = Σ_t δ_t,  dx_t = δ_t W_ih

Layout choices for speed: the input projection x W_ih^T of all T steps is one GEMM before the
loop; each step then does one (B×H)·(H×H) GEMM into a preallocated buffer plus short
unit-stride row loops that LLVM vectorises. The weight gradients are one GEMM each after the
loop (δ of all steps is kept), not T small accumulations. f'(net_t) is recovered from h_t
(tanh: 1−h², sigmoid: h(1−h), relu: [h>0], identity: 1), so the forward pass saves only h.

Self-contained (no jitted helper imported from elsewhere) so that `cache=True` sees every edit.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

from ._common import scratch

ACTIVATION_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "identity": 3}


# --- elementwise math ------------------------------------------------------------------------
# Branch-free exp / sigmoid / tanh without libm calls, so that LLVM vectorises the row loops
# (AVX2: 8 float32 or 4 float64 lanes; libm's tanh alone cost ~20 ns per element here).
# This block is identical in rnn.py, lstm.py and gru.py: each file stays self-contained so that
# Numba's cache=True sees every edit, and tests/test_reference.py checks the copies agree.
# Accuracy (tested): within 4 ulp of the exact value in both dtypes; NaN propagates; exp
# saturates to inf above ~88.4 (float32) / ~709.4 (float64) and to its smallest normal result
# below −87 / −708, which keeps sigmoid and tanh exact at ±inf.

def _exp(x):
    """exp(x) in x's own precision: x = k·ln2 + r, Taylor polynomial in r, 2^k as exponent bits."""


@overload(_exp)
def _exp_impl(x):
    if x == types.float32:
        def exp32(x):
            x = np.float32(89.0) if x > np.float32(89.0) else x     # 2^128: inf; NaN passes
            x = np.float32(-87.0) if x < np.float32(-87.0) else x
            shifted = x * np.float32(1.4426950408889634) + np.float32(12582912.0)  # 1.5·2^23
            k = shifted - np.float32(12582912.0)                       # round(x / ln2)
            r = (x - k * np.float32(0.693145751953125)) - k * np.float32(1.428606765330187e-06)
            p = np.float32(1.0 / 5040.0)
            p = p * r + np.float32(1.0 / 720.0)
            p = p * r + np.float32(1.0 / 120.0)
            p = p * r + np.float32(1.0 / 24.0)
            p = p * r + np.float32(1.0 / 6.0)
            p = p * r + np.float32(0.5)
            p = p * r + np.float32(1.0)
            p = p * r + np.float32(1.0)
            k_int = np.float32(shifted).view(np.int32) - np.int32(0x4B400000)
            return p * np.int32((k_int + np.int32(127)) << np.int32(23)).view(np.float32)
        return exp32

    def exp64(x):
        x = 710.0 if x > 710.0 else x                     # 2^1024 assembles inf; NaN passes
        x = -708.0 if x < -708.0 else x
        shifted = x * 1.4426950408889634 + 6755399441055744.0           # 1.5·2^52
        k = shifted - 6755399441055744.0                               # round(x / ln2)
        r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        k_int = np.float64(shifted).view(np.int64) - np.int64(0x4338000000000000)
        return p * np.int64((k_int + np.int64(1023)) << np.int64(52)).view(np.float64)
    return exp64


@numba.njit(cache=True, error_model="numpy", inline="always")
def _sigmoid(a, one):
    return one / (one + _exp(-a))


@numba.njit(cache=True, error_model="numpy", inline="always")
def _tanh(a, one):
    """tanh via e = exp(−2|a|): (1 − e)/(1 + e), and its Taylor series below |a| = 0.1 where
    that subtraction cancels (both computed, one selected: no branch, so it vectorises)."""
    real = type(one)
    s = abs(a)
    e = _exp(-(s + s))
    far = (one - e) / (one + e)
    s2 = s * s
    p = real(-929569.0 / 638512875.0)
    p = p * s2 + real(21844.0 / 6081075.0)
    p = p * s2 + real(-1382.0 / 155925.0)
    p = p * s2 + real(62.0 / 2835.0)
    p = p * s2 + real(-17.0 / 315.0)
    p = p * s2 + real(2.0 / 15.0)
    p = p * s2 + real(-1.0 / 3.0)
    near = s + s * s2 * p
    t = near if s < real(0.1) else far
    return t if a >= 0 else -t
# --- end of the elementwise math block --------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def forward_kernel(x, h0, w_ih, w_hh, b_ih, b_hh, code):
    """Return h (T, B, H). All arrays C-contiguous and of one float dtype; code from
    ACTIVATION_CODES."""
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    zero = x.dtype.type(0.0)
    bias = b_ih + b_hh
    w_hh_t = np.ascontiguousarray(w_hh.T)
    h = np.empty((T, B, H), dtype=x.dtype)
    # input projection of every step in one GEMM, written straight into h (activated below)
    np.dot(x.reshape(T * B, I), np.ascontiguousarray(w_ih.T), h.reshape(T * B, H))
    recurrent = np.empty((B, H), dtype=x.dtype)
    for t in range(T):
        np.dot(h0 if t == 0 else h[t - 1], w_hh_t, recurrent)
        for b in range(B):
            # one branch per row, outside the unit loop, so each loop vectorises
            net = h[t, b]
            rec = recurrent[b]
            if code == 0:
                for j in range(H):
                    net[j] = _tanh(net[j] + rec[j] + bias[j], one)
            elif code == 1:
                for j in range(H):
                    v = net[j] + rec[j] + bias[j]
                    net[j] = zero if v < zero else v     # a NaN stays NaN, as in torch.relu
            elif code == 2:
                for j in range(H):
                    net[j] = _sigmoid(net[j] + rec[j] + bias[j], one)
            else:
                for j in range(H):
                    net[j] = net[j] + rec[j] + bias[j]
    return h


@numba.njit(cache=True, error_model="numpy")
def backward_kernel(x, h0, w_ih, w_hh, h, grad_h, code, dh_trace, delta):
    """BPTT. Returns (d_w_ih, d_w_hh, d_b, d_x, d_h0); d_b is both bias gradients.

    dh_trace: (T, B, H) array that receives the total dL/dh_t of every step, or a (0, B, H)
    array to skip that (only the diagnostics need it). delta: (T, B, H) work array for
    δ_t = dL/dnet_t (contents ignored, overwritten).
    """
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    zero = x.dtype.type(0.0)
    keep_trace = dh_trace.shape[0] == T
    recurrent = np.zeros((B, H), dtype=x.dtype)      # δ_{t+1} W_hh
    for t in range(T - 1, -1, -1):
        for b in range(B):
            d = delta[t, b]
            g_in = grad_h[t, b]
            rec = recurrent[b]
            for j in range(H):
                d[j] = g_in[j] + rec[j]                  # dL/dh_t: external + recurrent part
            if keep_trace:
                dh_trace[t, b] = d
            out = h[t, b]
            # δ_t = dL/dh_t ⊙ f'(net_t), f' read off h_t = f(net_t)
            if code == 0:
                for j in range(H):
                    d[j] *= one - out[j] * out[j]
            elif code == 1:
                for j in range(H):                       # relu'(0) = 0, as in PyTorch
                    d[j] = zero if out[j] <= zero else d[j]
            elif code == 2:
                for j in range(H):
                    d[j] *= out[j] * (one - out[j])
        np.dot(delta[t], w_hh, recurrent)  # the recursion: δ_{t-1} = (δ_t W_hh) ⊙ f'(net_{t-1})
    d_h0 = recurrent

    # weight gradients: one GEMM each over all T·B rows instead of T small accumulations
    rows = delta.reshape(T * B, H)
    d_w_ih = np.dot(rows.T, x.reshape(T * B, I))
    d_w_hh = np.dot(delta[0].T, h0)
    if T > 1:
        d_w_hh += np.dot(delta[1:].reshape((T - 1) * B, H).T, h[:T - 1].reshape((T - 1) * B, H))
    d_b = np.zeros(H, dtype=x.dtype)
    for r in range(T * B):
        row = rows[r]
        for j in range(H):
            d_b[j] += row[j]
    d_x = np.dot(rows, w_ih).reshape(T, B, I)
    return d_w_ih, d_w_hh, d_b, d_x, d_h0


def slope(activation: str, h):
    """f'(net) from the activation's output h = f(net), elementwise in h's dtype: what the
    backward kernel multiplies by (the gradient-flow product and Omega read it too)."""
    if activation == "tanh":
        return 1.0 - h * h
    if activation == "sigmoid":
        return h * (1.0 - h)
    if activation == "relu":
        return (h > 0).astype(h.dtype)
    if activation == "identity":
        return np.ones_like(h)
    raise ValueError(f"activation {activation!r}: the kernels implement {sorted(ACTIVATION_CODES)}")


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
        ACTIVATION_CODES[states.activation], dh_trace, scratch(states.h.shape, states.h.dtype))
    return {"weight_ih": d_w_ih, "weight_hh": d_w_hh, "bias_ih": d_b, "bias_hh": d_b.copy(),
            "x": d_x, "h0": d_h0}
