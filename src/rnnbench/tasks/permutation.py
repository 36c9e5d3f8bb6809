"""Random permutation problem (Martens & Sutskever 2011; Pascanu et al. 2013)."""
from __future__ import annotations

import math

import numpy as np

from .base import PascanuTask
from .registry import register_task

N_SYMBOLS = 100


@register_task
class Permutation(PascanuTask):
    """One-hot symbols from 100 classes; the first is 0 or 1, the others uniform in 2..99.

    Predict the first symbol at the last step. The head has 2 outputs: only symbols 0 and 1 can
    be targets (the input-independent optimum is the same, ln 2, with a 100-way head).
    L uniform in [T, 1.1T), one per batch. Best constant: CE ln 2, 50% errors.
    """

    name = "permutation"
    description = ("random permutation problem, Pascanu et al. 2013 (after Martens & Sutskever "
                   "2011): recall the first of 100-way symbols, which is 0 or 1")
    input_dim, output_dim, loss_kind = N_SYMBOLS, 2, "ce"
    min_T, min_T_reason = 2, "the first symbol must be followed by at least one step"
    baseline_loss = math.log(2)
    baseline_error = 0.5

    def generate(self, rng, batch_size, length):
        symbols = rng.integers(2, N_SYMBOLS, (batch_size, length))
        first = rng.integers(0, 2, batch_size)
        symbols[:, 0] = first
        return np.eye(N_SYMBOLS, dtype=np.float32)[symbols], first
