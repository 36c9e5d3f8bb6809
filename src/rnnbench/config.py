"""Run configuration: one dataclass, validated before any compute starts.

A run is one (task, model, training) combination with one seed. Every field becomes a column of
the result tables, so a new axis is a new field here and nothing else.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields

from . import optim

OPTIMIZERS = tuple(optim.OPTIMIZERS)   # the training rules' tables (rnnbench.optim)
CLIPS = tuple(optim.CLIP_MODES)
BACKENDS = ("auto", "torch", "numba", "ensemble")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")
PRECISIONS = ("fp32", "tf32", "bf16")
ID_WHILE_ON = ("match_params", "regularizer")  # fields that enter the run id only when set (see run_id)


@dataclass(frozen=True)
class RunConfig:
    # what to learn
    task: str = "adding"
    T: int = 50
    task_options: dict = field(default_factory=dict)
    # the model
    cell: str = "rnn"               # models.cells(): rnn, lstm, gru, user methods
    activation: str = "tanh"        # rnn only: models.activations()
    hidden: int = 50
    match_params: int = 0           # > 0: sets hidden (overriding it) to the size whose model
                                    # has the closest parameter count (models.resolve_hidden)
    layers: int = 1
    bidirectional: bool = False
    forget_bias: float = 0.0        # lstm: added to the forget-gate bias after init
    init: str = "default"           # init_schemes.schemes()
    init_scale: float | None = None  # sigma for normal, rho for spectral/smart, gain otherwise
    # optimisation
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9           # momentum (sgd+momentum), beta1 (adam), alpha (rmsprop)
    clip: str = "none"              # none | norm (global norm) | value (elementwise)
    clip_threshold: float = 1.0
    regularizer: float = 0.0        # alpha of Pascanu 2013's Omega (rnnbench.regularizer); 0: off
    batch_size: int = 20
    steps: int = 1000
    eval_interval: int = 100
    eval_size: int = 1000           # fresh held-out sequences per evaluation
    eval_seed: int = 2_000_000_011  # fixed: every run is evaluated on the same sequences
    early_stop: bool = True         # stop at the first evaluation where the task is solved
    divergence_factor: float = 1e3  # loss above factor x max(initial loss, baseline) = diverged
    seed: int = 0
    # where and how it computes
    backend: str = "auto"           # auto: numba on CPU where it applies, torch otherwise
    device: str = "auto"            # auto: cuda if present
    dtype: str = "float32"
    precision: str = "fp32"         # GPU matmul precision policy
    diagnostics_every: int = 0      # gradient-flow profile every N steps (0: start and end only)
    checkpoint_every: int = 0       # 0: no checkpoints
    method: str = ""                # label of the method (filled from the study's method name)

    def __post_init__(self):
        validate(self)

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict, where: str = "config") -> "RunConfig":
        """Build from a plain dict, rejecting unknown keys and wrong types with a clear message."""
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected a mapping of run fields, got {type(values).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(
                f"{where}: unknown config key(s) {unknown}; allowed keys: {sorted(known)}")
        hints = field_types()
        coerced = {k: coerce_field(k, v, hints[k], where) for k, v in values.items()}
        return cls(**coerced)

    def to_dict(self) -> dict:
        """Every field by name, as dataclasses.asdict gives it: mutable values (task_options)
        deep-copied, the others as they are (asdict copies those recursively too, which took
        most of the time of a run id)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if isinstance(value, (dict, list)):
                values[name] = copy.deepcopy(value)
        return values

    def replace(self, **changes) -> "RunConfig":
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def run_id(self) -> str:
        """A short stable hash of every field: the same config always has the same id.
        Fields of ID_WHILE_ON are left out while off (0), so that runs which do not use them
        kept the ids they had before those fields existed."""
        values = self.to_dict()
        for name in ID_WHILE_ON:
            if not values[name]:
                del values[name]
        blob = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def record(self) -> dict:
        """The config as flat result-table columns (task_options as JSON text)."""
        d = self.to_dict()
        d["task_options"] = json.dumps(d["task_options"], sort_keys=True)
        if d["init_scale"] is None:
            d["init_scale"] = math.nan
        return d


