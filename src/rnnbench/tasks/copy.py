"""Copy memory problem (Arjovsky et al. 2016), the recall layout shared with memorization.

Layout for n items drawn from k symbols, L = T + 2n steps, a class per step (ce_seq):

    input   s_1 .. s_n   blank x (T-1)   delimiter   blank x n
    target  blank x (T + n)                          s_1 .. s_n

Input one-hot over k + 2 classes: 0 = blank, 1..k = symbols, k + 1 = delimiter (the cue).
Output classes 0..k (blank and symbols; the delimiter is never a target).
"""
from __future__ import annotations

import math

import numpy as np

from . import losses
from .base import Task
from .registry import register_task


@register_task
class Copy(Task):
    """Arjovsky et al. 2016: 10 symbols from 8 categories, reproduce them after the delimiter.

    The best input-independent predictor knows the layout: blank with certainty for T + 10 steps,
    uniform over the 8 symbols for the last 10. Its CE averaged over all T + 20 steps is
    10 ln 8 / (T + 20) (0.1733 at T = 100) and it misses 7/8 of the recalled symbols.
    error: fraction of wrong recalled symbols (argmax over the last 10 steps); solved: error < 1%.
    """

    name = "copy"
    description = ("copy memory problem, Arjovsky et al. 2016: recall 10 symbols from 8 after "
                   "T-1 blanks and a delimiter, CE over all T+20 steps")
    loss_kind = "ce_seq"
    min_T, min_T_reason = 1, "T - 1 blanks"

    def layout(self) -> tuple[int, int]:
        return 10, 8  # (items, symbols)

    def __init__(self, T, **options):
        super().__init__(T, **options)
        items, symbols = self.layout()
        self.input_dim, self.output_dim = symbols + 2, symbols + 1
        self.baseline_loss = items * math.log(symbols) / self.max_length
        self.baseline_error = 1 - 1 / symbols

    @property
    def max_length(self):
        return self.T + 2 * self.layout()[0]

    def generate(self, rng, batch_size, length):
        items, symbols = self.layout()
        data = rng.integers(1, symbols + 1, (batch_size, items))
        inputs = np.zeros((batch_size, length), dtype=np.int64)
        inputs[:, :items] = data
        inputs[:, length - items - 1] = symbols + 1  # the delimiter
        targets = np.zeros((batch_size, length), dtype=np.int64)
        targets[:, length - items:] = data
        return np.eye(symbols + 2, dtype=np.float32)[inputs], targets

    def recalled_wrong(self, pred, y) -> np.ndarray:
        """(B, items) bool: the recalled symbols that the argmax gets wrong."""
        pred, y = np.asarray(pred), np.asarray(y)
        losses.check_shapes(self.loss_kind, pred.shape, y.shape)
        items = self.layout()[0]
        return np.argmax(pred[:, -items:], axis=-1) != y[:, -items:]

    def error(self, pred, y):
        return float(np.mean(self.recalled_wrong(pred, y)))
