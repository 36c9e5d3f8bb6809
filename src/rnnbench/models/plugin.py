"""PluginStack: a plug-in cell class made to look like the built-in stacks (nn.RNN's interface).

The plug-in contract (rnnbench.plugins, methods/template_cell.py):

    cls(input_size: int, hidden_size: int, cfg)   # cfg: the RunConfig
    forward(x)   # x (B, L, input_size) -> h (B, L, hidden_size), or (h, state)

The stack supplies the rest: `num_layers` instances in sequence (layer k > 0 reads the
previous layer's output, input_size = hidden_size * dirs) and, for `bidirectional`, a second
instance per layer that reads the reversed sequence, its output flipped back and concatenated
after the forward one, as nn.RNN does. The attributes are those of the built-in stacks:
`hidden_size`, `num_layers`, `bidirectional`, and `gate_count`, the number of row blocks a
`weight_hh*` parameter splits into for the init schemes and the spectral radius: the cell
class's own `gate_count` attribute if it has one, else 1.

Instances live in `self.cells` under nn.RNN's suffixes (`l0`, `l0_reverse`, `l1`, ...), so the
parameters are named `cells.l0.<the cell's names>`.

Optional, per cell class: `after_step()`, which `after_step` here calls on every instance (the
torch backend does after each optimiser step), and a `weight_hh` attribute (a property or
buffer) that `recurrent_weight` returns when the cell has no weight_hh* parameter.
"""
from __future__ import annotations

import torch
from torch import nn


class PluginStack(nn.Module):
    is_plugin = True  # rnnbench.init touches only weight_hh* parameters of such a stack

    def __init__(self, cell_class: type, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, cfg=None, name: str = "", source: str = ""):
        super().__init__()
        self.cell_name = name or cell_class.__name__
        self.where = f"cell {self.cell_name!r}" + (f" (from {source})" if source else "")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.batch_first = True
        self.gate_count = int(getattr(cell_class, "gate_count", 1))
        dirs = 2 if bidirectional else 1
        self.cells = nn.ModuleDict()
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size * dirs
            for direction in range(dirs):
                key = f"l{layer}" + ("_reverse" if direction else "")
                try:
                    cell = cell_class(size, hidden_size, cfg)
                except Exception as exc:
                    raise ValueError(f"{self.where}: {cell_class.__name__}({size}, {hidden_size}, "
                                     f"cfg) raised {type(exc).__name__}: {exc}") from exc
                self.cells[key] = cell

    def forward(self, input: torch.Tensor, hx=None):
        """(output (B, L, H * dirs), h_n (num_layers * dirs, B, H)) like nn.RNN(batch_first)."""
        output, h_n, _ = self.run(input, hx)
        return output, h_n

    def run(self, input: torch.Tensor, hx=None):
        """forward, plus the output sequence of layer 0's forward instance (diagnostics)."""
        if hx is not None:
            raise ValueError(f"{self.where}: a plug-in cell starts from its own initial state; "
                             "an initial hidden state hx is not supported")
        if input.dim() != 3:
            raise ValueError(f"{self.where}: expects batch-first input (B, L, I), "
                             f"got shape {tuple(input.shape)}")
        layer_input, h_n, first = input, [], None
        for layer in range(self.num_layers):
            forward = self._call(f"l{layer}", layer_input)
            outputs, h_n = [forward], h_n + [forward[:, -1]]
            if layer == 0:
                first = forward
            if self.bidirectional:
                backward = self._call(f"l{layer}_reverse", layer_input.flip(1)).flip(1)
                outputs.append(backward)
                h_n.append(backward[:, 0])  # the reverse instance ends at step 0
            layer_input = torch.cat(outputs, dim=2) if len(outputs) == 2 else forward
        return layer_input, torch.stack(h_n), first

    def _call(self, key: str, x: torch.Tensor) -> torch.Tensor:
        out = self.cells[key](x)
        if isinstance(out, (tuple, list)) and len(out) > 0:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"{self.where}: forward must return a tensor h (B, L, hidden_size) "
                             f"or a tuple (h, state), got {type(out).__name__}")
        expected = (x.shape[0], x.shape[1], self.hidden_size)
        if tuple(out.shape) != expected:
            raise ValueError(f"{self.where}: forward returned shape {tuple(out.shape)} for input "
                             f"{tuple(x.shape)}; expected (B, L, hidden_size) = {expected}")
        if out.dtype != x.dtype and not _autocasting(out.device.type):
            raise ValueError(f"{self.where}: forward returned {out.dtype} for {x.dtype} input; "
                             "create new tensors like the input (x.new_zeros(...), "
                             "dtype=x.dtype, device=x.device)")
        return out

    def recurrent_weight(self) -> torch.Tensor | None:
        """The first weight_hh* parameter of layer 0's forward instance, else its `weight_hh`
        attribute when that is a matrix the cell derives from other parameters (a property
        or buffer, which the init schemes do not touch), else None."""
        cell = self.cells["l0"]
        for name, p in cell.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("weight_hh"):
                return p
        derived = getattr(cell, "weight_hh", None)
        return derived if isinstance(derived, torch.Tensor) else None

    @torch.no_grad()
    def after_step(self) -> None:
        """Call `after_step()` of every cell instance that defines it (the torch backend does
        this after each optimiser step): where a cell projects its parameters back onto a
        constraint set, e.g. IndRNN's |u| <= 2^(1/T)."""
        for cell in self.cells.values():
            hook = getattr(cell, "after_step", None)
            if callable(hook):
                hook()

    def extra_repr(self) -> str:
        return (f"{self.cell_name!r}, {self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, bidirectional={self.bidirectional}")


def _autocasting(device_type: str) -> bool:
    """Under autocast (precision bf16) a cell's output may be in the lower precision."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # older torch: no device argument
        return torch.is_autocast_enabled()
