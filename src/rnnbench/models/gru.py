"""GRU (Cho et al. 2014) as nn.GRU: gate rows r, z, n.

n_t = tanh(W_in x + b_in + r_t * (W_hn h + b_hn)),  h_t = (1 - z_t) * n_t + z_t * h_{t-1}.
"""
from __future__ import annotations

from torch import nn

from ..cell_table import GATE_COUNT


def build(input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, cfg) -> nn.Module:
    gru = nn.GRU(input_size, hidden_size, num_layers, batch_first=True,
                 bidirectional=bidirectional)
    gru.gate_count = GATE_COUNT["gru"]
    return gru

