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
carried), so exploding products give inf and vanishing ones 0, never NaN. Cost O(T·B·H³): pass
a small diagnostic batch.

Two implementations of jacobian_norm agree to rounding (tests/test_reference.py holds them to
1e-10). method="numpy", the reference: per lag one batched GEMM of the product rows and one
batch of H×H singular values (LAPACK). method="numba", the default and ~10× faster: one Numba
kernel carries the product (per-sample GEMMs where that saves work) and gets ‖R‖₂² = λ_max(RRᵀ)
of every sample and lag by Lanczos on R (RRᵀ is never formed), warm-started from the previous
lag's top Ritz vector, accepting a value only with a proof that it lies within 2e-11 of λ_max:
the Ritz vector's Rayleigh quotient L is a lower bound, and a Sturm count on the Lanczos
tridiagonal bordered by a bound on the rest of the spectrum shows λ_max ≤ L(1 + 2e-11), however
close the second eigenvalue. Where the Krylov space turns invariant first (a many-fold top,
e.g. the diagonal products of an IRNN), ‖R‖₁‖R‖∞ or a Cholesky factorisation of
L(1 + 2e-11)·I − RRᵀ gives the proof, and failing both λ_max is computed exactly (Householder
tridiagonalisation, Sturm bisection). A profile whose products hold a non-finite entry is left
to the reference, which decides its NaN.
"""
from __future__ import annotations

import numba
import numpy as np

from .bptt import backward, forward_states
from .rnn import ACTIVATION_CODES, slope as rnn_slope

ACTIVATION_SLOPE_BOUND = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "identity": 1.0}
METHODS = ("numba", "numpy")


def jacobian_profile(cell, params, x, h0=None, c0=None, activation="tanh", grad_last=None,
                     method="numba"):
    """Per-lag gradient-flow profile of a last-step loss; see the module docstring.

    grad_last: dL/dh_T as (H,) (same for every sequence) or (B, H); default ones/√H.
    method: "numba" (fast) or "numpy" (the reference); the results agree to rounding.
    Returns a dict of float64 arrays of length T: lag, grad_norm, jacobian_norm, bound,
    forget_product.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
    states = forward_states(cell, params, x, h0, c0, activation)
    T, B, H = states.h.shape
    g = _check_grad_last(grad_last, B, H)

    grad_h = np.zeros_like(states.h)
    grad_h[-1] = g
    dh = backward(states, grad_h, return_dh=True)["dh"]
    with np.errstate(over="ignore", invalid="ignore"):    # an exploded BPTT reads inf / NaN
        grad_norm = np.linalg.norm(dh[::-1].astype(np.float64), axis=2).mean(axis=1)

    if method == "numba":
        jacobian_norm = _jacobian_norm_numba(states)
    else:
        jacobian_norm = _jacobian_norm_numpy(states)

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


def _jacobian_norm_numpy(states):
    """jacobian_norm by the reference: batched GEMMs and LAPACK singular values per lag."""
    T, _, H = states.h.shape
    jacobian_norm = np.empty(T)
    with np.errstate(over="ignore"):                      # exploding products read inf
        for k, rows, log_scale in jacobian_product_rows(states):
            jacobian_norm[k] = _scaled_spectral_norm(rows[:, :, :H], log_scale).mean()
    return jacobian_norm


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
    slope = rnn_slope(states.activation, states.h[t].astype(np.float64))
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


# --- the fast path: the whole product in one Numba kernel ---------------------------------
# Self-contained (every jitted helper lives in this file) so that `cache=True` sees each edit.

CELL_CODES = {"rnn": 0, "gru": 1, "lstm": 2}
# λ_max is accepted once certified within this relative bound (σ within half of it): well below
# the 1e-10 the reference is held to, far above the rounding of the certificates (~n·ε).
EIGENVALUE_RTOL = 2e-11
# Lanczos steps per sample and lag before the exact solver takes over: a full basis (H steps)
# certifies but for rounding; the warm start usually needs 3-8.
MAX_LANCZOS_STEPS = 64
_EPS = 2.220446049250313e-16
# Reassociated sums: LLVM vectorises the dot products (the certificate does not depend on the
# order of summation); no nnan/ninf, so NaN and inf keep their meaning.
_FAST = {"reassoc", "contract"}