def field_names() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def coerce_field(key, value, hint, where):
    """Check a value against the field's annotation; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    allowed = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ValueError(f"{where}: field '{key}' must not be null")
    for t in allowed:
        if t is type(None):
            continue
        if t is bool:
            if isinstance(value, bool):
                return value
        elif t is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif t is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif t is str:
            if isinstance(value, str):
                return value
        elif t is dict:
            if isinstance(value, dict):
                return dict(value)
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise ValueError(
        f"{where}: field '{key}' must be {names}, got {type(value).__name__} {value!r}"
        + _yaml_number_hint(value, allowed))


# A number in exponent form; YAML 1.1 (PyYAML, Snakemake) reads it as text unless it has a
# decimal point and a signed exponent (1.0e-3), so `lr: 1e-3` arrives as the string '1e-3'.
EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
YAML_NUMBER_HINT = ("YAML reads a number in exponent form without a decimal point, like 1e-3,"
                    " as text: write 0.001 or 1.0e-3")


def _yaml_number_hint(value, allowed) -> str:
    if isinstance(value, str) and {int, float} & set(allowed) and EXPONENT_NUMBER.fullmatch(value):
        return f" ({YAML_NUMBER_HINT})"
    return ""


def merge_settings(values, defaults: dict, key: str, where: str) -> dict:
    """A study's settings mapping (e.g. `chunks`, `ensemble`) with its defaults filled in;
    ValueError naming `key` for a non-mapping, an unknown sub-key or a non-boolean `enabled`."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: '{key}' must be a mapping, got {type(values).__name__}")
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} in '{key}'; "
                         f"allowed: {list(defaults)}")
    merged = {**defaults, **values}
    if "enabled" in merged and not isinstance(merged["enabled"], bool):
        raise ValueError(f"{where}: '{key}.enabled' must be true or false")
    return merged


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"field '{name}': unknown value {value!r}; allowed: {sorted(allowed)}")


@functools.cache
def field_types() -> types.MappingProxyType:
    """RunConfig's field name -> type (read-only). Resolved once: typing.get_type_hints
    evaluates every annotation string again at each call, and every RunConfig built is checked
    against them."""
    return types.MappingProxyType(typing.get_type_hints(RunConfig))


def validate(cfg: RunConfig) -> None:
    """Value checks that need no compute (nor torch: the registries' names hold none)."""
    hints = field_types()
    for f in fields(RunConfig):  # type check also for direct construction
        coerce_field(f.name, getattr(cfg, f.name), hints[f.name], "config")
    positive = ("T", "hidden", "layers", "batch_size", "steps", "eval_interval", "eval_size")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"field '{name}' must be > 0, got {getattr(cfg, name)}")
    for name in ("match_params", "diagnostics_every", "checkpoint_every", "seed"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"field '{name}' must be >= 0, got {getattr(cfg, name)}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ValueError(f"field 'lr' must be a positive finite number, got {cfg.lr}")
    if not (cfg.clip_threshold > 0 and math.isfinite(cfg.clip_threshold)):
        raise ValueError(f"field 'clip_threshold' must be > 0, got {cfg.clip_threshold}")
    if not (cfg.regularizer >= 0 and math.isfinite(cfg.regularizer)):
        raise ValueError(f"field 'regularizer' must be >= 0 and finite, got {cfg.regularizer}")
    if not 0 <= cfg.momentum < 1:
        raise ValueError(f"field 'momentum' must be in [0, 1), got {cfg.momentum}")
    if cfg.divergence_factor <= 1:
        raise ValueError(f"field 'divergence_factor' must be > 1, got {cfg.divergence_factor}")
    if cfg.init_scale is not None and not (cfg.init_scale > 0 and math.isfinite(cfg.init_scale)):
        raise ValueError(f"field 'init_scale' must be > 0, got {cfg.init_scale}")
    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("clip", cfg.clip, CLIPS)
    _choice("backend", cfg.backend, BACKENDS)
    _choice("device", cfg.device, DEVICES)
    _choice("dtype", cfg.dtype, DTYPES)
    _choice("precision", cfg.precision, PRECISIONS)

    from . import init_schemes, models, tasks  # registries (no torch); lazy: a light import
    _choice("task", cfg.task, tasks.names())
    _choice("init", cfg.init, init_schemes.schemes())
    models.check_options(cfg)      # cell and activation known, options the cell accepts
    tasks.check(cfg.task, cfg.T, cfg.task_options)  # impossible lengths, unknown task options
    if cfg.regularizer:
        from .regularizer import check
        check(cfg)                 # Omega: single-layer rnn cell, Numba or torch backend
