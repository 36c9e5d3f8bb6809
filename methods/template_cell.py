"""Template: a new recurrent cell in one file. Copy it to methods/<your_cell>.py and edit.

Every `*.py` in methods/ (except files starting with `_` or `template_`, like this one) is
loaded by an rnnbench process (the Snakemake process, each job, `rnnbench validate/run`) whose
runs name a cell, activation, init or task that is not built in, and by `rnnbench list`. A
study can also name plug-in files elsewhere in its `plugins:` list (always loaded). `rnnbench list` shows what
the plug-ins registered; `rnnbench validate STUDY` builds each plug-in cell the study uses and
runs one forward and backward before anything trains.

The contract, all a cell has to provide:

    __init__(self, input_size: int, hidden_size: int, cfg)   # cfg: the run's RunConfig
    forward(self, x)   # x (B, L, input_size) float tensor -> h (B, L, hidden_size), same
                       # dtype and device as x; returning (h, state) is accepted too

The suite supplies the rest: the readout head and loss, `layers` (instances in sequence),
`bidirectional` (a second instance reads the reversed sequence), the optimiser, clipping,
parameter count and `match_params`, and the diagnostics. Parameters whose name starts with
`weight_hh` get the run's `init` scheme (orthogonal, identity, spectral, ...; "default" keeps
the cell's own initialisation below) and give the spectral radius; every other parameter keeps
the cell's own initialisation, drawn from the run's seed. A class attribute `gate_count = G`
says that weight_hh stacks G square blocks (as LSTM's i, f, g, o); the default is 1.

Two optional extras:

    after_step(self)   # called on every instance after each optimiser step (torch backend,
                       # without autograd): project parameters back onto a constraint, e.g.
                       # methods/indrnn.py clips its recurrent weights to |u| <= 2^(1/T)
    weight_hh          # a property (or buffer) giving a recurrent matrix the cell derives
                       # from other parameters (methods/exprnn.py: expm(A)); the suite reads
                       # it for the spectral radius when no weight_hh* parameter exists, and
                       # the init schemes leave it alone (it is not a parameter)

Name a recurrent parameter that is not an H x H matrix (a vector, a skew-symmetric matrix's
free entries) so that it does not start with weight_hh: the init schemes would re-draw it.
"""
import math

import torch
from torch import nn

from rnnbench import register_cell


@register_cell("template_elman")  # the name a study uses: `cell: template_elman`
class ElmanCell(nn.Module):
    """h_t = tanh(W_ih x_t + b + W_hh h_{t-1}), h_0 = 0."""

    def __init__(self, input_size: int, hidden_size: int, cfg):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)  # PyTorch's RNN rule
        nn.init.uniform_(self.weight_ih, -bound, bound)
        nn.init.uniform_(self.weight_hh, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xw = x @ self.weight_ih.T + self.bias  # every step's input projection in one matmul
        h = x.new_zeros(x.shape[0], self.hidden_size)  # like x: the run's dtype and device
        states = []
        # unbind, not xw[:, t]: the backward of each indexing would fill a zero tensor of
        # xw's full size, L times (quadratic in the length)
        for xw_t in xw.unbind(1):
            h = torch.tanh(xw_t + h @ self.weight_hh.T)
            states.append(h)
        # Stacking the per-step states lets the gradient-flow diagnostic follow dL/dh_t back
        # through the recurrence.
        return torch.stack(states, dim=1)