def _jacobian_norm_numba(states, max_steps=MAX_LANCZOS_STEPS, counts=None):
    """jacobian_norm by the Numba kernel (see the module docstring); the reference decides
    profiles whose products hold a non-finite entry. counts: optional int64 array (4,) that
    receives, summed over lags and samples, the norms certified by Lanczos, those solved
    exactly, the Lanczos steps, and the norms certified by a Cholesky factorisation."""
    T, B, H = states.h.shape
    sigma, log_scale = np.empty((T, B)), np.empty((T, B))
    counts = np.zeros(4, dtype=np.int64) if counts is None else counts
    as64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)     # noqa: E731
    none = np.zeros((1, 1, 1))
    lstm = states.cell == "lstm"
    finite = _jacobian_norm_kernel(
        CELL_CODES[states.cell], ACTIVATION_CODES[states.activation], as64(states.h),
        as64(states.c) if lstm else none, np.tanh(as64(states.c)) if lstm else none,
        as64(states.gates) if states.gates is not None else none,
        as64(states.hn) if states.hn is not None else none,
        as64(states.params["weight_hh"]), max_steps, sigma, log_scale, counts)
    if not finite:
        return _jacobian_norm_numpy(states)
    with np.errstate(divide="ignore", over="ignore"):     # the reference's formula, per lag
        return np.exp(np.log(sigma) + log_scale).mean(axis=1)


