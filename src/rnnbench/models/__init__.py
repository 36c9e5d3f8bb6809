"""Recurrent cells, their registry, and the model that puts a readout head on a stack.

A cell is registered with a builder `(input_size, hidden_size, num_layers, bidirectional, cfg)
-> nn.Module` whose `forward(x)` takes batch-first (B, L, I) and returns
`(output (B, L, H * dirs), h_n)`, with PyTorch's parameter names and layouts (`weight_ih_l{k}`,
`weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`, `_reverse` suffix) and the attributes
`gate_count`, `hidden_size`, `num_layers`, `bidirectional` (and `forget_gate`, the index of the
forget-gate row block, for cells that have one). One file defines a cell and registers it, so a
user method adds a cell the same way (see rnn.py, lstm.py, gru.py).

`options` names the RunConfig fields a cell understands beyond the common ones:
"activation" (rnn) and "forget_bias" (lstm). A cell without "activation" accepts only the
default "tanh" (its nonlinearities are fixed); a cell without "forget_bias" accepts only 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .activations import (Activation, activations, derivative_bound, get_activation,
                          register_activation)
from .network import SequenceModel, gate_blocks, spectral_radius

CELL_OPTIONS = ("activation", "forget_bias")  # the per-cell fields check_options knows about
DEFAULT_ACTIVATION = "tanh"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Cell:
    name: str
    builder: Callable[..., nn.Module]
    options: frozenset


_CELLS: dict[str, Cell] = {}


def register_cell(name: str, builder: Callable[..., nn.Module], options=(),
                  overwrite: bool = False) -> Callable:
    """Make `name` usable as `RunConfig.cell`; `options` from CELL_OPTIONS."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"cell name must be a non-empty string, got {name!r}")
    if not callable(builder):
        raise ValueError(f"cell {name!r}: builder must be callable")
    unknown = sorted(set(options) - set(CELL_OPTIONS))
    if unknown:
        raise ValueError(f"cell {name!r}: unknown option(s) {unknown}; known: {list(CELL_OPTIONS)}")
    if name in _CELLS and not overwrite:
        raise ValueError(f"cell {name!r} is already registered")
    _CELLS[name] = Cell(name, builder, frozenset(options))
    return builder


def cells() -> list[str]:
    return list(_CELLS)


def cells_with(option: str) -> list[str]:
    return [name for name, cell in _CELLS.items() if option in cell.options]


def check_options(cfg) -> None:
    """Raise ValueError, naming the field, for options the chosen cell cannot honour."""
    if cfg.cell not in _CELLS:
        raise ValueError(f"field 'cell': unknown value {cfg.cell!r}; allowed: {sorted(_CELLS)}")
    cell = _CELLS[cfg.cell]
    get_activation(cfg.activation)  # unknown name -> "field 'activation': unknown value ..."
    if "activation" not in cell.options and cfg.activation != DEFAULT_ACTIVATION:
        raise ValueError(
            f"field 'activation': {cfg.activation!r} applies only to cell(s) "
            f"{cells_with('activation')}; cell {cfg.cell!r} has fixed nonlinearities "
            f"(leave activation at {DEFAULT_ACTIVATION!r})")
    if not math.isfinite(cfg.forget_bias):
        raise ValueError(f"field 'forget_bias' must be finite, got {cfg.forget_bias}")
    if "forget_bias" not in cell.options and cfg.forget_bias != 0:
        raise ValueError(
            f"field 'forget_bias': applies only to cell(s) {cells_with('forget_bias')}; "
            f"cell {cfg.cell!r} has no forget gate (leave forget_bias at 0)")


def build(cfg, task, **builder_kwargs) -> SequenceModel:
    """The recurrent stack of `cfg.cell` plus a linear head, in `cfg.dtype`, PyTorch's default init.

    Weights come from torch's global RNG here; `rnnbench.init.apply` re-draws them from a
    generator. `builder_kwargs` go to the cell builder (e.g. `fused=False` for rnn).
    """
    check_options(cfg)
    if cfg.dtype not in DTYPES:
        raise ValueError(f"field 'dtype': unknown value {cfg.dtype!r}; allowed: {sorted(DTYPES)}")
    rnn = _CELLS[cfg.cell].builder(task.input_dim, cfg.hidden, cfg.layers, cfg.bidirectional,
                                   cfg, **builder_kwargs)
    missing = [a for a in ("gate_count", "hidden_size", "num_layers", "bidirectional")
               if not hasattr(rnn, a)]
    if missing:
        raise TypeError(f"cell {cfg.cell!r}: the builder's module lacks attribute(s) {missing}")
    dirs = 2 if rnn.bidirectional else 1
    head = nn.Linear(rnn.hidden_size * dirs, task.output_dim)
    model = SequenceModel(rnn, head, per_step=bool(task.per_step), cell=cfg.cell,
                          activation=cfg.activation)
    return model.to(DTYPES[cfg.dtype])


# Built-in cells register themselves on import (after register_cell exists: they import it).
from . import rnn  # noqa: E402,F401  (registration order = cells() order)
from . import lstm  # noqa: E402,F401
from . import gru  # noqa: E402,F401
from .rnn import LoopRNN  # noqa: E402

__all__ = [
    "Activation", "Cell", "LoopRNN", "SequenceModel", "activations", "build", "cells",
    "cells_with", "check_options", "derivative_bound", "gate_blocks", "get_activation",
    "register_activation", "register_cell", "spectral_radius",
]
