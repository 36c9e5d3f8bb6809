"""expRNN: an RNN whose recurrent matrix is exactly orthogonal (Lezcano-Casado & Martínez-Rubio
2019, ICML).

Paper: M. Lezcano-Casado, D. Martínez-Rubio, "Cheap Orthogonal Constraints in Neural Networks:
A Simple Parametrization of the Orthogonal and Unitary Group", ICML 2019
(docs/science/papers.md §2).

Equations (one layer; the suite stacks `layers` of them and adds the readout head):

    W_hh = expm(A),  A = S - Sᵀ skew-symmetric    (so W_hhᵀ W_hh = I exactly)
    h_t  = modrelu(W_hh h_{t-1} + W_ih x_t),  h_0 = 0
    modrelu(z) = sign(z) · relu(|z| + b)          (real z; b a learnable vector)

S is strictly upper triangular; its H(H-1)/2 free entries are the parameter `log_recurrent`,
so the parameter count is the orthogonal group's dimension. W_hh is recomputed from it with
torch.linalg.matrix_exp at every forward, so gradient descent moves A freely while W_hh never
leaves the orthogonal group.

Initialisation of A (module constant INIT, as the authors' code offers both):
- "henaff" (default; Henaff et al. 2016): A block-diagonal with 2 x 2 blocks [[0, s], [-s, 0]],
  s ~ U(-π, π), so W_hh = expm(A) is block-diagonal with 2 x 2 rotations by angles U(-π, π)
  (an odd H leaves one unit with W = 1);
- "cayley" (Helfrich et al. 2018): the same blocks with s = -sqrt((1 - cos a) / (1 + cos a))
  = -tan(a/2), a ~ U(0, π/2).
W_ih ~ Kaiming normal (He init for relu, std sqrt(2 / input_size)); no input bias;
b ~ U(-0.01, 0.01). All three as in the authors' code.

Names: the suite's init schemes re-draw parameters named weight_hh*, which would overwrite A
with a matrix that is not skew-symmetric's free half, so the parameter is `log_recurrent`;
W_hh is exposed as the property `weight_hh` (computed, not a parameter), which the suite reads
for the spectral radius (1 for every orthogonal matrix: a check, not a measurement).

What differs from the paper: one optimiser and learning rate for every parameter (the paper
gives the orthogonal part its own, smaller learning rate); real-valued modReLU (the paper's
cell is real too); the suite's readout head.
"""
import math

import torch
from torch import nn

from rnnbench import register_cell

INIT = "henaff"  # or "cayley": the initialisation of A (see the module docstring)
BIAS_BOUND = 0.01  # modrelu's b ~ U(-0.01, 0.01)


def modrelu(z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sign(z) · relu(|z| + b) for real z."""
    return torch.sign(z) * torch.relu(z.abs() + b)


@register_cell("exprnn")
class ExpRNN(nn.Module):
    """h_t = modrelu(expm(A) h_{t-1} + W_ih x_t), A skew-symmetric: W_hh exactly orthogonal."""

    def __init__(self, input_size: int, hidden_size: int, cfg):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))  # modrelu's b
        # the free entries of S, row by row (torch.triu_indices' order)
        self.log_recurrent = nn.Parameter(torch.zeros(hidden_size * (hidden_size - 1) // 2))
        nn.init.kaiming_normal_(self.weight_ih, nonlinearity="relu")
        nn.init.uniform_(self.bias, -BIAS_BOUND, BIAS_BOUND)
        self._init_skew(INIT)

    @torch.no_grad()
    def _init_skew(self, init: str) -> None:
        blocks = self.hidden_size // 2
        if init == "henaff":
            s = torch.empty(blocks).uniform_(-math.pi, math.pi)
        elif init == "cayley":
            a = torch.empty(blocks).uniform_(0.0, math.pi / 2)
            s = -torch.sqrt((1 - torch.cos(a)) / (1 + torch.cos(a)))
        else:
            raise ValueError(f"exprnn: INIT must be 'henaff' or 'cayley', got {init!r}")
        # S[2i, 2i+1] = s_i, the first entry of row r = 2i, at index r n - r (r + 1) / 2
        i = torch.arange(blocks)
        self.log_recurrent[2 * i * self.hidden_size - i * (2 * i + 1)] = s.to(
            self.log_recurrent.dtype)

    def skew(self) -> torch.Tensor:
        """A = S - Sᵀ, from the free entries of S."""
        h = self.hidden_size
        rows, cols = torch.triu_indices(h, h, offset=1, device=self.log_recurrent.device)
        upper = self.log_recurrent.new_zeros(h, h).index_put((rows, cols), self.log_recurrent)
        return upper - upper.T

    @property
    def weight_hh(self) -> torch.Tensor:
        """W_hh = expm(A), orthogonal."""
        return torch.linalg.matrix_exp(self.skew())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_hh = self.weight_hh  # once per forward: every step uses the same matrix
        xw = x @ self.weight_ih.T
        h = x.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for xw_t in xw.unbind(1):  # unbind: one backward node for all steps (see template)
            h = modrelu(xw_t + h @ w_hh.T, self.bias)
            states.append(h)
        return torch.stack(states, dim=1)  # per-step states: the gradient-flow profile reads them
