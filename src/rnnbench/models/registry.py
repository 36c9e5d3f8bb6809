"""The cell registry: `register_cell` and what the rest of the suite asks about cells.

The built-in cells (cell_table.BUILTIN_CELLS) are registered here by name, each with a builder
that imports its module (rnn.py, lstm.py, gru.py: its `build`) at the first call; plug-ins
register their classes. No torch import: a study's cells and options are checked without it
(see the package's docstring for the two builder contracts).
"""
from __future__ import annotations

import importlib
import math
import sys
from dataclasses import dataclass
from typing import Callable

from ..cell_table import BUILTIN_CELLS, BUILTIN_OPTIONS
from ..registry import (BUILTIN, ENTRY_POINT_GROUP, ENV_VAR, METHODS_DIR, note_registration,
                        origin)
from .activations import get_activation

CELL_OPTIONS = ("activation", "forget_bias")  # the per-cell fields check_options knows about
DEFAULT_ACTIVATION = "tanh"


@dataclass(frozen=True)
class Cell:
    name: str
    builder: Callable  # -> nn.Module
    options: frozenset
    plugin: bool = False  # builder is a plug-in cell class, wrapped in PluginStack


_CELLS: dict[str, Cell] = {}


def register_cell(name: str, builder: Callable | None = None, options=(),
                  overwrite: bool = False) -> Callable:
    """Make `name` usable as `RunConfig.cell`.

    `builder` is either a plug-in cell class (an `nn.Module` subclass, see rnnbench.models'
    docstring), or any other callable: a stack builder with the built-ins' contract, which may
    name `options` from CELL_OPTIONS. Without `builder` this returns a class decorator."""
    if builder is None:
        def _registering(obj):
            register_cell(name, obj, options=options, overwrite=overwrite)
            return obj
        return _registering
    if not isinstance(name, str) or not name:
        raise ValueError(f"cell name must be a non-empty string, got {name!r}")
    if not callable(builder):
        raise ValueError(f"cell {name!r}: builder must be callable")
    unknown = sorted(set(options) - set(CELL_OPTIONS))
    if unknown:
        raise ValueError(f"cell {name!r}: unknown option(s) {unknown}; known: {list(CELL_OPTIONS)}")
    plugin = _is_module_class(builder)
    if plugin and options:
        raise ValueError(f"cell {name!r}: a plug-in cell class takes no options {list(options)} "
                         "(its nonlinearities and gates are its own)")
    note_registration("cell", name, _CELLS, overwrite)
    _CELLS[name] = Cell(name, builder, frozenset(options), plugin)
    return builder


def _is_module_class(builder) -> bool:
    """An nn.Module subclass (a plug-in cell). Without torch imported, nothing can be one."""
    torch = sys.modules.get("torch")
    return (torch is not None and isinstance(builder, type)
            and issubclass(builder, torch.nn.Module))


class BuiltinBuilder:
    """The `build` of the built-in cell's module rnnbench.models.<cell>, imported (with torch)
    at the first call."""

    def __init__(self, cell: str):
        self.cell = cell

    def __call__(self, *args, **kwargs):
        return importlib.import_module(f"{__package__}.{self.cell}").build(*args, **kwargs)

    def __repr__(self):
        return f"BuiltinBuilder({self.cell!r})"


def cells() -> list[str]:
    return list(_CELLS)


def is_plugin(name: str) -> bool:
    """Whether cell `name` is a plug-in cell class (trained by the torch backend only)."""
    return name in _CELLS and _CELLS[name].plugin


def is_builtin(name: str) -> bool:
    """Whether cell `name` is rnnbench's own rnn/lstm/gru (not a plug-in registered over it):
    what the Numba kernels implement."""
    return name in _CELLS and isinstance(_CELLS[name].builder, BuiltinBuilder)


def get_cell(name: str) -> Cell:
    """The registered cell `name` (check_options first for a readable error)."""
    return _CELLS[name]


def _registered() -> str:
    return ", ".join(name if origin("cell", name) == BUILTIN
                     else f"{name} (from {origin('cell', name)})" for name in _CELLS)


def cells_with(option: str) -> list[str]:
    return [name for name, cell in _CELLS.items() if option in cell.options]


def check_options(cfg) -> None:
    """Raise ValueError, naming the field, for options the chosen cell cannot honour."""
    if cfg.cell not in _CELLS:
        raise ValueError(
            f"field 'cell': unknown value {cfg.cell!r}; registered cells: {_registered()}. "
            f"A new cell is registered by a plug-in file: in {METHODS_DIR}/ of the "
            f"working directory, in the study's 'plugins:', in ${ENV_VAR}, or an "
            f"installed '{ENTRY_POINT_GROUP}' entry point")
    cell = _CELLS[cfg.cell]
    if cell.plugin and getattr(cfg, "backend", "auto") in ("numba", "ensemble"):
        raise ValueError(
            f"field 'backend': {cfg.backend!r} has kernels for the built-in rnn/lstm/gru only; "
            f"cell {cfg.cell!r} is a plug-in (from {origin('cell', cfg.cell)}): "
            "use backend torch or auto")
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


for _cell in BUILTIN_CELLS:  # in this order: the order of cells()
    register_cell(_cell, BuiltinBuilder(_cell), options=BUILTIN_OPTIONS[_cell])
