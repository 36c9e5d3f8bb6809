"""GRU cell: Numba forward and BPTT kernels (PyTorch `nn.GRU` conventions, gate rows r, z, n).

    [x_r | x_z | x_n] = W_ih x_t + b_ih        [h_r | h_z | h_n] = W_hh h_{t-1} + b_hh
    r = σ(x_r + h_r)    z = σ(x_z + h_z)    n = tanh(x_n + r ⊙ h_n)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

Backward, per step (dh = grad_h_t + carried dL/dh_t):

    δ_n = dh ⊙ (1 − z) ⊙ (1 − n²)      δ_z = dh ⊙ (h_{t-1} − n) ⊙ z(1 − z)
    δ_r = δ_n ⊙ h_n ⊙ r(1 − r)
    input side  δx_t = [δ_r | δ_z | δ_n]        hidden side  δh_t = [δ_r | δ_z | δ_n ⊙ r]
    dL/dh_{t-1} = dh ⊙ z + δh_t W_hh                     (direct path + the BPTT recursion)
    dW_ih = Σ δx_t^T x_t,  db_ih = Σ δx_t,  dx_t = δx_t W_ih
    dW_hh = Σ δh_t^T h_{t-1},  db_hh = Σ δh_t

The forward pass saves the post-activation gates [r|z|n] and h_n. Same layout choices as
rnn.py: one input-projection GEMM, one GEMM per step into a preallocated buffer, short
unit-stride row loops (few arrays each, so LLVM vectorises them), weight gradients as single
GEMMs after the loop. Self-contained so that `cache=True` sees every edit.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

from ._common import scratch


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
def forward_kernel(x, h0, w_ih, w_hh, b_ih, b_hh):
    """Return (h, gates, hn): (T, B, H), (T, B, 3H) post-activation [r|z|n], (T, B, H) h_n."""
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    bias_rz = b_ih[:2 * H] + b_hh[:2 * H]
    b_in = b_ih[2 * H:]
    b_hn = b_hh[2 * H:]
    w_hh_t = np.ascontiguousarray(w_hh.T)
    gates = np.empty((T, B, 3 * H), dtype=x.dtype)
    # input projection of every step in one GEMM; the loop turns it into gate activations in place
    np.dot(x.reshape(T * B, I), np.ascontiguousarray(w_ih.T), gates.reshape(T * B, 3 * H))
    h = np.empty((T, B, H), dtype=x.dtype)
    hn = np.empty((T, B, H), dtype=x.dtype)
    recurrent = np.empty((B, 3 * H), dtype=x.dtype)
    # A row's gates go through buffers of their own and are copied into `gates` and `hn` after:
    # a loop that reads and writes parts of one array does not vectorise (LLVM cannot rule out
    # that they overlap), which left the gate math unvectorised and made it most of the time.
    rz = np.empty(2 * H, dtype=x.dtype)
    n = np.empty(H, dtype=x.dtype)
    h_n = np.empty(H, dtype=x.dtype)
    for t in range(T):
        np.dot(h0 if t == 0 else h[t - 1], w_hh_t, recurrent)
        for b in range(B):
            a = gates[t, b]
            rec = recurrent[b]
            for k in range(2 * H):
                rz[k] = _sigmoid(a[k] + rec[k] + bias_rz[k], one)          # r, z
            for j in range(H):
                h_n[j] = rec[2 * H + j] + b_hn[j]
            for j in range(H):
                n[j] = _tanh(a[2 * H + j] + b_in[j] + rz[j] * h_n[j], one)
            h_prev = h0[b] if t == 0 else h[t - 1, b]
            h_t = h[t, b]
            for j in range(H):
                z = rz[H + j]
                h_t[j] = (one - z) * n[j] + z * h_prev[j]
            a[:2 * H] = rz
            a[2 * H:] = n
            hn[t, b] = h_n
    return h, gates, hn


@numba.njit(cache=True, error_model="numpy")
def backward_kernel(x, h0, w_ih, w_hh, h, gates, hn, grad_h, dh_trace, delta_x, delta_h):
    """BPTT. Returns (d_w_ih, d_w_hh, d_b_ih, d_b_hh, d_x, d_h0).

    dh_trace: (T, B, H) array receiving the total dL/dh_t of every step, or (0, B, H) to skip.
    delta_x, delta_h: (T, B, 3H) work arrays for dL/d(W_ih x_t + b_ih) and
    dL/d(W_hh h_{t-1} + b_hh) (contents ignored, overwritten).
    """
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    keep_trace = dh_trace.shape[0] == T
    recurrent = np.zeros((B, H), dtype=x.dtype)       # δh_{t+1} W_hh
    carry = np.zeros((B, H), dtype=x.dtype)           # dh_{t+1} ⊙ z_{t+1}, then dL/dh_t
    for t in range(T - 1, -1, -1):
        for b in range(B):
            dh = carry[b]
            g_in = grad_h[t, b]
            rec = recurrent[b]
            for j in range(H):
                dh[j] += g_in[j] + rec[j]                # dL/dh_t: external + recurrent + direct
            if keep_trace:
                dh_trace[t, b] = dh
            gate = gates[t, b]
            h_prev = h0[b] if t == 0 else h[t - 1, b]
            dx = delta_x[t, b]
            for j in range(H):
                z = gate[H + j]
                n = gate[2 * H + j]
                dx[2 * H + j] = dh[j] * (one - z) * (one - n * n)         # δ_n
                dx[H + j] = dh[j] * (h_prev[j] - n) * z * (one - z)       # δ_z
            h_n = hn[t, b]
            dhh = delta_h[t, b]
            for j in range(H):
                r = gate[j]
                d_n = dx[2 * H + j]
                dx[j] = d_n * h_n[j] * r * (one - r)                      # δ_r
                dhh[j] = dx[j]
                dhh[H + j] = dx[H + j]
                dhh[2 * H + j] = d_n * r
            for j in range(H):
                dh[j] *= gate[H + j]                     # direct path to h_{t-1}: dh ⊙ z
        np.dot(delta_h[t], w_hh, recurrent)  # the recursion through W_hh
    d_h0 = recurrent + carry

    rows_x = delta_x.reshape(T * B, 3 * H)
    rows_h = delta_h.reshape(T * B, 3 * H)
    d_w_ih = np.dot(rows_x.T, x.reshape(T * B, I))
    d_w_hh = np.dot(delta_h[0].T, h0)
    if T > 1:
        d_w_hh += np.dot(delta_h[1:].reshape((T - 1) * B, 3 * H).T,
                         h[:T - 1].reshape((T - 1) * B, H))
    d_b_ih = np.zeros(3 * H, dtype=x.dtype)
    d_b_hh = np.zeros(3 * H, dtype=x.dtype)
    for q in range(T * B):
        row_x = rows_x[q]
        row_h = rows_h[q]
        for j in range(3 * H):
            d_b_ih[j] += row_x[j]
            d_b_hh[j] += row_h[j]
    d_x = np.dot(rows_x, w_ih).reshape(T, B, I)
    return d_w_ih, d_w_hh, d_b_ih, d_b_hh, d_x, d_h0


def forward(params, x, h0, c0, activation):
    """Validated inputs in; returns the saved arrays (h, c, gates, hn) with c None."""
    h, gates, hn = forward_kernel(x, h0, params["weight_ih"], params["weight_hh"],
                                  params["bias_ih"], params["bias_hh"])
    return h, None, gates, hn


def backward(states, grad_h, dh_trace):
    """Gradients dict from the saved forward states (see `_common.ForwardStates`)."""
    p = states.params
    work = scratch((2,) + states.gates.shape, states.gates.dtype)
    d_w_ih, d_w_hh, d_b_ih, d_b_hh, d_x, d_h0 = backward_kernel(
        states.x, states.h0, p["weight_ih"], p["weight_hh"], states.h, states.gates, states.hn,
        grad_h, dh_trace, work[0], work[1])
    return {"weight_ih": d_w_ih, "weight_hh": d_w_hh, "bias_ih": d_b_ih, "bias_hh": d_b_hh,
            "x": d_x, "h0": d_h0}
