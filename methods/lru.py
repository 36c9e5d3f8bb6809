"""LRU: the linear recurrent unit (Orvieto et al. 2023, ICML).

Paper: A. Orvieto, S. L. Smith, A. Gu, A. Fernando, C. Gulcehre, R. Pascanu, S. De,
"Resurrecting Recurrent Neural Networks for Long Sequences", ICML 2023
(docs/science/papers.md §2).

Equations (one layer; state size N = output size = hidden_size, input size I):

    λ   = exp(-exp(ν) + i·exp(θ))                  (N complex eigenvalues, |λ| = exp(-exp(ν)) < 1)
    x_t = λ ⊙ x_{t-1} + γ ⊙ (B u_t),   x_0 = 0     (B complex N x I)
    y_t = Re(C x_t) + D u_t                        (C complex N x N, D real N x I)

The recurrence is linear and diagonal; stability is built into the parametrisation: for every
value of ν, |λ| = exp(-exp(ν)) < 1 (in floating point: ≤ 1, equal to 1 only once exp(ν) is
below the precision's resolution of 1, ν < -16.6 in float32, far from the ring below).

Initialisation, as in the paper's code (Appendix A):
- ring initialisation: |λ| uniform in the annulus r_min <= |λ| <= r_max by area,
  ν = log(-½ log(U (r_max² - r_min²) + r_min²)), U ~ U(0, 1);
- phases θ = log(θ_max U), U ~ U(0, 1), so arg λ ~ U(0, θ_max);
- γ = sqrt(1 - |λ|²) (stored as its log, `gamma_log`, and trained, as in the paper's code): the
  state's variance then does not depend on how close |λ| is to 1;
- B = (B_re + i B_im), entries N(0, 1/(2I)); C = (C_re + i C_im), entries N(0, 1/N);
  D entries N(0, 1) (the paper's D is a vector for I = N; here a matrix, I ≠ N in general).
Constants: R_MIN = 0.9, R_MAX = 0.999 (the paper's ring for long memory), MAX_PHASE = 2π (the
code's default; the paper narrows it to π/10 on its longest tasks).

The layer is the LRU alone: the paper's block (normalisation, MLP/GLU, skip connection around
it) is left out; the suite adds its readout head on y_t. The time loop is sequential (the paper
uses a parallel scan: the same values, faster on long sequences).

Gradient-flow profile: the states x_t are stacked and the outputs read out from the stack in
one product. The suite's profile follows the per-step tensors a cell stacks, here the states:
‖∂L/∂x_{T-k}‖ (real and imaginary parts together), which shrinks by |λ| per step and unit.
The outputs could not serve: y_{t-1} does not feed y_t, so ‖∂L/∂y_{T-k}‖ is 0 beyond lag 0
for any λ.
"""
import math

import torch
from torch import nn

from rnnbench import register_cell

R_MIN, R_MAX = 0.9, 0.999    # ring of the initial |λ|
MAX_PHASE = 2 * math.pi      # initial arg λ ~ U(0, MAX_PHASE)
COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def ring_init_nu_log(n: int, r_min: float = R_MIN, r_max: float = R_MAX) -> torch.Tensor:
    """ν with |λ| = exp(-exp(ν)) uniform by area on the ring r_min <= |λ| <= r_max."""
    u = torch.rand(n, dtype=torch.float64)
    return torch.log(-0.5 * torch.log(u * (r_max ** 2 - r_min ** 2) + r_min ** 2))


@register_cell("lru")
class LRU(nn.Module):
    """x_t = λ ⊙ x_{t-1} + γ ⊙ (B u_t), y_t = Re(C x_t) + D u_t, λ = exp(-exp(ν) + i exp(θ))."""

    def __init__(self, input_size: int, hidden_size: int, cfg):
        super().__init__()
        n = self.hidden_size = hidden_size
        nu_log = ring_init_nu_log(n)
        theta_log = torch.log(MAX_PHASE * torch.rand(n, dtype=torch.float64))
        modulus = torch.exp(-torch.exp(nu_log))
        self.nu_log = nn.Parameter(nu_log.float())
        self.theta_log = nn.Parameter(theta_log.float())
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - modulus ** 2)).float())
        self.B_re = nn.Parameter(torch.randn(n, input_size) / math.sqrt(2 * input_size))
        self.B_im = nn.Parameter(torch.randn(n, input_size) / math.sqrt(2 * input_size))
        self.C_re = nn.Parameter(torch.randn(n, n) / math.sqrt(n))
        self.C_im = nn.Parameter(torch.randn(n, n) / math.sqrt(n))
        self.D = nn.Parameter(torch.randn(n, input_size))

    def eigenvalues(self) -> torch.Tensor:
        """λ = exp(-exp(ν) + i exp(θ)), complex (N,)."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    @property
    def weight_hh(self) -> torch.Tensor:
        """diag(λ): the recurrent matrix, for the suite's spectral radius (= max |λ| < 1)."""
        return torch.diag(self.eigenvalues())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.eigenvalues()
        b_norm = torch.complex(self.B_re, self.B_im) * torch.exp(self.gamma_log)[:, None]
        bu = x.to(COMPLEX[x.dtype]) @ b_norm.T                  # (B, L, N): γ ⊙ (B u_t)
        state = bu.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for bu_t in bu.unbind(1):  # unbind: one backward node for all steps (see template)
            state = lam * state + bu_t
            states.append(state)
        states = torch.stack(states, dim=1)                      # (B, L, N) complex
        c = torch.complex(self.C_re, self.C_im)
        return (states @ c.T).real + x @ self.D.T                # y_t = Re(C x_t) + D u_t
