"""Temporal order problems (Hochreiter & Schmidhuber 1997; as in Pascanu et al. 2013).

Input: one-hot over 6 symbols: 0 = A, 1 = B (the relevant ones), 2..5 = distractors that fill
every other step. One relevant symbol v_i in {A, B} per window; the class at the last step is
sum_i v_i 2^i (2 windows: AA=0, BA=1, AB=2, BB=3). L uniform in [T, 1.1T), one per batch.
"""
from __future__ import annotations

import math

import numpy as np

from .base import PascanuTask, window
from .registry import register_task


@register_task
class TemporalOrder(PascanuTask):
    """Relevant symbols at p0 in [0.1L, 0.2L) and p1 in [0.5L, 0.6L); 4 classes.

    Classes are uniform: the best constant predictor has CE ln 4 and 75% errors.
    """

    name = "temporal_order"
    description = ("temporal order, Pascanu et al. 2013 (after Hochreiter & Schmidhuber 1997): "
                   "order of A/B at [0.1L,0.2L) and [0.5L,0.6L), 4 classes")
    windows = ((1, 2), (5, 6))  # in tenths of L
    input_dim, loss_kind = 6, "ce"
    min_T, min_T_reason = 10, "the symbol windows of width 0.1L must be non-empty"

    def __init__(self, T, **options):
        super().__init__(T, **options)
        self.output_dim = 2 ** len(self.windows)
        self.baseline_loss = math.log(self.output_dim)
        self.baseline_error = 1 - 1 / self.output_dim

    def generate(self, rng, batch_size, length):
        rows = np.arange(batch_size)
        symbols = rng.integers(2, 6, (batch_size, length))  # distractors everywhere first
        label = np.zeros(batch_size, dtype=np.int64)
        for i, (lo, hi) in enumerate(self.windows):
            position = rng.integers(*window(length, lo, hi), batch_size)
            bit = rng.integers(0, 2, batch_size)
            symbols[rows, position] = bit
            label += bit << i
        return np.eye(6, dtype=np.float32)[symbols], label


@register_task
class TemporalOrder3Bit(TemporalOrder):
    """Three relevant symbols in [0.1L, 0.2L), [0.3L, 0.4L), [0.6L, 0.7L); 8 classes (ln 8, 87.5%)."""

    name = "temporal_order_3bit"
    description = ("3-bit temporal order, Pascanu et al. 2013 (after Hochreiter & Schmidhuber 1997): "
                   "A/B at [0.1L,0.2L), [0.3L,0.4L), [0.6L,0.7L), 8 classes")
    windows = ((1, 2), (3, 4), (6, 7))
