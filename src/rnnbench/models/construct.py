"""Building models: the stack of a registered cell with its readout head (`build`), parameter
counts, the hidden size matching a parameter budget (`match_params`), and the check of a
plug-in cell. Imports torch; rnnbench.models re-exports these names, importing this module on
first use.
"""
from __future__ import annotations

import dataclasses
import json
import types

import torch
from torch import nn

from ..registry import origin
from .network import SequenceModel
from .plugin import PluginStack
from .registry import check_options, get_cell

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build(cfg, task, **builder_kwargs) -> SequenceModel:
    """The recurrent stack of `cfg.cell` plus a linear head, in `cfg.dtype`, PyTorch's default init.

    Weights come from torch's global RNG here; `rnnbench.init.apply` re-draws them from a
    generator. `builder_kwargs` go to the cell builder (e.g. `fused=False` for rnn).
    """
    check_options(cfg)
    if cfg.dtype not in DTYPES:
        raise ValueError(f"field 'dtype': unknown value {cfg.dtype!r}; allowed: {sorted(DTYPES)}")
    cell = get_cell(cfg.cell)
    if cell.plugin:
        if builder_kwargs:
            raise TypeError(f"cell {cfg.cell!r}: builder options {sorted(builder_kwargs)} apply "
                            "to the built-in stacks only")
        rnn = PluginStack(cell.builder, task.input_dim, cfg.hidden, cfg.layers,
                          cfg.bidirectional, cfg, name=cfg.cell,
                          source=origin("cell", cfg.cell))
    else:
        rnn = cell.builder(task.input_dim, cfg.hidden, cfg.layers, cfg.bidirectional, cfg,
                           **builder_kwargs)
    missing = [a for a in ("gate_count", "hidden_size", "num_layers", "bidirectional")
               if not hasattr(rnn, a)]
    if missing:
        raise TypeError(f"cell {cfg.cell!r}: the builder's module lacks attribute(s) {missing}")
    dirs = 2 if rnn.bidirectional else 1
    head = nn.Linear(rnn.hidden_size * dirs, task.output_dim)
    model = SequenceModel(rnn, head, per_step=bool(task.per_step), cell=cfg.cell,
                          activation=cfg.activation)
    return model.to(DTYPES[cfg.dtype])


def count_params(cfg, task) -> int:
    """Parameters of the model `build(cfg, task)` (stack and head), without drawing weights
    where the cell allows it (the meta device); a cell that cannot be built there is built
    for real, outside the global random stream."""
    try:
        with torch.device("meta"):
            model = build(cfg, task)
    except Exception:
        with torch.random.fork_rng(devices=[]):
            model = build(cfg, task)
    return int(sum(p.numel() for p in model.parameters()))


MAX_HIDDEN = 1 << 16


def match_hidden(cfg, task) -> int:
    """The hidden size whose model has the parameter count closest to `cfg.match_params`
    (ties: the smaller size). Assumes the count grows with the hidden size, as it does for a
    stack of cells with a head: doubling, then bisection for the first size at or above the
    target, then the closer of it and its predecessor."""
    target = cfg.match_params
    if target <= 0:
        raise ValueError(f"field 'match_params' must be > 0 to pick a hidden size, got {target}")
    counts: dict[int, int] = {}

    def count(hidden: int) -> int:
        if hidden not in counts:
            counts[hidden] = count_params(_with_hidden(cfg, hidden), task)
        return counts[hidden]

    high = 1
    while count(high) < target:
        if high >= MAX_HIDDEN:
            raise ValueError(f"field 'match_params': {target} parameters need a hidden size "
                             f"above {MAX_HIDDEN} for cell {cfg.cell!r}")
        high *= 2
    low = high // 2  # count(low) < target, or low == 0
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target else (low, mid)
    if high > 1 and abs(count(high - 1) - target) <= abs(count(high) - target):
        return high - 1
    return high


def resolve_hidden(cfg):
    """`cfg` with `hidden` set by `match_params` (unchanged when match_params is 0). The same
    config always resolves to the same hidden size, so resolving twice changes nothing."""
    if not cfg.match_params:
        return cfg
    key = json.dumps({k: v for k, v in cfg.to_dict().items()
                      if k not in ("hidden", *TRAINING_FIELDS)}, sort_keys=True, default=str)
    if key not in _MATCHED:  # one search per model: a sweep of lr x seeds searches once
        from .. import tasks
        _MATCHED[key] = match_hidden(cfg, tasks.make(cfg.task, cfg.T, **cfg.task_options))
    return _with_hidden(cfg, _MATCHED[key]) if _MATCHED[key] != cfg.hidden else cfg


_MATCHED: dict[str, int] = {}
# Fields of the training loop, which never change a model's parameter count (a cell's shape
# must not depend on them): left out of the key of resolve_hidden's cache.
TRAINING_FIELDS = ("seed", "method", "optimizer", "lr", "momentum", "clip", "clip_threshold",
                   "batch_size", "steps", "eval_interval", "eval_size", "eval_seed",
                   "early_stop", "divergence_factor", "diagnostics_every", "checkpoint_every")


def _with_hidden(cfg, hidden: int):
    if dataclasses.is_dataclass(cfg):
        return dataclasses.replace(cfg, hidden=hidden)
    return types.SimpleNamespace(**{**vars(cfg), "hidden": hidden})


def check_plugin_cell(cfg, input_size: int, batch: int = 2, length: int = 3) -> None:
    """Build plug-in cell `cfg.cell` once (one layer, one direction, `cfg.hidden`, `cfg.dtype`)
    and run one forward and backward on `length` steps; a failure raises ValueError naming the
    plug-in's file. Runs outside the global random stream."""
    cell = get_cell(cfg.cell)
    if not cell.plugin:
        return
    dtype = DTYPES[cfg.dtype]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        stack = PluginStack(cell.builder, input_size, cfg.hidden, 1, False, cfg, name=cfg.cell,
                            source=origin("cell", cfg.cell))
        where = stack.where
        try:
            stack = stack.to(dtype)
            out, _ = stack(torch.randn(batch, length, input_size, dtype=dtype))
        except Exception as exc:
            if isinstance(exc, ValueError) and str(exc).startswith(where):
                raise  # the stack's own checks name the cell and its file
            raise ValueError(f"{where}: forward on input ({batch}, {length}, {input_size}) "
                             f"{dtype} raised {type(exc).__name__}: {exc}") from exc
        if not torch.isfinite(out).all():
            raise ValueError(f"{where}: forward returned non-finite values on a random "
                             f"input ({batch}, {length}, {input_size})")
        if not out.requires_grad:
            raise ValueError(f"{where}: forward's output does not depend on any parameter "
                             "that requires a gradient (detached, or no parameters?)")
        try:
            out.square().sum().backward()
        except Exception as exc:
            raise ValueError(f"{where}: backward through forward's output raised "
                             f"{type(exc).__name__}: {exc}") from exc
