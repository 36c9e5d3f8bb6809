"""LSTM cell: Numba forward and BPTT kernels (PyTorch `nn.LSTM` conventions, gate rows i, f, g, o).

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh = [a_i | a_f | a_g | a_o]
    i, f, o = σ(a_i), σ(a_f), σ(a_o)     g = tanh(a_g)
    c_t = f ⊙ c_{t-1} + i ⊙ g            h_t = o ⊙ tanh(c_t)

Backward, per step (dh_t = grad_h_t + δ_{t+1} W_hh, dc_t carried from step t+1):

    do = dh ⊙ tanh(c_t)                  dc = dc_t + dh ⊙ o ⊙ (1 − tanh²(c_t))
    di = dc ⊙ g    df = dc ⊙ c_{t-1}     dg = dc ⊙ i          dc_{t-1} = dc ⊙ f   (direct cell path)
    δ_t = [di·i(1−i) | df·f(1−f) | dg·(1−g²) | do·o(1−o)]    (dL/da_t, the BPTT error term)
    dW_ih = Σ δ_t^T x_t,  dW_hh = Σ δ_t^T h_{t-1},  db = Σ δ_t,  dx_t = δ_t W_ih

The forward pass saves the post-activation gates and c_t. As in rnn.py: one GEMM for the input
projection of all steps, one (B×H)·(H×4H) GEMM per step into a preallocated buffer, weight
gradients as single GEMMs after the loop. Self-contained so that `cache=True` sees every edit.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _sigmoid(a, one):
    return one / (one + np.exp(-a))


@numba.njit(cache=True)
def forward_kernel(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """Return (h, c, gates): (T, B, H), (T, B, H), (T, B, 4H) post-activation [i|f|g|o]."""
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    bias = b_ih + b_hh
    w_hh_t = np.ascontiguousarray(w_hh.T)
    gates = np.empty((T, B, 4 * H), dtype=x.dtype)
    # input projection of every step in one GEMM; the loop turns it into gate activations in place
    np.dot(x.reshape(T * B, I), np.ascontiguousarray(w_ih.T), gates.reshape(T * B, 4 * H))
    h = np.empty((T, B, H), dtype=x.dtype)
    c = np.empty((T, B, H), dtype=x.dtype)
    recurrent = np.empty((B, 4 * H), dtype=x.dtype)
    for t in range(T):
        h_prev = h0 if t == 0 else h[t - 1]
        c_prev = c0 if t == 0 else c[t - 1]
        np.dot(h_prev, w_hh_t, recurrent)
        a = gates[t]
        for b in range(B):
            for j in range(H):
                i_g = _sigmoid(a[b, j] + recurrent[b, j] + bias[j], one)
                f_g = _sigmoid(a[b, H + j] + recurrent[b, H + j] + bias[H + j], one)
                g_g = np.tanh(a[b, 2 * H + j] + recurrent[b, 2 * H + j] + bias[2 * H + j])
                o_g = _sigmoid(a[b, 3 * H + j] + recurrent[b, 3 * H + j] + bias[3 * H + j], one)
                a[b, j] = i_g
                a[b, H + j] = f_g
                a[b, 2 * H + j] = g_g
                a[b, 3 * H + j] = o_g
                c_new = f_g * c_prev[b, j] + i_g * g_g
                c[t, b, j] = c_new
                h[t, b, j] = o_g * np.tanh(c_new)
    return h, c, gates


@numba.njit(cache=True)
def backward_kernel(x, h0, c0, w_ih, w_hh, h, c, gates, grad_h, dh_trace):
    """BPTT. Returns (d_w_ih, d_w_hh, d_b, d_x, d_h0, d_c0); d_b is both bias gradients.

    dh_trace: (T, B, H) array receiving the total dL/dh_t of every step, or (0, B, H) to skip.
    """
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    keep_trace = dh_trace.shape[0] == T
    delta = np.empty((T, B, 4 * H), dtype=x.dtype)   # δ_t = dL/da_t (pre-activation gates)
    recurrent = np.zeros((B, H), dtype=x.dtype)      # δ_{t+1} W_hh
    d_c = np.zeros((B, H), dtype=x.dtype)            # dL/dc_t through the direct cell path
    for t in range(T - 1, -1, -1):
        c_prev = c0 if t == 0 else c[t - 1]
        gate = gates[t]
        d_t = delta[t]
        for b in range(B):
            for j in range(H):
                dh = grad_h[t, b, j] + recurrent[b, j]
                if keep_trace:
                    dh_trace[t, b, j] = dh
                i_g = gate[b, j]
                f_g = gate[b, H + j]
                g_g = gate[b, 2 * H + j]
                o_g = gate[b, 3 * H + j]
                tanh_c = np.tanh(c[t, b, j])
                dc = d_c[b, j] + dh * o_g * (one - tanh_c * tanh_c)
                d_t[b, j] = dc * g_g * i_g * (one - i_g)
                d_t[b, H + j] = dc * c_prev[b, j] * f_g * (one - f_g)
                d_t[b, 2 * H + j] = dc * i_g * (one - g_g * g_g)
                d_t[b, 3 * H + j] = dh * tanh_c * o_g * (one - o_g)
                d_c[b, j] = dc * f_g
        np.dot(d_t, w_hh, recurrent)
    d_h0 = recurrent
    d_c0 = d_c

    rows = delta.reshape(T * B, 4 * H)
    d_w_ih = np.dot(rows.T, x.reshape(T * B, I))
    d_w_hh = np.dot(delta[0].T, h0)
    if T > 1:
        d_w_hh += np.dot(delta[1:].reshape((T - 1) * B, 4 * H).T,
                         h[:T - 1].reshape((T - 1) * B, H))
    d_b = np.zeros(4 * H, dtype=x.dtype)
    for r in range(T * B):
        for j in range(4 * H):
            d_b[j] += rows[r, j]
    d_x = np.dot(rows, w_ih).reshape(T, B, I)
    return d_w_ih, d_w_hh, d_b, d_x, d_h0, d_c0


def forward(params, x, h0, c0, activation):
    """Validated inputs in; returns the saved arrays (h, c, gates, hn) with hn None."""
    h, c, gates = forward_kernel(x, h0, c0, params["weight_ih"], params["weight_hh"],
                                 params["bias_ih"], params["bias_hh"])
    return h, c, gates, None


def backward(states, grad_h, dh_trace):
    """Gradients dict from the saved forward states (see `_common.ForwardStates`)."""
    p = states.params
    d_w_ih, d_w_hh, d_b, d_x, d_h0, d_c0 = backward_kernel(
        states.x, states.h0, states.c0, p["weight_ih"], p["weight_hh"], states.h, states.c,
        states.gates, grad_h, dh_trace)
    return {"weight_ih": d_w_ih, "weight_hh": d_w_hh, "bias_ih": d_b, "bias_hh": d_b.copy(),
            "x": d_x, "h0": d_h0, "c0": d_c0}