@numba.njit(cache=True, error_model="numpy")
def _jacobian_norm_kernel(code, activation, h, cells, tanh_cells, gates, hn, w_hh, max_steps,
                          sigma, log_scale, counts):
    """Fill sigma[k, b] and log_scale[k, b] with exp(log σ + log_scale) = ‖∂h_T/∂h_{T−k}‖₂ for
    every lag k and sample b, from the saved states (h; lstm: c, tanh c, gates; gru: gates,
    W_hn h + b_hn). Returns False, the outputs incomplete, as soon as a product holds a
    non-finite entry.

    The rows P are kept unscaled for one step: the step to lag k+1 multiplies P_k by
    1/max|P_k| inside its coefficients (the reference's rescaling, no extra pass), σ is the
    norm of P_k and log_scale the sum of the earlier scales. The step updates regroup the
    reference's GEMMs per sample where that saves work (the diagonal factors s_gate, a, z, f
    of _rnn_step / _gru_step / _lstm_step, computed per lag from the states):
    rnn  one (B·H × H)·(H × H) GEMM of P ⊙ f'/s with W_hh, as the reference;
    gru  P ← P ⊙ z/s + P · M/s,              M = Σ_gate diag(s_gate) W_gate      (H×H);
    lstm A = (P_h ⊙ a + P_c)/s;  P_h ← [A | P_h/s] · [M; diag(s_o) W_o],  P_c ← A ⊙ f,
         M over the gates i, f, g.
    """
    T, B, H = h.shape
    rows = np.zeros((B, H, H))                   # P_h = ∂h_T/∂h_{T−k} up to the scale
    cell_rows = np.zeros((B if code == 2 else 1, H, H))          # lstm: P_c = ∂h_T/∂c_{T−k}
    for b in range(B):
        for i in range(H):
            rows[b, i, i] = 1.0
    gated = np.empty((B * H if code == 0 else 1, H))
    left = np.empty((H, 2 * H if code == 2 else H))
    right = np.empty((2 * H if code == 2 else H, H))
    product = np.empty((H, H))
    unit = np.empty((H, H))
    gram = np.empty((H, H))
    work = np.empty((H, H))
    coefficient = np.empty((2, H))
    vectors = np.zeros((B, H))                   # the warm starts: last top Ritz vectors
    started = np.zeros(B, dtype=np.bool_)         # vectors[b] holds a Ritz vector
    steps = max(1, min(max_steps, H))
    basis = np.empty((steps + 1, H))
    images = np.empty((steps, H))                # Rᵀ q_j of the Lanczos vectors
    alpha, beta, ritz, pivots = np.empty(steps), np.empty(steps), np.empty(steps), np.empty(steps)
    w, p, v, largest, squares = np.empty(H), np.empty(H), np.empty(H), np.empty(H), np.empty(H)
    diagonal, off_diagonal = np.empty(H), np.empty(H)
    inverse = np.ones(B)                         # 1 / max|P| of the stored rows
    total = np.zeros(B)                          # Σ log of the scales applied so far
    sigma[0] = 1.0                               # P = I
    log_scale[0] = 0.0
    for k in range(1, T):
        t = T - k                                # the step ∂s_t/∂s_{t−1}, t ≥ 1
        if code == 0:
            for b in range(B):
                s = inverse[b]
                for j in range(H):
                    y = h[t, b, j]
                    if activation == 0:
                        coefficient[0, j] = (1.0 - y * y) * s
                    elif activation == 1:
                        coefficient[0, j] = s if y > 0 else 0.0
                    elif activation == 2:
                        coefficient[0, j] = y * (1.0 - y) * s
                    else:
                        coefficient[0, j] = s
                for i in range(H):
                    for j in range(H):
                        gated[b * H + i, j] = rows[b, i, j] * coefficient[0, j]
            np.dot(gated, w_hh, rows.reshape(B * H, H))
        for b in range(B):
            r = rows[b]
            s = inverse[b]
            cell_max, cell_squares = 0.0, 0.0
            if code == 1:
                for j in range(H):
                    reset, update, new = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j]
                    through_n = (1.0 - update) * (1.0 - new * new)
                    s_r = through_n * hn[t, b, j] * reset * (1.0 - reset) * s
                    s_z = (h[t - 1, b, j] - new) * update * (1.0 - update) * s
                    s_n = through_n * reset * s
                    coefficient[0, j] = update * s
                    for m in range(H):
                        right[j, m] = (s_r * w_hh[j, m] + s_z * w_hh[H + j, m]) \
                            + s_n * w_hh[2 * H + j, m]
                np.dot(r, right, product)
                for i in range(H):
                    for j in range(H):
                        r[i, j] = r[i, j] * coefficient[0, j] + product[i, j]
            elif code == 2:
                rc = cell_rows[b]
                for j in range(H):
                    i_, f_, g_, o_ = (gates[t, b, j], gates[t, b, H + j],
                                      gates[t, b, 2 * H + j], gates[t, b, 3 * H + j])
                    tanh_c = tanh_cells[t, b, j]
                    coefficient[0, j] = o_ * (1.0 - tanh_c * tanh_c) * s
                    coefficient[1, j] = f_
                    s_i = g_ * i_ * (1.0 - i_)
                    s_f = cells[t - 1, b, j] * f_ * (1.0 - f_)
                    s_g = i_ * (1.0 - g_ * g_)
                    s_o = tanh_c * o_ * (1.0 - o_)
                    for m in range(H):
                        right[j, m] = (s_i * w_hh[j, m] + s_f * w_hh[H + j, m]) \
                            + s_g * w_hh[2 * H + j, m]
                        right[H + j, m] = s_o * w_hh[3 * H + j, m]
                for j in range(H):
                    largest[j] = 0.0
                    squares[j] = 0.0
                for i in range(H):
                    for j in range(H):
                        a = r[i, j] * coefficient[0, j] + rc[i, j] * s   # ∂h_T/∂c_t in total
                        left[i, j] = a
                        left[i, H + j] = r[i, j] * s
                        a *= coefficient[1, j]
                        rc[i, j] = a
                        squares[j] += a * a                    # max and Σ² of the new P_c
                        a = abs(a)
                        largest[j] = a if a > largest[j] else largest[j]
                for j in range(H):
                    cell_max = largest[j] if largest[j] > cell_max else cell_max
                    cell_squares += squares[j]
                np.dot(left, right, r)
            head, trace = _max_abs_and_squares(r, largest, squares)    # trace = tr(P_h P_hᵀ)
            scale, total_squares = head, trace
            if code == 2:
                total_squares += cell_squares
                scale = max(scale, cell_max)
            if not (abs(total_squares) < np.inf and scale < np.inf):
                return False                                   # NaN or inf: the reference's
            log_scale[k, b] = total[b]
            if scale > 0.0:                                    # the reference rescales here
                total[b] += np.log(scale)
                inverse[b] = 1.0 / scale
            if head == 0.0:
                sigma[k, b] = 0.0
                continue
            R = r                                              # ‖P_h‖ by Lanczos on R = P_h
            factor = 1.0
            if not 1e-100 < head < 1e100:                      # keep R Rᵀ in range
                for i in range(H):
                    for j in range(H):
                        unit[i, j] = r[i, j] / head
                R = unit
                factor = head
                trace = trace / head / head
            u = vectors[b]
            lam = 0.0
            if started[b]:                                     # from the last Ritz vector
                lam = _lanczos_top_eigenvalue(R, trace, u, basis, images, alpha, beta, ritz,
                                              pivots, w, p, steps, counts)
            if lam == 0.0:            # first lag, or u in the null space: the largest row
                best, best_norm = 0, 0.0
                for i in range(H):
                    norm2 = 0.0
                    for j in range(H):
                        norm2 += R[i, j] * R[i, j]
                    if norm2 > best_norm:
                        best, best_norm = i, norm2
                for i in range(H):
                    u[i] = 0.0
                u[best] = 1.0
                started[b] = True
                lam = _lanczos_top_eigenvalue(R, trace, u, basis, images, alpha, beta, ritz,
                                              pivots, w, p, steps, counts)
            if lam > 0.0:
                counts[0] += 1
            elif -lam > 0.0 and _holder_bound(R, largest) <= -lam * (1.0 + EIGENVALUE_RTOL):
                lam = -lam              # e.g. a diagonal product (IRNN): ‖R‖₁‖R‖∞ ≥ ‖R‖₂²
                counts[3] += 1
            else:                       # no certificate (a degenerate top, an invariant space)
                np.dot(R, R.T, gram)
                lower = -lam
                if lower > 0.0 and _no_eigenvalue_above(
                        gram, lower * (1.0 + EIGENVALUE_RTOL), work, p):
                    lam = lower
                    counts[3] += 1
                else:
                    lam = _largest_eigenvalue(gram, work, diagonal, off_diagonal, v, p, w)
                    counts[1] += 1
            sigma[k, b] = factor * np.sqrt(lam)
    return True


