"""The spectral radius that every backend records of a recurrent weight (numpy only: a Numba
run's process loads no torch, and building a torch model loads no pandas for it)."""
from __future__ import annotations

import math

import numpy as np


def gated_spectral_radius(weight, gate_count: int) -> float:
    """max over the gate blocks of a (G*H, H) recurrent weight (a numpy array or a tensor) of
    max |eigenvalue|, in float64 (complex128 for a complex weight) on the CPU, by numpy; NaN
    when the weight is not finite (a diverged run). Every backend calls this one function, so
    their values agree to the last bit (under the same BLAS thread count, which LAPACK's
    blocking may follow at large H). Results written before it used numpy (torch's eigvals)
    may differ in the last digits."""
    if hasattr(weight, "detach"):  # a torch tensor: its module is loaded already
        import torch
        weight = weight.detach().to("cpu", torch.complex128 if weight.is_complex()
                                    else torch.float64).numpy()
    weight = np.asarray(weight)
    weight = weight.astype(np.complex128 if np.iscomplexobj(weight) else np.float64)
    if weight.ndim != 2 or weight.shape[0] % gate_count:
        raise ValueError(f"weight of shape {weight.shape} does not split into {gate_count} gates")
    if not np.isfinite(weight).all():
        return math.nan
    return max(float(np.abs(np.linalg.eigvals(block)).max())
               for block in np.split(weight, gate_count))
