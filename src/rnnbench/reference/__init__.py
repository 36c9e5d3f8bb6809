"""Numba reference kernels: forward pass and exact BPTT for the rnn, lstm and gru cells.

They serve as the float64 oracle that the torch models are tested against, as the CPU training
backend (float32), and as the engine of the gradient-flow diagnostics. Conventions are
PyTorch's exactly (docs/science/model-and-bptt.md §6): parameter shapes (G·H × I), (G·H × H), (G·H,); LSTM gate rows
i, f, g, o; GRU rows r, z, n with n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)) and
h' = (1 − z) ⊙ n + z ⊙ h; inputs time-major x (T, B, I), states (B, H).

Public API
    h, grads = forward_backward(cell, params, x, h0, grad_h, c0=None, activation="tanh")
    h        = forward(cell, params, x, h0, c0=None, activation="tanh")
    states   = forward_states(cell, params, x, h0, c0=None, activation="tanh")
    grads    = backward(states, grad_h, return_dh=False)
    profile  = jacobian_profile(cell, params, x, h0, c0=None, activation="tanh", grad_last=None,
                               method="numba")   # or "numpy", the reference it is tested against

`grad_h` (T, B, H) is dLoss/dh_t for every output state (the external gradient); BPTT adds the
recurrent part. `grads` has weight_ih, weight_hh, bias_ih, bias_hh, x, h0 (and c0 for lstm), in
the shapes of the corresponding inputs. Every array must share one dtype, float32 or float64;
the kernels compute in that dtype. Bad input raises ValueError naming the argument.

Compilation: each kernel compiles once per dtype on first use and is cached on disk
(`cache=True`, `NUMBA_CACHE_DIR` to move the cache), because compiling all 12 kernels
(3 cells × forward/backward × 2 dtypes) costs tens of seconds of CPU while loading them from the
cache takes about a second: every run process after the first starts from the cache
(timings in docs/performance.md).

Speed: the elementwise steps use a branch-free exp/sigmoid/tanh (no libm calls, within 4 ulp)
because a libm call per element blocks LLVM's vectorisation; per-step GEMMs go to SciPy's
OpenBLAS. Run CPU training inside `with blas_threads(1):`: the per-step GEMMs are too small to
split, and extra BLAS threads only spin against each other and against other processes, which
can make them 100× slower. The backward δ work arrays are reused per thread
(`_common.scratch`).
"""
from __future__ import annotations

from ._common import PARAM_KEYS, ForwardStates
from .bptt import backward, forward, forward_backward, forward_states
from .diagnostics import jacobian_profile

__all__ = ["PARAM_KEYS", "ForwardStates", "forward",
           "forward_states", "backward", "forward_backward", "jacobian_profile", "blas_threads"]


def blas_threads(n: int = 1):
    """Context manager limiting the BLAS behind the kernels' np.dot (SciPy's OpenBLAS) to n threads.

    The per-step GEMMs are tiny (B×H by H×G·H): more than one BLAS thread cannot split them
    usefully, and the spinning threads can make them 100× slower when the cores are busy, so a
    CPU training loop should run inside
    `with blas_threads(1):`. Needs threadpoolctl (installed with scikit-learn).
    """
    import scipy.linalg.cython_blas  # noqa: F401 - load the library first, so that it is limited
    import threadpoolctl
    return threadpoolctl.threadpool_limits(limits=n, user_api="blas")
