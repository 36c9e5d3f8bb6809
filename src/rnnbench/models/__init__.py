"""Recurrent cells, their registry, and the model that puts a readout head on a stack.

A cell is registered (registry.py) with a builder `(input_size, hidden_size, num_layers,
bidirectional, cfg) -> nn.Module` whose `forward(x)` takes batch-first (B, L, I) and returns
`(output (B, L, H * dirs), h_n)`, with PyTorch's parameter names and layouts (`weight_ih_l{k}`,
`weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`, `_reverse` suffix) and the attributes
`gate_count`, `hidden_size`, `num_layers`, `bidirectional` (and `forget_gate`, the index of the
forget-gate row block, for cells that have one). One file defines a built-in cell's `build`
(rnn.py, lstm.py, gru.py); registry.py registers them by name, importing the file when a model
is first built.

A plug-in cell (rnnbench.plugins) has a smaller contract: an `nn.Module` subclass
`cls(input_size, hidden_size, cfg)` whose `forward(x)` maps (B, L, input_size) to (B, L,
hidden_size) (or returns `(h, state)`), registered with `@register_cell("name")` or
`register_cell("name", cls)`; `PluginStack` (plugin.py) gives it layers, directions and the
stack's attributes.

`options` names the RunConfig fields a cell understands beyond the common ones:
"activation" (rnn) and "forget_bias" (lstm). A cell without "activation" accepts only the
default "tanh" (its nonlinearities are fixed); a cell without "forget_bias" accepts only 0.

Importing this package imports no torch: the registries of cells and activations answer a
study's checks (in the Snakemake process too) on their own, and the names that build models
(`build`, `count_params`, `SequenceModel`, ...) import their modules, and torch, when first
used (PEP 562 `__getattr__`).
"""
from __future__ import annotations

import importlib

from .activations import (Activation, activations, derivative_bound, get_activation,
                          register_activation)
from .registry import (Cell, cells, cells_with, check_options, get_cell, is_builtin, is_plugin,
                       register_cell)

# name -> the submodule that defines it (each imports torch)
_LAZY = {
    "SequenceModel": "network", "gate_blocks": "network", "spectral_radius": "network",
    "PluginStack": "plugin", "LoopRNN": "rnn",
    **dict.fromkeys(("DTYPES", "build", "count_params", "match_hidden", "resolve_hidden",
                     "check_plugin_cell", "MAX_HIDDEN", "TRAINING_FIELDS"), "construct"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # once: later look-ups find it directly
    return value


__all__ = [
    "Activation", "Cell", "LoopRNN", "PluginStack", "SequenceModel", "activations", "build",
    "cells", "cells_with", "check_options", "check_plugin_cell", "count_params",
    "derivative_bound", "gate_blocks", "get_activation", "get_cell", "is_builtin", "is_plugin",
    "match_hidden",
    "register_activation", "register_cell", "resolve_hidden", "spectral_radius",
]