@numba.njit(cache=True, error_model="numpy")
def _max_abs_and_squares(X, largest, squares):
    """(max |X|, Σ X²), with per-column accumulators so that the loop vectorises; a NaN or inf
    in X shows in the sum."""
    rows, columns = X.shape
    for j in range(columns):
        largest[j] = 0.0
        squares[j] = 0.0
    for i in range(rows):
        for j in range(columns):
            x = X[i, j]
            a = abs(x)
            largest[j] = a if a > largest[j] else largest[j]
            squares[j] += x * x
    top, total = 0.0, 0.0
    for j in range(columns):
        top = largest[j] if largest[j] > top else top
        total += squares[j]
    return top, total


@numba.njit(cache=True, error_model="numpy", fastmath=_FAST)
def _lanczos_top_eigenvalue(R, trace, u, basis, images, alpha, beta, ritz, pivots, w, scratch,
                            max_steps, counts):
    """λ_max(G), G = R Rᵀ, certified to EIGENVALUE_RTOL; where no certificate came within
    max_steps or before the Krylov space became invariant, −L for the best lower bound L
    (≤ 0 if none). Lanczos with full reorthogonalisation from the unit vector u, replaced by
    the top Ritz vector; G is never formed: G q = R (Rᵀ q).

    Certificate. In the orthonormal basis [Q_m | Q⊥] (Q_m the Lanczos vectors) G reads
    [[T_m, β_m e_m e_1ᵀ], [β_m e_1 e_mᵀ, C]] with C ⪰ 0 the rest, so λ_max(C) ≤ tr C =
    tr G − tr T_m =: c, and G ⪯ that matrix with C replaced by c·I: λ_max(G) is at most the
    largest eigenvalue of T_m bordered by (β_m, c), a tridiagonal matrix. The lower bound L is
    the Rayleigh quotient of the top Ritz vector y (L ≤ λ_max always); a Sturm count (all
    pivots of the bordered matrix − U·I negative) proves λ_max ≤ U = L(1 + rtol)."""
    n, width = R.shape
    norm2 = 0.0
    for i in range(n):
        norm2 += u[i] * u[i]
    if not norm2 > 0.0:
        return 0.0
    inverse = 1.0 / np.sqrt(norm2)
    for i in range(n):
        basis[0, i] = u[i] * inverse
    theta, diagonal_sum = 0.0, 0.0
    for j in range(max_steps):
        counts[2] += 1
        a = _matvecs(R, basis[j], images[j], w)                # w = R (Rᵀ q_j), a = q_jᵀ w
        alpha[j] = a
        diagonal_sum += a
        previous = beta[j - 1] if j > 0 else 0.0
        before = 0.0
        for i in range(n):
            w[i] -= a * basis[j, i] + (previous * basis[j - 1, i] if j > 0 else 0.0)
            before += w[i] * w[i]
        for sweep in range(2):      # classical Gram-Schmidt; a second pass where it cancelled
            for q in range(j + 1):
                s = 0.0
                for i in range(n):
                    s += basis[q, i] * w[i]
                scratch[q] = s
            for q in range(j + 1):
                c_ = scratch[q]
                for i in range(n):
                    w[i] -= c_ * basis[q, i]
            b2 = 0.0
            for i in range(n):
                b2 += w[i] * w[i]
            if b2 > 0.5 * before:                              # "twice is enough"
                break
            before = b2
        b = np.sqrt(b2)
        beta[j] = b
        m = j + 1
        if m == 1:
            theta = a
            ritz[0] = 1.0
        else:
            theta = _extend_top_ritz(alpha, beta, m, theta, ritz, pivots)
            if not theta > 0.0:
                return 0.0
        rest = trace - diagonal_sum + 8.0 * (m + 1) * _EPS * trace     # ≥ tr C, rounding included
        residual = b * ritz[m - 1]                             # ‖G y − θ y‖ of the top Ritz pair
        last = not b > 1e-13 * theta or m == max_steps         # an invariant subspace, or the end
        if last or (theta > rest and
                    residual * residual <= 0.5 * EIGENVALUE_RTOL * theta * (theta - rest)):
            lower = _ritz_vector(basis, images, ritz, m, scratch, u)
            if _bordered_below(alpha, beta, m, rest, lower * (1.0 + EIGENVALUE_RTOL)):
                return lower
            if last:
                return -lower
        inverse = 1.0 / b
        for i in range(n):
            basis[j + 1, i] = w[i] * inverse
    return 0.0


