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

import math
from dataclasses import dataclass

import numpy as np

from .. import plugins
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


REGISTRY: dict[str, type[Task]] = {}


def register_task(name=None, cls: type[Task] | None = None, *, overwrite: bool = False):
    """Make a Task subclass usable as `RunConfig.task`: `register_task("name", cls)`, or as a
    decorator, `@register_task("name")` or `@register_task` (the class's own `name`)."""
    if isinstance(name, type):  # bare decorator
        return register_task(None, name, overwrite=overwrite)
    if cls is None:
        def _registering(task_class):
            register_task(name, task_class, overwrite=overwrite)
            return task_class
        return _registering
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"task {name!r}: expected a subclass of rnnbench.tasks.Task, got {cls!r}")
    own = cls.__dict__.get("name", "")
    name = own if name is None else name
    if not isinstance(name, str) or not name:
        raise ValueError(f"task class {cls.__name__}: give a name (register_task('name', cls) "
                         "or the class attribute `name`)")
    if own and own != name:
        raise ValueError(f"task {name!r}: class {cls.__name__} is named {own!r}")
    if cls.loss_kind not in losses.KINDS:
        raise ValueError(f"task {name!r}: loss_kind must be one of {list(losses.KINDS)}, "
                         f"got {cls.loss_kind!r}")
    plugins.note_registration("task", name, REGISTRY, overwrite)
    cls.name = name
    REGISTRY[name] = cls
    return cls


# The task families import Task and register_task from here, so they come after both; each
# registers its tasks (registration order is irrelevant: names() sorts).
from .adding import Adding, AddingHS97, AddingPascanu, Multiplication  # noqa: E402,F401
from .copy import Copy  # noqa: E402,F401
from .digits import Digits, DigitsPermuted  # noqa: E402,F401
from .latch import Latch  # noqa: E402,F401
from .memorization import Memorization  # noqa: E402,F401
from .permutation import Permutation  # noqa: E402,F401
from .temporal_order import TemporalOrder, TemporalOrder3Bit  # noqa: E402,F401


def names() -> list[str]:
    return sorted(REGISTRY)


def _lookup(name) -> type[Task]:
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; allowed tasks: {names()}")
    return REGISTRY[name]


def check(name: str, T: int, options: dict | None = None) -> None:
    """Raise ValueError for an unknown task, an impossible T or a bad option; builds no data."""
    _lookup(name).check(T, options)


def make(name: str, T: int, **options) -> Task:
    return _lookup(name)(T, **options)
