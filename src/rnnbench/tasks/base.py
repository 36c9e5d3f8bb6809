"""The base classes of every task: `Task` (fixed length) and `PascanuTask` (one length per
batch), the `Batch` they sample, and the `window` helper of the Pascanu tasks."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import losses

SPLITS = {"train": 0, "test": 1}


@dataclass
class Batch:
    x: np.ndarray  # (B, L, input_dim) float32
    y: np.ndarray  # (B,) float32 for mse, (B,) int64 for ce, (B, L) int64 for ce_seq

    def __iter__(self):  # allows `x, y = task.sample(...)`
        return iter((self.x, self.y))


class Task:
    """Base class. A subclass sets the class attributes, writes `generate`, and `error` unless the
    default (argmax of last-step logits) is the paper's criterion."""

    name: str = ""
    description: str = ""
    loss_kind: str = "mse"          # "mse" | "ce" | "ce_seq"
    input_dim: int = 1
    output_dim: int = 1
    min_T: int = 1
    min_T_reason: str = ""          # why, for the error message
    solve_on: str = "error"         # solved when eval_<solve_on> < solve_threshold
    defaults: dict = {"solve_threshold": 0.01}

    def __init__(self, T: int, **options):
        self.check(T, options)
        self.T = int(T)
        # cast to the default's type: a YAML `solve_threshold: 1` is stored as 1.0
        self.options = {key: type(default)(options.get(key, default)) for key, default in self.defaults.items()}
        self.per_step = self.loss_kind == "ce_seq"

    # --- validation (cheap: no data is built) -------------------------------------------------
    @classmethod
    def check(cls, T, options: dict | None = None) -> None:
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise ValueError(f"task '{cls.name}': options must be a mapping, got {type(options).__name__}")
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)):
            raise ValueError(f"task '{cls.name}': T must be an int, got {type(T).__name__} {T!r}")
        cls.check_length(T)
        unknown = sorted(set(options) - set(cls.defaults))
        if unknown:
            raise ValueError(f"task '{cls.name}': unknown option(s) {unknown}; "
                             f"allowed options: {sorted(cls.defaults)}")
        for key, value in options.items():
            _check_type(cls.name, key, value, cls.defaults[key])
        cls.check_values(T, {**cls.defaults, **options})

    @classmethod
    def check_length(cls, T) -> None:
        if T < cls.min_T:
            reason = f" ({cls.min_T_reason})" if cls.min_T_reason else ""
            raise ValueError(f"task '{cls.name}' needs T >= {cls.min_T}{reason}, got T={T}")

    @classmethod
    def check_values(cls, T, options) -> None:
        """Range checks of the options; subclasses with more options extend this."""
        threshold = options["solve_threshold"]
        if not (threshold > 0 and math.isfinite(threshold)):
            raise ValueError(f"task '{cls.name}': option 'solve_threshold' must be a positive "
                             f"finite number, got {threshold!r}")

    # --- data -----------------------------------------------------------------------------------
    @property
    def max_length(self) -> int:
        return self.T

    def draw_length(self, rng) -> int:
        return self.max_length  # fixed-length tasks; variable-length ones override

    def generate(self, rng, batch_size: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one batch of the given length; synthetic tasks write this."""
        raise NotImplementedError

    def draw(self, rng, batch_size: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Synthetic tasks have one distribution for every split: only the seed stream differs."""
        return self.generate(rng, batch_size, self.draw_length(rng))

    def sample(self, batch_size: int, seed: int, split: str = "train") -> Batch:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed splits: {sorted(SPLITS)}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        rng = np.random.default_rng([int(seed), SPLITS[split]])
        x, y = self.draw(rng, int(batch_size), split)
        y_dtype = np.float32 if self.loss_kind == "mse" else np.int64
        return Batch(np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=y_dtype))

    # --- evaluation -----------------------------------------------------------------------------
    def loss(self, pred, y) -> float:
        return losses.numpy_loss(self.loss_kind, pred, y)

    def error(self, pred, y) -> float:
        """Fraction of sequences counted as errors; default: argmax of the logits is wrong."""
        losses.check_shapes(self.loss_kind, np.shape(pred), np.shape(y))
        return float(np.mean(np.argmax(pred, axis=-1) != y))

    def solved(self, eval_loss: float, eval_error: float) -> bool:
        metric = eval_error if self.solve_on == "error" else eval_loss
        return bool(metric < self.options["solve_threshold"])  # NaN -> False

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, T={self.T}, options={self.options})"


class PascanuTask(Task):
    """Tasks of Pascanu et al. 2013: one length per batch, uniform in [T, 1.1T)."""

    @property
    def max_length(self) -> int:
        return self.T + max(1, self.T // 10) - 1

    def draw_length(self, rng) -> int:
        return int(rng.integers(self.T, self.max_length + 1))


def window(L: int, lo_tenths: int, hi_tenths: int) -> tuple[int, int]:
    """The integer window [lo/10 L, hi/10 L); integer arithmetic avoids 0.1*L rounding."""
    return L * lo_tenths // 10, L * hi_tenths // 10


def _check_type(task, key, value, default):
    """Options take the type of their default; an int is accepted where a float is expected."""
    if isinstance(default, float):
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"task '{task}': option '{key}' must be {type(default).__name__}, "
                         f"got {type(value).__name__} {value!r}")
