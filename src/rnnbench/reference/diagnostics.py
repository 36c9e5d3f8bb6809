"""Gradient-flow diagnostics: how the gradient of a last-step loss decays with the lag.

For a loss at the last step with dL/dh_T = g (a given vector, default ones/√H), per lag
k = 0..T−1 (h_{T−k} is the output k steps before the last):

    grad_norm[k]      ‖∂L/∂h_{T−k}‖, mean over the batch, from the exact BPTT kernels
    jacobian_norm[k]  ‖∂h_T/∂h_{T−k}‖₂ (spectral norm), mean over the batch, from the exact
                      product of step Jacobians. rnn: Π diag f'(net_t) W_hh, the transpose of the
                      seeds' W diag f'(net) in PyTorch's row convention (same norms).
                      lstm: the state is (h, c); this is the h-block of the product of the
                      2H×2H state Jacobians (c_{T−k} held fixed). gru: Π ∂h_t/∂h_{t−1}.
    bound[k]          (β_W β_f)^k with β_W = ‖W_hh‖₂ and β_f = max|f'| (tanh 1, sigmoid 1/4,
                      relu 1, identity 1): the seed's bound ‖δ_k‖ ≤ ‖δ_t‖ (β_W β_f)^{t−k}.
                      rnn only (NaN for gated cells, where it is no bound).
    forget_product[k] lstm: Π of the forget gates of the last k steps along the direct cell path
                      ∂c_T/∂c_{T−k} = diag(Π f), mean over batch and units (NaN otherwise).

Every product is accumulated in float64 with a per-sample rescaling (the log of the scale is
carried), so exploding products give inf and vanishing ones 0, never NaN. Cost: one batched
(B·H × G·H)·(G·H × H) GEMM and one batch of H×H singular values per lag, i.e. O(T·B·H³):
pass a small diagnostic batch.
"""
from __future__ import annotations

import numpy as np

ACTIVATION_SLOPE_BOUND = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "identity": 1.0}


def jacobian_profile(cell, params, x, h0=None, c0=None, activation="tanh", grad_last=None):
    """Per-lag gradient-flow profile of a last-step loss; see the module docstring.

    grad_last: dL/dh_T as (H,) (same for every sequence) or (B, H); default ones/√H.
    Returns a dict of float64 arrays of length T: lag, grad_norm, jacobian_norm, bound,
    forget_product.
    """
    from . import backward, forward_states  # the package imports this module

    states = forward_states(cell, params, x, h0, c0, activation)
    T, B, H = states.h.shape
    g = _check_grad_last(grad_last, B, H)

    grad_h = np.zeros_like(states.h)
    grad_h[-1] = g
    dh = backward(states, grad_h, return_dh=True)["dh"]
    with np.errstate(over="ignore", invalid="ignore"):    # an exploded BPTT reads inf / NaN
        grad_norm = np.linalg.norm(dh[::-1].astype(np.float64), axis=2).mean(axis=1)

    jacobian_norm = np.empty(T)
    with np.errstate(over="ignore"):                      # exploding products read inf
        for k, rows, log_scale in jacobian_product_rows(states):
            jacobian_norm[k] = _scaled_spectral_norm(rows[:, :, :H], log_scale).mean()

    lag = np.arange(T)
    bound = np.full(T, np.nan)
    if states.cell == "rnn":
        beta = np.linalg.norm(states.params["weight_hh"].astype(np.float64), 2) \
            * ACTIVATION_SLOPE_BOUND[states.activation]
        with np.errstate(divide="ignore", over="ignore"):
            bound = np.exp(lag * np.log(beta)) if beta > 0 else (lag == 0).astype(np.float64)
    forget_product = np.full(T, np.nan)
    if states.cell == "lstm":
        forget = states.gates[::-1, :, H:2 * H].astype(np.float64)
        forget_product[0] = 1.0
        forget_product[1:] = np.cumprod(forget, axis=0)[:T - 1].mean(axis=(1, 2))
    return {"lag": lag, "grad_norm": grad_norm, "jacobian_norm": jacobian_norm,
            "bound": bound, "forget_product": forget_product}


def jacobian_product_rows(states):
    """Yield (k, rows, log_scale) for k = 0..T−1 with exp(log_scale[b]) · rows[b] = ∂h_T/∂s_{T−k}.

    s is the recurrent state: h (rnn, gru; rows (B, H, H)) or (h, c) (lstm; rows (B, H, 2H),
    columns [∂/∂h | ∂/∂c]). Built right-multiplying one exact step Jacobian per lag:
    rows(k) = rows(k−1) · ∂s_{T−k+1}/∂s_{T−k}. Float64 regardless of the states' dtype.
    """
    T, B, H = states.h.shape
    width = 2 * H if states.cell == "lstm" else H
    rows = np.zeros((B, H, width))
    rows[:, np.arange(H), np.arange(H)] = 1.0
    log_scale = np.zeros(B)
    w_hh = states.params["weight_hh"].astype(np.float64)
    step = {"rnn": _rnn_step, "lstm": _lstm_step, "gru": _gru_step}[states.cell]
    yield 0, rows, log_scale
    for k in range(1, T):
        rows = step(states, T - k, rows, w_hh)
        scale = np.abs(rows).max(axis=(1, 2))
        ok = np.isfinite(scale) & (scale > 0)
        rows[ok] /= scale[ok, None, None]
        log_scale = log_scale + np.log(np.where(ok, scale, 1.0))
        yield k, rows, log_scale


