"""The plain (Elman) RNN: s_t = f(W_ih x_t + b_ih + W_hh s_{t-1} + b_hh).

nn.RNN offers only tanh and relu; any other registered activation runs in LoopRNN, a
hand-written loop with exactly nn.RNN's parameter names, shapes, init and semantics.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..cell_table import GATE_COUNT
from .activations import get_activation

FUSED = ("tanh", "relu")  # the nonlinearities nn.RNN (cuDNN) implements


class LoopRNN(nn.Module):
    """nn.RNN(batch_first=True) for any registered elementwise activation, as a Python loop."""

    gate_count = GATE_COUNT["rnn"]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bidirectional: bool = False,
                 device=None, dtype=None):
        super().__init__()
        get_activation(nonlinearity)  # fail early on an unknown name
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.nonlinearity = nonlinearity  # a name, looked up at forward: the module pickles
        self.bidirectional = bidirectional
        self.batch_first = True
        factory = {"device": device, "dtype": dtype}
        dirs = 2 if bidirectional else 1
        # same creation order as nn.RNNBase: per layer, per direction: w_ih, w_hh, b_ih, b_hh
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else hidden_size * dirs
            for direction in range(dirs):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                self.register_parameter(
                    "weight_ih" + suffix,
                    nn.Parameter(torch.empty(hidden_size, layer_input_size, **factory)))
                self.register_parameter(
                    "weight_hh" + suffix, nn.Parameter(torch.empty(hidden_size, hidden_size, **factory)))
                self.register_parameter("bias_ih" + suffix, nn.Parameter(torch.empty(hidden_size, **factory)))
                self.register_parameter("bias_hh" + suffix, nn.Parameter(torch.empty(hidden_size, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch's RNN rule: every parameter U(-1/sqrt(H), 1/sqrt(H))
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None):
        if input.dim() != 3:
            raise ValueError(f"LoopRNN expects batch-first input (B, L, I), got shape {tuple(input.shape)}")
        batch, length, _ = input.shape
        dirs = 2 if self.bidirectional else 1
        if hx is None:
            hx = input.new_zeros(self.num_layers * dirs, batch, self.hidden_size)
        f = get_activation(self.nonlinearity).fn
        layer_input, h_n = input, []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(dirs):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                w_hh = getattr(self, "weight_hh" + suffix)
                # the input projection of all steps in one matmul: only W_hh h is sequential
                xw = F.linear(layer_input, getattr(self, "weight_ih" + suffix),
                              getattr(self, "bias_ih" + suffix)) + getattr(self, "bias_hh" + suffix)
                h = hx[layer * dirs + direction]
                steps = range(length - 1, -1, -1) if direction == 1 else range(length)
                states = [None] * length
                for t in steps:
                    h = f(xw[:, t] + F.linear(h, w_hh))
                    states[t] = h
                outputs.append(torch.stack(states, dim=1))
                h_n.append(h)
            layer_input = torch.cat(outputs, dim=2) if dirs == 2 else outputs[0]
        return layer_input, torch.stack(h_n)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"nonlinearity={self.nonlinearity!r}, bidirectional={self.bidirectional}")


def build(input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, cfg,
          fused: bool | None = None) -> nn.Module:
    """nn.RNN for tanh/relu (fused=None or True), LoopRNN otherwise or when fused=False."""
    activation = cfg.activation
    if fused is None:
        fused = activation in FUSED
    if fused and activation not in FUSED:
        raise ValueError(f"field 'activation': nn.RNN implements only {list(FUSED)}, got {activation!r}")
    if not fused:
        return LoopRNN(input_size, hidden_size, num_layers, nonlinearity=activation,
                       bidirectional=bidirectional)
    rnn = nn.RNN(input_size, hidden_size, num_layers, nonlinearity=activation,
                 batch_first=True, bidirectional=bidirectional)
    rnn.gate_count = GATE_COUNT["rnn"]
    return rnn

