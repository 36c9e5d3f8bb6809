"""The classical long-range-dependency tasks (definitions: docs/science/tasks.md §2).

    task = tasks.make("adding_pascanu", T=100)
    x, y = task.sample(batch_size=20, seed=0)           # x (B, L, input_dim) float32, batch-first
    task.loss(pred, y), task.error(pred, y)              # numpy predictions

Every task knows the loss and error of the best input-independent predictor (`baseline_loss`,
`baseline_error`): a trained model sitting at those numbers has learned nothing.
`baseline_error` is the error of the constant that minimises the loss (what a model trained on
the loss converges to when it ignores the input), not of the constant that minimises the error.

Randomness: `sample(B, seed, split)` draws from `numpy.random.default_rng([seed, split_code])`,
so one (seed, split) is one fixed batch and the train and test streams never share a seed.
"""
from __future__ import annotations

from . import losses  # noqa: F401
from .base import SPLITS, Batch, PascanuTask, Task, window  # noqa: F401
from .registry import REGISTRY, check, make, names, register_task  # noqa: F401

# Each task family registers its tasks on import (registration order is irrelevant: names()
# sorts).
from .adding import Adding, AddingHS97, AddingPascanu, Multiplication  # noqa: F401
from .copy import Copy  # noqa: F401
from .digits import Digits, DigitsPermuted  # noqa: F401
from .latch import Latch  # noqa: F401
from .memorization import Memorization  # noqa: F401
from .permutation import Permutation  # noqa: F401
from .temporal_order import TemporalOrder, TemporalOrder3Bit  # noqa: F401