@numba.njit(cache=True, error_model="numpy", fastmath=_FAST)
def _matvecs(R, q, v, w):
    """v = Rᵀ q, w = R v, returns qᵀw = ‖v‖²; four rows at a time (fewer passes over v,
    independent sums)."""
    n, width = R.shape
    for l in range(width):
        v[l] = 0.0
    i = 0
    while i + 4 <= n:
        q0, q1, q2, q3 = q[i], q[i + 1], q[i + 2], q[i + 3]
        for l in range(width):
            v[l] += (R[i, l] * q0 + R[i + 1, l] * q1) + (R[i + 2, l] * q2 + R[i + 3, l] * q3)
        i += 4
    while i < n:
        qi = q[i]
        for l in range(width):
            v[l] += R[i, l] * qi
        i += 1
    i = 0
    while i + 4 <= n:
        s0 = s1 = s2 = s3 = 0.0
        for l in range(width):
            x = v[l]
            s0 += R[i, l] * x
            s1 += R[i + 1, l] * x
            s2 += R[i + 2, l] * x
            s3 += R[i + 3, l] * x
        w[i], w[i + 1], w[i + 2], w[i + 3] = s0, s1, s2, s3
        i += 4
    while i < n:
        s0 = 0.0
        for l in range(width):
            s0 += R[i, l] * v[l]
        w[i] = s0
        i += 1
    total = 0.0
    for l in range(width):
        total += v[l] * v[l]
    return total


