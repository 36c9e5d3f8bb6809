"""Information latching problem (Bengio, Simard & Frasconi 1994)."""
from __future__ import annotations

import math

import numpy as np

from . import losses
from .base import Task
from .registry import register_task


@register_task
class Latch(Task):
    """Keep one bit across T steps of noise.

    L = T, input_dim 1. Step 0 carries the class c = +-1 without noise (the paper learns the
    first inputs per class; a clean +-1 is the simplest fixed stand-in). Steps 1..T-1 are
    Gaussian noise N(0, noise_var), noise_var = 0.2 as in the paper. Target 0.8 c, MSE.
    error: the sign of the prediction is wrong (a prediction of exactly 0 counts as wrong);
    solved: error < 1%. Best constant 0: MSE 0.64; any constant is right half the time: 50%.
    """

    name = "latch"
    description = ("information latching, Bengio et al. 1994: the sign of the first input after "
                   "T-1 steps of Gaussian noise (variance 0.2), targets +-0.8")
    input_dim, output_dim, loss_kind = 1, 1, "mse"
    defaults = {**Task.defaults, "noise_var": 0.2}
    baseline_loss = 0.64
    baseline_error = 0.5

    @classmethod
    def check_values(cls, T, options):
        super().check_values(T, options)
        if not (options["noise_var"] >= 0 and math.isfinite(options["noise_var"])):
            raise ValueError(f"task '{cls.name}': option 'noise_var' must be a finite number >= 0, "
                             f"got {options['noise_var']!r}")

    def generate(self, rng, batch_size, length):
        sign = rng.integers(0, 2, batch_size) * 2.0 - 1.0
        x = rng.normal(0.0, math.sqrt(self.options["noise_var"]), (batch_size, length, 1))
        x[:, 0, 0] = sign
        return x, 0.8 * sign

    def error(self, pred, y):
        pred, y = np.asarray(pred), np.asarray(y)
        losses.check_shapes("mse", pred.shape, y.shape)
        return float(np.mean(pred.reshape(y.shape) * y <= 0))