def _scaled_spectral_norm(rows, log_scale):
    norms = np.linalg.svd(rows, compute_uv=False)[:, 0]
    with np.errstate(divide="ignore", over="ignore"):
        return np.exp(np.log(norms) + log_scale)


def _previous(array, initial, t):
    return (initial if t == 0 else array[t - 1]).astype(np.float64)


def _rnn_step(states, t, rows, w_hh):
    """rows · ∂h_t/∂h_{t−1} with ∂h_t/∂h_{t−1} = diag f'(net_t) W_hh."""
    h = states.h[t].astype(np.float64)
    if states.activation == "tanh":
        slope = 1.0 - h * h
    elif states.activation == "sigmoid":
        slope = h * (1.0 - h)
    elif states.activation == "relu":
        slope = (h > 0).astype(np.float64)
    else:
        slope = np.ones_like(h)
    B, H, _ = rows.shape
    return ((rows * slope[:, None, :]).reshape(B * H, H) @ w_hh).reshape(B, H, H)


def _gru_step(states, t, rows, w_hh):
    """rows · ∂h_t/∂h_{t−1} for h_t = (1−z) n + z h_{t−1}:
    ∂h_t/∂h_{t−1} = diag z + diag((h_{t−1}−n) z(1−z)) W_hz
                    + diag((1−z)(1−n²)) [diag r W_hn + diag(h_n r(1−r)) W_hr]."""
    H = states.h.shape[2]
    gates = states.gates[t].astype(np.float64)
    r, z, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    h_n = states.hn[t].astype(np.float64)
    h_prev = _previous(states.h, states.h0, t)
    through_n = (1.0 - z) * (1.0 - n * n)
    scales = np.concatenate([through_n * h_n * r * (1.0 - r), (h_prev - n) * z * (1.0 - z),
                             through_n * r], axis=1)                       # per W_hh row block
    B = rows.shape[0]
    gated = np.concatenate([rows, rows, rows], axis=2) * scales[:, None, :]
    return rows * z[:, None, :] + (gated.reshape(B * H, 3 * H) @ w_hh).reshape(B, H, H)


def _lstm_step(states, t, rows, w_hh):
    """rows · ∂(h_t, c_t)/∂(h_{t−1}, c_{t−1}) for rows = [R_h | R_c] (∂h_T/∂h_t, ∂h_T/∂c_t).

    With A = R_h diag(o(1−tanh²c_t)) + R_c (the total ∂h_T/∂c_t):
        new R_h = [A diag(g i(1−i)) | A diag(c_{t−1} f(1−f)) | A diag(i(1−g²)) |
                   R_h diag(tanh(c_t) o(1−o))] · W_hh        (gate blocks i, f, g, o)
        new R_c = A diag(f)                                   (the direct cell path)
    """
    H = states.h.shape[2]
    gates = states.gates[t].astype(np.float64)
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    tanh_c = np.tanh(states.c[t].astype(np.float64))
    c_prev = _previous(states.c, states.c0, t)
    r_h, r_c = rows[:, :, :H], rows[:, :, H:]
    total_c = r_h * (o * (1.0 - tanh_c * tanh_c))[:, None, :] + r_c
    B = rows.shape[0]
    gated = np.concatenate([total_c * (g * i * (1.0 - i))[:, None, :],
                            total_c * (c_prev * f * (1.0 - f))[:, None, :],
                            total_c * (i * (1.0 - g * g))[:, None, :],
                            r_h * (tanh_c * o * (1.0 - o))[:, None, :]], axis=2)
    new_h = (gated.reshape(B * H, 4 * H) @ w_hh).reshape(B, H, H)
    return np.concatenate([new_h, total_c * f[:, None, :]], axis=2)


def _check_grad_last(grad_last, B, H):
    if grad_last is None:
        return np.full((B, H), 1.0 / np.sqrt(H))
    g = np.asarray(grad_last, dtype=np.float64)
    if g.shape == (H,):
        return np.broadcast_to(g, (B, H))
    if g.shape != (B, H):
        raise ValueError(f"grad_last: expected shape ({H},) or ({B}, {H}), got {g.shape}")
    return g
