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
projection of all steps (biases added there too), one (B×H)·(H×4H) GEMM per step into a
preallocated buffer, short unit-stride row loops with few arrays each (so that LLVM vectorises
them), weight gradients as single GEMMs after the loop. Self-contained so that `cache=True`
sees every edit.

float32 has its own pair of kernels (`forward_kernel_f32`, `backward_kernel_f32`; float64 keeps
the np.dot ones above, unchanged): torch's float32 LSTM on the CPU is oneDNN's fused kernel, a
much stronger baseline than autograd. There the per-step products go through `_gemm_acc`, a
register-blocked 4×16 GEMM tile written as LLVM IR (`_tile_f32`, <8 x float> FMAs) against
W_hh packed once per call into 16-column panels, where OpenBLAS sgemm via np.dot repacks W_hh
on every call of these small products (docs/performance.md has the measurements).
They also use a rational float32 tanh (`_tanh_f32`, no exp), fastmath "contract" (FMA only)
and one GEMM for [dW_ih | dW_hh | db].
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

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


@numba.njit(cache=True, error_model="numpy", inline="always")
def _tanh_f32(a):
    """float32 tanh as a rational function, x·P(x²)/Q(x²) on x clamped to ±7.9988 (Eigen's
    coefficients), a itself below |a| = 4e-4: no exp, half the time of `_tanh` (0.5 vs 1.1 ns
    per element, vectorised). Within 4.2 ulp of the exact value (measured over 3.6e5 values from
    1e-9 to 100), NaN propagates, ±inf gives ±1. Used only by the float32 kernels."""
    x = np.float32(7.99881172180175781) if a > np.float32(7.99881172180175781) else a
    x = np.float32(-7.99881172180175781) if x < np.float32(-7.99881172180175781) else x
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    t = (p * x) / q
    return a if abs(a) < np.float32(4e-4) else t


# --- float32 per-step GEMM -------------------------------------------------------------------
# OpenBLAS sgemm packs both operands on every call of the small per-step products (B×H)·(H×4H)
# and (B×4H)·(4H×H); this register-blocked kernel packs the weight once per call and keeps a
# 4×16 block of c in registers.
_MR, _NR = 4, 16          # tile: 4 rows × 16 columns = 8 ymm accumulators (FMA latency × units)


