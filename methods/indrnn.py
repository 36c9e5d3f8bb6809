"""IndRNN: independently recurrent neural network (Li et al. 2018, CVPR).

Paper: S. Li, W. Li, C. Cook, C. Zhu, Y. Gao, "Independently Recurrent Neural Network
(IndRNN): Building A Longer and Deeper RNN", CVPR 2018 (docs/science/papers.md §2).

Equations (one layer; the suite stacks `layers` of them and adds the readout head):

    h_t = relu(W x_t + u ⊙ h_{t-1} + b),   h_0 = 0

Each unit sees only its own past (u is a vector, the recurrent matrix is diag(u)), so the
gradient through k steps is Π u ⊙ relu'(.) per unit: |u| <= 2^{1/T} keeps it from growing by
more than a factor 2 over the T steps of a sequence.

Initialisation and constraint, as in the authors' adding-problem code
(IndRNN_Theano_Lasagne, adding/adding.py):
- u ~ U(0, 2^{1/T}) with T = the run's `T` (cfg.T);
- W ~ N(0, 0.001²) (Lasagne's Normal(0.001)), b = 0;
- after every optimiser step u is clipped to [-2^{1/T}, 2^{1/T}] (`after_step`, called by the
  suite on the torch backend).

What differs from the paper:
- every layer draws u from U(0, 2^{1/T}); the paper's code draws the second layer's u from
  U(2^{-1/T}, 2^{1/T});
- the suite's optimiser and gradient clipping replace Lasagne's Adam with `grad_clipping=10`
  (which clips the gradient inside the recurrence) and the paper's learning-rate decay;
- T is the run's nominal length `T`; for tasks whose sequences are longer (copy: T + 20) the
  bound uses T all the same;
- no batch normalisation (the paper uses it on sequential MNIST, not on the adding problem).
"""
import torch
from torch import nn

from rnnbench import register_cell

INPUT_STD = 0.001  # std of the input weights W (the authors' `in2hidW`)
MAGNITUDE = 2.0    # |u|^T <= MAGNITUDE: the gradient may grow at most 2x over T steps


@register_cell("indrnn")
class IndRNN(nn.Module):
    """h_t = relu(W x_t + u ⊙ h_{t-1} + b); |u| <= 2^{1/T} after every optimiser step."""

    def __init__(self, input_size: int, hidden_size: int, cfg):
        super().__init__()
        self.hidden_size = hidden_size
        self.bound = MAGNITUDE ** (1.0 / cfg.T)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        # The recurrent weights are a vector, not a weight_hh matrix: the suite's init schemes
        # re-draw parameters named weight_hh* as H x H matrices (and refuse a 1-D one), which
        # would replace the paper's init. The matrix diag(u) is exposed as `weight_hh` below.
        self.recurrent_weight = nn.Parameter(torch.empty(hidden_size))
        nn.init.normal_(self.weight_ih, 0.0, INPUT_STD)
        nn.init.uniform_(self.recurrent_weight, 0.0, self.bound)

    @property
    def weight_hh(self) -> torch.Tensor:
        """diag(u): the recurrent matrix, for the suite's spectral radius (= max |u|)."""
        return torch.diag(self.recurrent_weight)

    def after_step(self) -> None:
        """Project u back onto |u| <= 2^{1/T} (the suite calls this without autograd)."""
        self.recurrent_weight.clamp_(-self.bound, self.bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xw = x @ self.weight_ih.T + self.bias  # every step's input term in one matmul
        h = x.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for xw_t in xw.unbind(1):  # unbind: one backward node for all steps (see template)
            h = torch.relu(xw_t + self.recurrent_weight * h)
            states.append(h)
        return torch.stack(states, dim=1)  # per-step states: the gradient-flow profile reads them
