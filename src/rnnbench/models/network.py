"""SequenceModel: a recurrent stack (`.rnn`) and a linear readout (`.head`)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..spectral import gated_spectral_radius


class SequenceModel(nn.Module):
    """x (B, L, I) -> (B, out) from the last step, or (B, L, out) on every step (`per_step`).

    For a bidirectional stack the last step's output is [forward h_L, backward h'_L]: the
    backward half has then read only x_L (o_t = g(V s_t + V' s'_t), docs/science/model-and-bptt.md §4).
    """

    def __init__(self, rnn: nn.Module, head: nn.Linear, per_step: bool,
                 cell: str = "", activation: str = ""):
        super().__init__()
        self.rnn = rnn
        self.head = head
        self.per_step = per_step
        self.cell = cell              # registry name, for diagnostics and records
        self.activation = activation  # the rnn nonlinearity ("tanh" for gated cells)

    def forward(self, x: torch.Tensor, hx=None) -> torch.Tensor:
        output, _ = self.rnn(x) if hx is None else self.rnn(x, hx)
        return self.readout(output)

    def readout(self, output: torch.Tensor) -> torch.Tensor:
        """Head on the stack's output (B, L, H*dirs); split out so diagnostics can hook the states."""
        return self.head(output if self.per_step else output[:, -1])

    def recurrent_matrices(self) -> list[torch.Tensor]:
        """Every weight_hh* (all layers and directions; in a plug-in stack, every parameter
        whose own name starts with weight_hh), in parameter order."""
        return [p for name, p in self.rnn.named_parameters()
                if name.rsplit(".", 1)[-1].startswith("weight_hh")]


def gate_blocks(weight: torch.Tensor, gate_count: int) -> list[torch.Tensor]:
    """Split a (G*H, n) weight into its G row blocks (H, n): LSTM i,f,g,o; GRU r,z,n."""
    if weight.shape[0] % gate_count:
        raise ValueError(f"weight with {weight.shape[0]} rows does not split into {gate_count} gates")
    return list(weight.chunk(gate_count, dim=0))


@torch.no_grad()
def spectral_radius(model: nn.Module) -> float:
    """max |eigenvalue| of the first layer's forward recurrent matrix, weight_hh_l0.

    For gated cells the max over the gate blocks (each H x H) of their spectral radii; for the
    plain rnn (one block) the spectral radius of weight_hh_l0 itself. Accepts a SequenceModel or
    a bare stack. Computed in float64 on the CPU. A plug-in stack's `recurrent_weight()` (the
    first weight_hh* parameter of layer 0, else the cell's derived `weight_hh` matrix) stands
    for weight_hh_l0; NaN when it has none or its blocks are not square.
    """
    rnn = getattr(model, "rnn", model)
    weight = getattr(rnn, "weight_hh_l0", None)
    if weight is None and hasattr(rnn, "recurrent_weight"):
        weight = rnn.recurrent_weight()
    if weight is None or weight.dim() != 2 or weight.shape[0] != rnn.gate_count * weight.shape[1]:
        return math.nan
    return gated_spectral_radius(weight, rnn.gate_count)