@numba.njit(cache=True, error_model="numpy")
def _extend_top_ritz(alpha, beta, m, theta, ritz, pivots):
    """The largest eigenvalue of the m×m tridiagonal T_m (diagonal alpha, off-diagonal beta) and
    its unit eigenvector in ritz[:m], given theta and ritz[:m−1] for T_{m−1}.

    Above θ(T_{m−1}) the last LDLᵀ pivot of T_m − x·I is convex and decreasing in x, with its
    root at θ(T_m): Newton from the left converges monotonically, started at the top Ritz value
    of span{(ritz, 0), e_m} (a lower bound)."""
    k = m - 1
    coupling = beta[k - 1] * ritz[k - 1]
    half = 0.5 * (theta - alpha[k])
    x = 0.5 * (theta + alpha[k]) + np.sqrt(half * half + coupling * coupling)
    converged = not x - theta > 1e-12 * abs(theta)
    for _ in range(60):
        q, dq = alpha[0] - x, -1.0
        pivots[0] = q
        for i in range(1, m):
            inverse = 1.0 / q if q != 0.0 else -1e300
            ratio = beta[i - 1] * beta[i - 1] * inverse
            dq = -1.0 + ratio * dq * inverse
            q = alpha[i] - x - ratio
            pivots[i] = q
        if converged:
            break
        step = -q / dq
        if not step > 4.0 * _EPS * x:
            break
        x += step
    # the eigenvector: one step of inverse iteration, (T_m − x·I) s = (previous s, 0), with
    # the pivots at (the last but one) x: T_m − x·I is negative semi-definite there, so LDLᵀ
    # needs no pivoting, and the previous vector has a large component along the new one
    ritz[k] = 0.0
    tiny = _EPS * abs(x)                   # a zero pivot (x exact): amplify 1/ε, not overflow
    for i in range(m):                     # from here on: the reciprocals of the pivots
        q = pivots[i]
        pivots[i] = 1.0 / q if abs(q) > tiny else -1.0 / tiny
    for i in range(1, m):                                      # L z = b
        ritz[i] -= beta[i - 1] * pivots[i - 1] * ritz[i - 1]
    for i in range(m):                                         # D y = z
        ritz[i] *= pivots[i]
    norm2 = ritz[k] * ritz[k]
    for i in range(k - 1, -1, -1):                             # Lᵀ s = y
        ritz[i] -= beta[i] * pivots[i] * ritz[i + 1]
        norm2 += ritz[i] * ritz[i]
    inverse = 1.0 / np.sqrt(norm2)
    for i in range(m):
        ritz[i] *= inverse
    return x


@numba.njit(cache=True, error_model="numpy", fastmath=_FAST)
def _ritz_vector(basis, images, ritz, m, y, u):
    """Write the Ritz vector y = Q_m ritz, normalised, into u and return its Rayleigh quotient
    yᵀGy / yᵀy = ‖Rᵀy‖² / ‖y‖² (Rᵀy = Σ ritz_j Rᵀq_j from the saved images): a lower bound
    on λ_max whatever the accuracy of ritz."""
    n, width = basis.shape[1], images.shape[1]
    for i in range(n):
        y[i] = 0.0
    for q in range(m):
        s = ritz[q]
        for i in range(n):
            y[i] += s * basis[q, i]
    yy = 0.0
    for i in range(n):
        yy += y[i] * y[i]
    vv = 0.0
    for l in range(width):
        x = 0.0
        for q in range(m):
            x += ritz[q] * images[q, l]
        vv += x * x
    if not (yy > 0.0 and vv > 0.0):
        return 0.0
    inverse = 1.0 / np.sqrt(yy)
    for i in range(n):
        u[i] = y[i] * inverse
    return vv / yy


@numba.njit(cache=True, error_model="numpy")
def _bordered_below(alpha, beta, m, rest, upper):
    """True if every eigenvalue of T_m bordered by (β_m, rest) is below `upper`: all LDLᵀ
    pivots of the bordered matrix − upper·I negative (a Sturm count)."""
    if not upper > rest:
        return False
    q = alpha[0] - upper
    if not q < 0.0:
        return False
    for i in range(1, m):
        q = alpha[i] - upper - beta[i - 1] * beta[i - 1] / q
        if not q < 0.0:
            return False
    q = rest - upper - beta[m - 1] * beta[m - 1] / q
    return q < 0.0


@numba.njit(cache=True, error_model="numpy", fastmath=_FAST)
def _holder_bound(R, column_sums):
    """‖R‖₁ ‖R‖∞ (largest column times largest row sum of |R|), an upper bound on ‖R‖₂²."""
    rows, columns = R.shape
    for j in range(columns):
        column_sums[j] = 0.0
    row_max = 0.0
    for i in range(rows):
        row = 0.0
        for j in range(columns):
            a = abs(R[i, j])
            column_sums[j] += a
            row += a
        row_max = max(row_max, row)
    column_max = 0.0
    for j in range(columns):
        column_max = max(column_max, column_sums[j])
    return column_max * row_max