@intrinsic
def _tile_f32(typingctx, c, c_off, ldc, a, a_off, lda, w, w_off, k_len):
    """c[c_off + r·ldc + j] += Σ_k a[a_off + r·lda + k] · w[w_off + k·_NR + j] for r < _MR,
    j < _NR (flat float32 arrays; no bounds checks). <8 x float> accumulators in registers,
    one broadcast of a per row and k, llvm.fma.v8f32."""
    if not all(isinstance(t, types.Array) and t.dtype == types.float32 for t in (c, a, w)):
        raise TypingError("_tile_f32: float32 arrays only")
    sig = types.void(c, types.intp, types.intp, a, types.intp, types.intp, w, types.intp,
                     types.intp)

    def codegen(context, builder, signature, args):
        c_v, c_off, ldc, a_v, a_off, lda, w_v, w_off, k_len = args
        c_ty, a_ty, w_ty = signature.args[0], signature.args[3], signature.args[6]
        c_ptr = context.make_array(c_ty)(context, builder, c_v).data
        a_ptr = context.make_array(a_ty)(context, builder, a_v).data
        w_ptr = context.make_array(w_ty)(context, builder, w_v).data
        lanes = 8
        vec = ir.VectorType(ir.FloatType(), lanes)
        vec_ptr = vec.as_pointer()
        n_vec = _NR // lanes
        intp = context.get_value_type(types.intp)
        i32 = ir.IntType(32)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                             "llvm.fma.v8f32")
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        undef = ir.Constant(vec, ir.Undefined)
        zero = ir.Constant(vec, [0.0] * lanes)
        acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(n_vec)]
               for _ in range(_MR)]
        with cgutils.for_range(builder, k_len) as loop:
            k = loop.index
            w_k = builder.add(w_off, builder.mul(k, ir.Constant(intp, _NR)))
            w_vecs = [builder.load(builder.bitcast(
                builder.gep(w_ptr, [builder.add(w_k, ir.Constant(intp, lanes * v))]), vec_ptr),
                align=4) for v in range(n_vec)]
            for r in range(_MR):
                a_rk = builder.add(builder.add(a_off, builder.mul(ir.Constant(intp, r), lda)), k)
                a_s = builder.load(builder.gep(a_ptr, [a_rk]))
                a_b = builder.shuffle_vector(
                    builder.insert_element(undef, a_s, ir.Constant(i32, 0)), undef, splat)
                for v in range(n_vec):
                    builder.store(builder.call(fma, [a_b, w_vecs[v], builder.load(acc[r][v])]),
                                  acc[r][v])
        for r in range(_MR):
            for v in range(n_vec):
                c_rv = builder.add(builder.add(c_off, builder.mul(ir.Constant(intp, r), ldc)),
                                   ir.Constant(intp, lanes * v))
                ptr = builder.bitcast(builder.gep(c_ptr, [c_rv]), vec_ptr)
                builder.store(builder.fadd(builder.load(ptr, align=4), builder.load(acc[r][v])),
                              ptr, align=4)
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(cache=True)
def _pack_panels(w_t):
    """(K, N) -> (ceil(N / _NR), K, _NR): column panels of w_t, each contiguous; the last one
    zero-padded when N is not a multiple of _NR."""
    K, N = w_t.shape
    P = (N + _NR - 1) // _NR
    panels = np.zeros((P, K, _NR), dtype=w_t.dtype)
    for p in range(P):
        width = min(_NR, N - p * _NR)
        for k in range(K):
            for j in range(width):
                panels[p, k, j] = w_t[k, p * _NR + j]
    return panels


@numba.njit(cache=True, error_model="numpy")
def _gemm_acc(c, a, panels):
    """c (M, N) += a (M, K) · w_t (K, N), all C-contiguous float32; panels = _pack_panels(w_t).
    Full 4×16 tiles in registers, panel by panel (one panel stays in L1 across the rows). The
    edges (M not a multiple of 4, N not of 16) also go through the tile, on a zero-padded copy
    of a's last rows and the padded last panel, into a 4×16 buffer whose valid part is added
    to c: plain loops there were as slow as all the full tiles together."""
    M, K = a.shape
    N = c.shape[1]
    P = panels.shape[0]
    M_full = M - M % _MR
    P_full = N // _NR
    c_flat = c.reshape(M * N)
    a_flat = a.reshape(M * K)
    w_flat = panels.reshape(P * K * _NR)
    for p in range(P_full):
        for r in range(0, M_full, _MR):
            _tile_f32(c_flat, r * N + p * _NR, N, a_flat, r * K, K, w_flat, p * K * _NR, K)
    if P_full == P and M_full == M:
        return
    tile = np.empty(_MR * _NR, dtype=c.dtype)
    if P_full < P:                                   # last columns, full rows
        for r in range(0, M_full, _MR):
            _edge_tile(c, r, _MR, P_full, tile, a_flat, r * K, K, w_flat)
    if M_full < M:                                   # last rows, every panel
        a_pad = np.zeros(_MR * K, dtype=a.dtype)
        for i in range(M - M_full):
            for k in range(K):
                a_pad[i * K + k] = a[M_full + i, k]
        for p in range(P):
            _edge_tile(c, M_full, M - M_full, p, tile, a_pad, 0, K, w_flat)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _edge_tile(c, row, rows, p, tile, a_flat, a_off, K, w_flat):
    """c[row:row + rows, panel p's columns] += the 4×16 tile of a's rows at a_off and panel p,
    computed into `tile` and added only where it lies inside c."""
    tile[:] = 0
    _tile_f32(tile, 0, _NR, a_flat, a_off, K, w_flat, p * K * _NR, K)
    width = min(_NR, c.shape[1] - p * _NR)
    for i in range(rows):
        c_r = c[row + i]
        for j in range(width):
            c_r[p * _NR + j] += tile[i * _NR + j]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _cell_path_step(d_t, dc_b, gate, c_prev, H, one):
    """One row of BPTT through the cell state: δ of the i, f, g gates from dL/dc_t (dc_b), then
    dc_b becomes dL/dc_{t-1} along the direct path (× f). Shared by both dtypes' kernels."""
    for j in range(H):
        i_g = gate[j]
        f_g = gate[H + j]
        g_g = gate[2 * H + j]
        dc = dc_b[j]
        d_t[j] = dc * g_g * i_g * (one - i_g)
        d_t[H + j] = dc * c_prev[j] * f_g * (one - f_g)
        d_t[2 * H + j] = dc * i_g * (one - g_g * g_g)
        dc_b[j] = dc * f_g


