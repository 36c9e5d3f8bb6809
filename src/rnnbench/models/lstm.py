"""LSTM (Hochreiter & Schmidhuber 1997) as nn.LSTM: gate rows i, f, g, o.

c_t = f_t * c_{t-1} + i_t * g_t,  h_t = o_t * tanh(c_t). The direct path dc_t/dc_{t-1} = diag(f_t)
keeps gradient where the forget gate is near 1; `forget_bias` (Jozefowicz 2015: 1) is added to
the forget-gate rows of bias_ih by rnnbench.init.apply.
"""
from __future__ import annotations

from torch import nn

from ..cell_table import FORGET_GATE, GATE_COUNT


def build(input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, cfg) -> nn.Module:
    lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True,
                   bidirectional=bidirectional)
    lstm.gate_count = GATE_COUNT["lstm"]
    lstm.forget_gate = FORGET_GATE  # the row block of every weight/bias that is the forget gate
    return lstm

