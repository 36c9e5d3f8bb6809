"""GRU cell: Numba forward and BPTT kernels (PyTorch `nn.GRU` conventions, gate rows r, z, n).

    [x_r | x_z | x_n] = W_ih x_t + b_ih        [h_r | h_z | h_n] = W_hh h_{t-1} + b_hh
    r = σ(x_r + h_r)    z = σ(x_z + h_z)    n = tanh(x_n + r ⊙ h_n)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

Backward, per step (dh = grad_h_t + carried dL/dh_t):

    dn = dh ⊙ (1 − z)      dz = dh ⊙ (h_{t-1} − n)      δ_n = dn ⊙ (1 − n²)
    δ_r = δ_n ⊙ h_n ⊙ r(1 − r)                          δ_z = dz ⊙ z(1 − z)
    input side  δx_t = [δ_r | δ_z | δ_n]        hidden side  δh_t = [δ_r | δ_z | δ_n ⊙ r]
    dL/dh_{t-1} = dh ⊙ z + δh_t W_hh                     (direct path + the BPTT recursion)
    dW_ih = Σ δx_t^T x_t,  db_ih = Σ δx_t,  dx_t = δx_t W_ih
    dW_hh = Σ δh_t^T h_{t-1},  db_hh = Σ δh_t

The forward pass saves the post-activation gates [r|z|n] and h_n. Same layout choices as
rnn.py (one input-projection GEMM, one GEMM per step into a preallocated buffer, weight
gradients as single GEMMs after the loop). Self-contained so that `cache=True` sees every edit.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _sigmoid(a, one):
    return one / (one + np.exp(-a))


@numba.njit(cache=True)
def forward_kernel(x, h0, w_ih, w_hh, b_ih, b_hh):
    """Return (h, gates, hn): (T, B, H), (T, B, 3H) post-activation [r|z|n], (T, B, H) h_n."""
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    w_hh_t = np.ascontiguousarray(w_hh.T)
    gates = np.empty((T, B, 3 * H), dtype=x.dtype)
    # input projection of every step in one GEMM; the loop turns it into gate activations in place
    np.dot(x.reshape(T * B, I), np.ascontiguousarray(w_ih.T), gates.reshape(T * B, 3 * H))
    h = np.empty((T, B, H), dtype=x.dtype)
    hn = np.empty((T, B, H), dtype=x.dtype)
    recurrent = np.empty((B, 3 * H), dtype=x.dtype)
    for t in range(T):
        h_prev = h0 if t == 0 else h[t - 1]
        np.dot(h_prev, w_hh_t, recurrent)
        a = gates[t]
        for b in range(B):
            for j in range(H):
                r = _sigmoid(a[b, j] + b_ih[j] + recurrent[b, j] + b_hh[j], one)
                z = _sigmoid(a[b, H + j] + b_ih[H + j] + recurrent[b, H + j] + b_hh[H + j], one)
                h_n = recurrent[b, 2 * H + j] + b_hh[2 * H + j]
                n = np.tanh(a[b, 2 * H + j] + b_ih[2 * H + j] + r * h_n)
                a[b, j] = r
                a[b, H + j] = z
                a[b, 2 * H + j] = n
                hn[t, b, j] = h_n
                h[t, b, j] = (one - z) * n + z * h_prev[b, j]
    return h, gates, hn


@numba.njit(cache=True)
def backward_kernel(x, h0, w_ih, w_hh, h, gates, hn, grad_h, dh_trace):
    """BPTT. Returns (d_w_ih, d_w_hh, d_b_ih, d_b_hh, d_x, d_h0).

    dh_trace: (T, B, H) array receiving the total dL/dh_t of every step, or (0, B, H) to skip.
    """
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    keep_trace = dh_trace.shape[0] == T
    delta_x = np.empty((T, B, 3 * H), dtype=x.dtype)  # dL/d(W_ih x_t + b_ih)
    delta_h = np.empty((T, B, 3 * H), dtype=x.dtype)  # dL/d(W_hh h_{t-1} + b_hh)
    recurrent = np.zeros((B, H), dtype=x.dtype)       # δh_{t+1} W_hh
    direct = np.zeros((B, H), dtype=x.dtype)          # dh_{t+1} ⊙ z_{t+1}
    for t in range(T - 1, -1, -1):
        h_prev = h0 if t == 0 else h[t - 1]
        gate = gates[t]
        dx_t = delta_x[t]
        dh_t = delta_h[t]
        for b in range(B):
            for j in range(H):
                dh = grad_h[t, b, j] + recurrent[b, j] + direct[b, j]
                if keep_trace:
                    dh_trace[t, b, j] = dh
                r = gate[b, j]
                z = gate[b, H + j]
                n = gate[b, 2 * H + j]
                d_n = dh * (one - z) * (one - n * n)
                d_r = d_n * hn[t, b, j] * r * (one - r)
                d_z = dh * (h_prev[b, j] - n) * z * (one - z)
                dx_t[b, j] = d_r
                dx_t[b, H + j] = d_z
                dx_t[b, 2 * H + j] = d_n
                dh_t[b, j] = d_r
                dh_t[b, H + j] = d_z
                dh_t[b, 2 * H + j] = d_n * r
                direct[b, j] = dh * z
        np.dot(dh_t, w_hh, recurrent)
    d_h0 = recurrent + direct

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
        for j in range(3 * H):
            d_b_ih[j] += rows_x[q, j]
            d_b_hh[j] += rows_h[q, j]
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
    d_w_ih, d_w_hh, d_b_ih, d_b_hh, d_x, d_h0 = backward_kernel(
        states.x, states.h0, p["weight_ih"], p["weight_hh"], states.h, states.gates, states.hn,
        grad_h, dh_trace)
    return {"weight_ih": d_w_ih, "weight_hh": d_w_hh, "bias_ih": d_b_ih, "bias_hh": d_b_hh,
            "x": d_x, "h0": d_h0}
