"""Adding problems (three historical forms) and the multiplication problem.

Input channels: x[..., 0] = the values, x[..., 1] = the markers. Target at the last step, MSE.
"""
from __future__ import annotations

import math

import numpy as np

from . import losses
from .base import PascanuTask, Task, window
from .registry import register_task


def _two_marks(values, first, second, background=None):
    """Stack values and a marker channel with 1 at the two marked steps per sequence."""
    rows = np.arange(len(values))
    markers = np.zeros_like(values) if background is None else background
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return np.stack([values, markers], axis=-1), values[rows, first], values[rows, second]


def _prediction(pred, y):
    pred, y = np.asarray(pred), np.asarray(y)
    losses.check_shapes("mse", pred.shape, y.shape)
    return pred.reshape(y.shape).astype(np.float64), y.astype(np.float64)


def _p_sum_near_one(a):
    """P(|U1 + U2 - 1| <= a) for U1, U2 ~ U[0,1] (triangular density on [0, 2])."""
    return 1.0 - (1.0 - a) ** 2


@register_task
class Adding(Task):
    """Modern adding problem (Arjovsky et al. 2016; Le et al. 2015).

    L = T steps; values U[0,1]; one marker uniform in the first half [0, T//2), one in the
    second half [T//2, T); target a + b. The best constant is 1: MSE = Var(a+b) = 1/6.
    error: squared error > 0.04 (the Pascanu criterion, kept for comparability; the papers only
    report MSE). solved: eval MSE < solve_threshold (default 0.01, 6% of the baseline).
    """

    name = "adding"
    description = ("adding problem, modern form: sum of two values marked one in each half "
                   "(Arjovsky et al. 2016; Le et al. 2015)")
    input_dim, output_dim, loss_kind = 2, 1, "mse"
    min_T, min_T_reason = 2, "one marker in each half"
    solve_on = "loss"
    baseline_loss = 1 / 6
    baseline_error = 1 - _p_sum_near_one(0.2)  # (a+b-1)^2 > 0.04: 0.64

    def generate(self, rng, batch_size, length):
        values = rng.uniform(0.0, 1.0, (batch_size, length)).astype(np.float32)
        first = rng.integers(0, length // 2, batch_size)
        second = rng.integers(length // 2, length, batch_size)
        x, a, b = _two_marks(values, first, second)
        return x, a + b

    def error(self, pred, y):
        pred, y = _prediction(pred, y)
        return float(np.mean((pred - y) ** 2 > 0.04))


@register_task
class AddingPascanu(PascanuTask):
    """Adding problem of Pascanu et al. 2013 (after Hochreiter & Schmidhuber 1997).

    L uniform in [T, 1.1T) (one per batch); values U[0,1]; first marker in [0, 0.1L), second in
    [0.1L, 0.5L); target (a + b)/2. error: squared error > 0.04; solved: error < 1%.
    Best constant 0.5: MSE 1/24, 36% errors.
    """

    name = "adding_pascanu"
    description = ("adding problem, Pascanu et al. 2013: (a+b)/2 of two values marked in "
                   "[0,0.1L) and [0.1L,0.5L), L in [T,1.1T)")
    input_dim, output_dim, loss_kind = 2, 1, "mse"
    min_T, min_T_reason = 10, "the marker window [0, 0.1L) must be non-empty"
    baseline_loss = 1 / 24
    baseline_error = 1 - _p_sum_near_one(0.4)  # ((a+b)/2 - 0.5)^2 > 0.04: 0.36

    def combine(self, a, b):
        return (a + b) / 2

    def generate(self, rng, batch_size, length):
        values = rng.uniform(0.0, 1.0, (batch_size, length)).astype(np.float32)
        first = rng.integers(*window(length, 0, 1), batch_size)
        second = rng.integers(*window(length, 1, 5), batch_size)
        x, a, b = _two_marks(values, first, second)
        return x, self.combine(a, b)

    def error(self, pred, y):
        pred, y = _prediction(pred, y)
        return float(np.mean((pred - y) ** 2 > 0.04))


def _p_product_below(z):
    """P(U1 * U2 <= z) for U1, U2 ~ U[0,1]."""
    return z - z * math.log(z)


@register_task
class Multiplication(AddingPascanu):
    """Multiplication problem of Pascanu et al. 2013: as adding_pascanu with target a * b.

    Best constant E[ab] = 1/4: MSE = Var(ab) = 1/9 - 1/16 = 7/144; its error rate (squared
    error > 0.04) is 1 - P(0.05 <= ab <= 0.45) = 0.390.
    """

    name = "multiplication"
    description = ("multiplication problem, Pascanu et al. 2013: a*b of two values marked in "
                   "[0,0.1L) and [0.1L,0.5L), L in [T,1.1T)")
    baseline_loss = 7 / 144
    baseline_error = 1 - (_p_product_below(0.45) - _p_product_below(0.05))

    def combine(self, a, b):
        return a * b


@register_task
class AddingHS97(Task):
    """Adding problem of Hochreiter & Schmidhuber 1997 (LSTM paper, experiment 4).

    L uniform in [T, T + T//10] (inclusive, one per batch); values U[-1,1]; marker channel
    -1 at the first and the last step, 1 at the two marked steps, 0 elsewhere. The first mark
    (X1) is uniform in the first 10 steps; the second (X2) uniform among the first T//2 - 1
    steps other than X1's, i.e. in [0, T//2) without X1. As in the paper, when X1 falls on the
    first step its value is set to 0 (in the input too); a mark on the first step shows 1, not -1.
    target 0.5 + (X1 + X2)/4. error: absolute error >= 0.04 (the paper counts < 0.04 as
    correct); solved: error < 1%.
    Best constant 0.5: MSE = (0.9/3 + 1/3)/16 = 19/480 = 0.0396; correct with probability
    0.9 P(|X1+X2| < 0.16) + 0.1 P(|X2| < 0.16) = 15.4%.
    """

    name = "adding_hs97"
    description = ("adding problem, Hochreiter & Schmidhuber 1997: 0.5+(X1+X2)/4, values in "
                   "[-1,1], marks in the first 10 and first T/2-1 steps, L in [T,T+T/10]")
    input_dim, output_dim, loss_kind = 2, 1, "mse"
    min_T, min_T_reason = 20, "the first 10 steps must lie inside the first T/2 steps"
    baseline_loss = 19 / 480
    baseline_error = 1 - (0.9 * (0.16 - 0.16 ** 2 / 4) + 0.1 * 0.16)

    @property
    def max_length(self):
        return self.T + self.T // 10

    def draw_length(self, rng):
        return int(rng.integers(self.T, self.max_length + 1))

    def generate(self, rng, batch_size, length):
        values = rng.uniform(-1.0, 1.0, (batch_size, length)).astype(np.float32)
        first = rng.integers(0, 10, batch_size)
        r = rng.integers(0, self.T // 2 - 1, batch_size)
        second = r + (r >= first)  # uniform over [0, T//2) without `first`
        values[first == 0, 0] = 0.0
        markers = np.zeros_like(values)
        markers[:, [0, -1]] = -1.0
        x, a, b = _two_marks(values, first, second, background=markers)
        return x, 0.5 + (a + b) / 4

    def error(self, pred, y):
        pred, y = _prediction(pred, y)
        return float(np.mean(np.abs(pred - y) >= 0.04))