@numba.njit(cache=True, error_model="numpy")
def _no_eigenvalue_above(gram, upper, work, pivot_row):
    """True if upper·I − G is positive definite (its Cholesky factorisation succeeds): every
    eigenvalue of G lies below upper, whatever the gaps between them (rounding: ~n²ε)."""
    n = gram.shape[0]
    for i in range(n):
        for j in range(n):
            work[i, j] = -gram[i, j]
        work[i, i] += upper
    for j in range(n):                  # upper Cholesky by rows, work = UᵀU (lower part: junk)
        pivot = work[j, j]
        if not pivot > 0.0:
            return False
        inverse = 1.0 / np.sqrt(pivot)
        for m in range(n):
            pivot_row[m] = work[j, m] * inverse
        for i in range(j + 1, n):
            factor = pivot_row[i]
            for m in range(n):          # full rows: no aliasing, so the loop vectorises
                work[i, m] -= factor * pivot_row[m]
    return True


@numba.njit(cache=True, error_model="numpy")
def _largest_eigenvalue(gram, work, diagonal, off_diagonal, v, p, w):
    """λ_max of the symmetric `gram`, exact to rounding: Householder tridiagonalisation (backward
    stable), then bisection with Sturm counts (LAPACK's dstebz scheme) to the last bits."""
    n = gram.shape[0]
    if n == 1:
        return gram[0, 0]
    for i in range(n):
        for j in range(n):
            work[i, j] = gram[i, j]
    for k in range(n - 2):
        # reflect x = work[k, k+1:] (= the column below the diagonal) onto β e_1
        diagonal[k] = work[k, k]
        x0 = work[k, k + 1]
        tail = 0.0
        for i in range(k + 2, n):
            tail += work[k, i] * work[k, i]
        if tail == 0.0:
            off_diagonal[k] = x0
            continue
        alpha = np.sqrt(x0 * x0 + tail)
        beta = -alpha if x0 >= 0.0 else alpha           # opposite sign: no cancellation in v0
        m = n - k - 1
        v[0] = x0 - beta
        for i in range(1, m):
            v[i] = work[k, k + 1 + i]
        tau = 2.0 / (v[0] * v[0] + tail)
        for i in range(m):                              # p = τ A₂₂ v
            p[i] = 0.0
        for j in range(m):
            factor = tau * v[j]
            for i in range(m):
                p[i] += work[k + 1 + j, k + 1 + i] * factor
        pv = 0.0
        for i in range(m):
            pv += p[i] * v[i]
        half = 0.5 * tau * pv
        for i in range(m):                              # w = p − (τ/2)(pᵀv) v
            w[i] = p[i] - half * v[i]
        for i in range(m):                              # A₂₂ ← A₂₂ − v wᵀ − w vᵀ
            vi, wi = v[i], w[i]
            for j in range(m):
                work[k + 1 + i, k + 1 + j] -= vi * w[j] + wi * v[j]
        off_diagonal[k] = beta
    diagonal[n - 2] = work[n - 2, n - 2]
    diagonal[n - 1] = work[n - 1, n - 1]
    off_diagonal[n - 2] = work[n - 2, n - 1]
    # bisection on [max diagonal, Gershgorin bound] keeping count(lo) < n = count(hi)
    lo, hi = diagonal[0], -np.inf
    for i in range(n):
        left = abs(off_diagonal[i - 1]) if i > 0 else 0.0
        right = abs(off_diagonal[i]) if i < n - 1 else 0.0
        lo = max(lo, diagonal[i])
        hi = max(hi, diagonal[i] + left + right)
    largest_square = 0.0
    for i in range(n - 1):
        off_diagonal[i] *= off_diagonal[i]              # from here on: the squares
        largest_square = max(largest_square, off_diagonal[i])
    pivmin = 2.2250738585072014e-308 * max(1.0, largest_square)
    while True:
        mid = 0.5 * (lo + hi)
        if not (lo < mid < hi) or hi - lo <= 2.0 * 2.220446049250313e-16 * abs(hi):
            break
        below = 0                                       # eigenvalues below mid
        q = diagonal[0] - mid
        for i in range(n):
            if i > 0:
                q = diagonal[i] - mid - off_diagonal[i - 1] / q
            if abs(q) < pivmin:
                q = -pivmin
            if q < 0.0:
                below += 1
        if below == n:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)
