"""Sequential digits: scikit-learn's bundled 8x8 digits read pixel by pixel.

The small offline stand-in for sequential MNIST (Le et al. 2015): 1797 images, 64 steps of one
pixel each (scaled to [0, 1]), 10 classes at the last step. The train/test split is fixed: a
permutation with seed 0, the first 80% (1437 images) train, the rest (360) test.
"""
from __future__ import annotations

import functools

import numpy as np

from .base import Task
from .registry import register_task

LENGTH = 64
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0


@functools.cache
def _dataset():
    """(pixels (N, 64) float32 in [0, 1], labels (N,) int64, {split: indices}); loaded once."""
    from sklearn.datasets import load_digits  # lazy: sklearn is slow to import

    digits = load_digits()
    pixels = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_train = int(TRAIN_FRACTION * len(labels))
    return pixels, labels, {"train": order[:n_train], "test": order[n_train:]}


@register_task
class Digits(Task):
    """Classify an 8x8 digit seen one pixel per step, row by row.

    sample(B, seed, split) takes images of the named split without replacement, in a random
    order; B larger than the split cycles through fresh permutations, so B >= split size covers
    every image. Baseline: the class frequencies of the training split (CE = their entropy,
    about ln 10; error = 1 - the largest frequency). solved: error < solve_threshold,
    default 0.10 (a convention: the papers report accuracy only).
    """

    name = "digits"
    description = ("sequential 8x8 digits (scikit-learn), one pixel per step, 10 classes; "
                   "offline stand-in for sequential MNIST (Le et al. 2015)")
    input_dim, output_dim, loss_kind = 1, 10, "ce"
    defaults = {**Task.defaults, "solve_threshold": 0.10}

    @classmethod
    def check_length(cls, T):
        if T != LENGTH:
            raise ValueError(f"task '{cls.name}' has a fixed length: T must be {LENGTH} "
                             f"(8x8 pixels), got T={T}")

    def __init__(self, T, **options):
        super().__init__(T, **options)
        self.pixels, self.labels, self.split_index = _dataset()
        self.pixel_order = np.arange(LENGTH)
        freq = np.bincount(self.labels[self.split_index["train"]], minlength=10) / len(self.split_index["train"])
        self.baseline_loss = float(-np.sum(freq * np.log(freq)))
        self.baseline_error = float(1 - freq.max())

    def draw(self, rng, batch_size, split):
        pool = self.split_index[split]
        passes = -(-batch_size // len(pool))  # ceil: enough fresh permutations to fill the batch
        index = np.concatenate([rng.permutation(pool) for _ in range(passes)])[:batch_size]
        return self.pixels[index][:, self.pixel_order, None], self.labels[index]


@register_task
class DigitsPermuted(Digits):
    """Digits with one fixed permutation of the 64 pixels (seeded by option `perm_seed`)."""

    name = "digits_permuted"
    description = ("sequential 8x8 digits with a fixed pixel permutation; offline stand-in for "
                   "permuted sequential MNIST (Le et al. 2015)")
    defaults = {**Digits.defaults, "perm_seed": 0}

    @classmethod
    def check_values(cls, T, options):
        super().check_values(T, options)
        if options["perm_seed"] < 0:
            raise ValueError(f"task '{cls.name}': option 'perm_seed' must be >= 0, got {options['perm_seed']}")

    def __init__(self, T, **options):
        super().__init__(T, **options)
        self.pixel_order = np.random.default_rng(int(self.options["perm_seed"])).permutation(LENGTH)