@numba.njit(cache=True, error_model="numpy")
def forward_kernel(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """Return (h, c, gates): (T, B, H), (T, B, H), (T, B, 4H) post-activation [i|f|g|o]."""
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    w_hh_t = np.ascontiguousarray(w_hh.T)
    gates = np.empty((T, B, 4 * H), dtype=x.dtype)
    # input projection of every step in one GEMM, plus both biases, before the loop; the loop
    # then adds W_hh h_{t-1} and turns the row into gate activations in place
    rows = gates.reshape(T * B, 4 * H)
    np.dot(x.reshape(T * B, I), np.ascontiguousarray(w_ih.T), rows)
    bias = b_ih + b_hh
    for r in range(T * B):
        row = rows[r]
        for k in range(4 * H):
            row[k] += bias[k]
    h = np.empty((T, B, H), dtype=x.dtype)
    c = np.empty((T, B, H), dtype=x.dtype)
    recurrent = np.empty((B, 4 * H), dtype=x.dtype)
    for t in range(T):
        np.dot(h0 if t == 0 else h[t - 1], w_hh_t, recurrent)
        for b in range(B):
            # short unit-stride loops over one row, few arrays each: every one vectorises
            a = gates[t, b]
            rec = recurrent[b]
            for k in range(2 * H):
                a[k] = _sigmoid(a[k] + rec[k], one)                          # i, f
            for j in range(H):       # loops start at 0: LLVM then proves the index non-negative
                a[2 * H + j] = _tanh(a[2 * H + j] + rec[2 * H + j], one)     # g
            for j in range(H):
                a[3 * H + j] = _sigmoid(a[3 * H + j] + rec[3 * H + j], one)  # o
            c_prev = c0[b] if t == 0 else c[t - 1, b]
            c_t = c[t, b]
            h_t = h[t, b]
            for j in range(H):
                c_new = a[H + j] * c_prev[j] + a[j] * a[2 * H + j]
                c_t[j] = c_new
                h_t[j] = a[3 * H + j] * _tanh(c_new, one)
    return h, c, gates


@numba.njit(cache=True, error_model="numpy")
def backward_kernel(x, h0, c0, w_ih, w_hh, h, c, gates, grad_h, dh_trace, delta):
    """BPTT. Returns (d_w_ih, d_w_hh, d_b, d_x, d_h0, d_c0); d_b is both bias gradients.

    dh_trace: (T, B, H) array receiving the total dL/dh_t of every step, or (0, B, H) to skip.
    delta: (T, B, 4H) work array for δ_t = dL/da_t, the pre-activation gate gradients
    (contents ignored, overwritten).
    """
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    keep_trace = dh_trace.shape[0] == T
    recurrent = np.zeros((B, H), dtype=x.dtype)      # δ_{t+1} W_hh, then dL/dh_t in place
    d_c = np.zeros((B, H), dtype=x.dtype)            # dL/dc_t through the direct cell path
    for t in range(T - 1, -1, -1):
        for b in range(B):
            dh = recurrent[b]
            g_in = grad_h[t, b]
            for j in range(H):
                dh[j] += g_in[j]                                 # external + recurrent part
            if keep_trace:
                dh_trace[t, b] = dh
            gate = gates[t, b]
            c_t = c[t, b]
            c_prev = c0[b] if t == 0 else c[t - 1, b]
            dc_b = d_c[b]
            d_t = delta[t, b]
            # few arrays per loop, so that LLVM's alias checks stay cheap and every loop vectorises
            for j in range(H):
                d_t[3 * H + j] = _tanh(c_t[j], one)              # scratch: tanh(c_t)
            for j in range(H):
                o_g = gate[3 * H + j]
                tanh_c = d_t[3 * H + j]
                dc_b[j] += dh[j] * o_g * (one - tanh_c * tanh_c)
                d_t[3 * H + j] = dh[j] * tanh_c * o_g * (one - o_g)
            _cell_path_step(d_t, dc_b, gate, c_prev, H, one)
        np.dot(delta[t], w_hh, recurrent)  # BPTT recursion: dL/dh_{t-1} gets δ_t W_hh
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
        row = rows[r]
        for j in range(4 * H):
            d_b[j] += row[j]
    d_x = np.dot(rows, w_ih).reshape(T, B, I)
    return d_w_ih, d_w_hh, d_b, d_x, d_h0, d_c0


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def forward_kernel_f32(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """float32 `forward_kernel` (same results to float32 rounding): the per-step GEMM is
    `_gemm_acc`, which accumulates h_{t-1} W_hhᵀ into the gate rows directly; tanh is
    `_tanh_f32`; fastmath "contract" only (a·b + c as one FMA; no reassociation, NaN/inf kept)."""
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    w_hh_t = np.ascontiguousarray(w_hh.T)
    panels = _pack_panels(w_hh_t)
    gates = np.empty((T, B, 4 * H), dtype=x.dtype)
    # input projection of every step in one GEMM before the loop; the loop then accumulates
    # h_{t-1} W_hhᵀ into the rows and turns them, with both biases, into gate activations in
    # place (measured: doing x_t W_ihᵀ per step with `_gemm_acc` instead was 0-6% slower)
    rows = gates.reshape(T * B, 4 * H)
    np.dot(x.reshape(T * B, I), np.ascontiguousarray(w_ih.T), rows)
    bias = b_ih + b_hh
    h = np.empty((T, B, H), dtype=x.dtype)
    c = np.empty((T, B, H), dtype=x.dtype)
    for t in range(T):
        _gemm_acc(gates[t], h0 if t == 0 else h[t - 1], panels)
        for b in range(B):
            # short unit-stride loops over one row, few arrays each: every one vectorises
            a = gates[t, b]
            for k in range(2 * H):
                a[k] = _sigmoid(a[k] + bias[k], one)                         # i, f
            for j in range(H):   # loops start at 0: LLVM then proves the index non-negative
                a[2 * H + j] = _tanh_f32(a[2 * H + j] + bias[2 * H + j])     # g
            for j in range(H):
                a[3 * H + j] = _sigmoid(a[3 * H + j] + bias[3 * H + j], one)  # o
            c_prev = c0[b] if t == 0 else c[t - 1, b]
            c_t = c[t, b]
            h_t = h[t, b]
            for j in range(H):
                c_new = a[H + j] * c_prev[j] + a[j] * a[2 * H + j]
                c_t[j] = c_new
                h_t[j] = a[3 * H + j] * _tanh_f32(c_new)
    return h, c, gates


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def backward_kernel_f32(x, h0, c0, w_ih, w_hh, h, c, gates, grad_h, dh_trace, delta):
    """float32 `backward_kernel`: the per-step GEMM is `_gemm_acc`, accumulating δ_{t+1} W_hh
    into a copy of grad_h_t; tanh is `_tanh_f32`; dW_ih, dW_hh and db are one GEMM; fastmath
    "contract" only. Returns (d_w_ih, d_w_hh, d_b, d_x, d_h0, d_c0).

    dh_trace: (T, B, H) array receiving the total dL/dh_t of every step, or (0, B, H) to skip.
    delta: (T, B, 4H) work array for δ_t = dL/da_t, the pre-activation gate gradients
    (contents ignored, overwritten).
    """
    T, B, I = x.shape
    H = h0.shape[1]
    one = x.dtype.type(1.0)
    keep_trace = dh_trace.shape[0] == T
    panels = _pack_panels(w_hh)                      # w_hh (4H, H) is already (K, N)
    recurrent = np.empty((B, H), dtype=x.dtype)      # dL/dh_t = grad_h_t + δ_{t+1} W_hh
    d_c = np.zeros((B, H), dtype=x.dtype)            # dL/dc_t through the direct cell path
    for t in range(T - 1, -1, -1):
        recurrent[:] = grad_h[t]
        if t < T - 1:
            _gemm_acc(recurrent, delta[t + 1], panels)
        for b in range(B):
            dh = recurrent[b]
            if keep_trace:
                dh_trace[t, b] = dh
            gate = gates[t, b]
            c_t = c[t, b]
            c_prev = c0[b] if t == 0 else c[t - 1, b]
            dc_b = d_c[b]
            d_t = delta[t, b]
            # few arrays per loop, so that LLVM's alias checks stay cheap and every loop vectorises
            # (tanh(c_t) inline here: 2% faster than its own loop with _tanh_f32)
            for j in range(H):
                o_g = gate[3 * H + j]
                tanh_c = _tanh_f32(c_t[j])
                dc_b[j] += dh[j] * o_g * (one - tanh_c * tanh_c)
                d_t[3 * H + j] = dh[j] * tanh_c * o_g * (one - o_g)
            _cell_path_step(d_t, dc_b, gate, c_prev, H, one)
    d_h0 = np.zeros((B, H), dtype=x.dtype)
    _gemm_acc(d_h0, delta[0], panels)
    d_c0 = d_c

    # [dW_ih | dW_hh | db] = Σ δ_tᵀ [x_t | h_{t-1} | 1] as one GEMM over a copied
    # [x | h_{t-1} | 1]: one read of δ, and no I = 8-column GEMM or bias sum of its own
    # (measured: 0.91 -> 0.78 ms at H=32, 9.2 -> 8.1 at H=128, T=100, for the two weights)
    xh = np.empty((T, B, I + H + 1), dtype=x.dtype)
    for t in range(T):
        for b in range(B):
            row = xh[t, b]
            x_tb = x[t, b]
            h_prev = h0[b] if t == 0 else h[t - 1, b]
            for i in range(I):
                row[i] = x_tb[i]
            for j in range(H):
                row[I + j] = h_prev[j]
            row[I + H] = one
    rows = delta.reshape(T * B, 4 * H)
    d_w = np.dot(rows.T, xh.reshape(T * B, I + H + 1))
    d_w_ih = np.ascontiguousarray(d_w[:, :I])
    d_w_hh = np.ascontiguousarray(d_w[:, I:I + H])
    d_b = np.ascontiguousarray(d_w[:, I + H])
    d_x = np.dot(rows, w_ih).reshape(T, B, I)
    return d_w_ih, d_w_hh, d_b, d_x, d_h0, d_c0


def forward(params, x, h0, c0, activation):
    """Validated inputs in; returns the saved arrays (h, c, gates, hn) with hn None."""
    kernel = forward_kernel_f32 if x.dtype == np.float32 else forward_kernel
    h, c, gates = kernel(x, h0, c0, params["weight_ih"], params["weight_hh"],
                                 params["bias_ih"], params["bias_hh"])
    return h, c, gates, None


def backward(states, grad_h, dh_trace):
    """Gradients dict from the saved forward states (see `_common.ForwardStates`)."""
    p = states.params
    kernel = backward_kernel_f32 if states.x.dtype == np.float32 else backward_kernel
    d_w_ih, d_w_hh, d_b, d_x, d_h0, d_c0 = kernel(
        states.x, states.h0, states.c0, p["weight_ih"], p["weight_hh"], states.h, states.c,
        states.gates, grad_h, dh_trace, scratch(states.gates.shape, states.gates.dtype))
    return {"weight_ih": d_w_ih, "weight_hh": d_w_hh, "bias_ih": d_b, "bias_hh": d_b.copy(),
            "x": d_x, "h0": d_h0, "c0": d_c0}
