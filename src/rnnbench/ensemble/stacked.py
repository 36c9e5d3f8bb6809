"""Stacked recurrent cells: G independent models (the "members") computed together.

Every parameter carries a leading members axis G and keeps PyTorch's layout after it
(docs/science/model-and-bptt.md §6): ``weight_ih`` (G, gH, I), ``weight_hh`` (G, gH, H), ``bias_ih`` / ``bias_hh``
(G, gH), and the readout ``head_weight`` (G, C, H), ``head_bias`` (G, C). Gate rows are
PyTorch's: LSTM i, f, g, o; GRU r, z, n with n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
`torch.func.vmap` has no batching rule for nn.LSTM/nn.GRU, so the matrix products are written
as batched matmuls (`torch.baddbmm`), one per time step for the recurrence, and the forward runs
as a Python loop over time under autograd: that loop is the correctness baseline (no hand-written
backward). The per-step elementwise work of a cell is one function (`lstm_pointwise`,
`gru_pointwise`) that `torch.compile` can fuse into one kernel forward and one backward on CUDA
(`fused=True`); on the CPU it runs eagerly.

Inputs are (G, B, L, I) (each member its own batch) or (B, L, I) (one batch shared by all
members, e.g. the fixed evaluation sequences). `mask` (G, L) bool marks the real steps of
left-padded sequences: at a padded step the state is carried unchanged, so a member whose
sequence is shorter than the longest in the group starts from h0 = 0 (c0 = 0) at its first real
step, exactly like a single run on its own length.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch

from ..cell_table import BUILTIN_CELLS, GATE_COUNT
from ..models.activations import get_activation

PARAM_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
HEAD_KEYS = ("head_weight", "head_bias")
ALL_KEYS = PARAM_KEYS + HEAD_KEYS

# Above this many elements, the input projection x W_ih^T of a whole sequence is not
# materialised at once but computed step by step (same numbers, less memory).
PRECOMPUTE_LIMIT = 1 << 27


# --- the elementwise part of one step -------------------------------------------------------

def lstm_pointwise(gates: torch.Tensor, c: torch.Tensor):
    """gates (..., 4H) = x W_ih^T + b_ih + h W_hh^T + b_hh; returns (h', c')."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def gru_pointwise(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor):
    """gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh (..., 3H); returns h'."""
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


@functools.lru_cache(maxsize=None)
def _compiled(name: str):
    fn = {"lstm": lstm_pointwise, "gru": gru_pointwise}[name]
    return torch.compile(fn, fullgraph=True)  # shapes change with G and chunks: automatic dynamic


def _pointwise(cell: str, fused: bool):
    if fused and cell in ("lstm", "gru"):
        return _compiled(cell)
    return {"lstm": lstm_pointwise, "gru": gru_pointwise}.get(cell)


class Activations:
    """The rnn nonlinearity of every member: one function, or one per subset of members."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        distinct = list(dict.fromkeys(self.names))
        self.single = get_activation(distinct[0]).fn if len(distinct) == 1 else None
        self._groups = [(get_activation(n).fn, [g for g, m in enumerate(self.names) if m == n])
                        for n in distinct]
        self._tensors = {}

    def select(self, index: Sequence[int]) -> "Activations":
        return Activations([self.names[i] for i in index])

    def _index(self, device):
        if device not in self._tensors:
            order = [g for _, members in self._groups for g in members]
            inverse = [0] * len(order)
            for pos, g in enumerate(order):
                inverse[g] = pos
            self._tensors[device] = (
                [(fn, torch.tensor(m, device=device)) for fn, m in self._groups],
                torch.tensor(inverse, device=device))
        return self._tensors[device]

    def __call__(self, pre: torch.Tensor) -> torch.Tensor:
        if self.single is not None:
            return self.single(pre)
        groups, inverse = self._index(pre.device)
        parts = [fn(pre.index_select(0, idx)) for fn, idx in groups]
        return torch.cat(parts, dim=0).index_select(0, inverse)


def _t(w: torch.Tensor) -> torch.Tensor:
    return w.transpose(1, 2)


def _project(x_t: torch.Tensor, w_ih_t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x_t (G, B, I) or shared (B, I) -> (G, B, gH) = bias + x_t W_ih^T."""
    if x_t.dim() == 2:
        return torch.matmul(x_t, w_ih_t) + bias
    return torch.baddbmm(bias, x_t, w_ih_t)


def stacked_sequence(cell: str, params: dict, x: torch.Tensor, activation: Activations | None = None,
                     mask: torch.Tensor | None = None, return_sequence: bool = False,
                     fused: bool = False, precompute: bool | None = None) -> torch.Tensor:
    """Run G single-layer cells over time from h0 = 0 (c0 = 0).

    x: (G, B, L, I) or shared (B, L, I). Returns the last state (G, B, H) or, with
    `return_sequence`, every state (G, B, L, H). `mask` (G, L) bool: False at left-padding steps.
    """
    if cell not in GATE_COUNT:
        raise ValueError(f"stacked cells: unknown cell {cell!r}; allowed: {list(BUILTIN_CELLS)}")
    w_ih, w_hh, b_ih, b_hh = (params[k] for k in PARAM_KEYS)
    G, gH, H = w_hh.shape
    shared = x.dim() == 3
    B, L = (x.shape[0], x.shape[1]) if shared else (x.shape[1], x.shape[2])
    if not shared and x.shape[0] != G:
        raise ValueError(f"stacked cells: input has {x.shape[0]} members, the weights {G}")
    if cell == "rnn" and activation is None:
        activation = Activations(["tanh"] * G)
    # rnn and lstm add both biases before the nonlinearity; the gru keeps b_hh inside r * (.)
    in_bias = (b_ih if cell == "gru" else b_ih + b_hh).unsqueeze(1)      # (G, 1, gH)
    w_ih_t, w_hh_t = _t(w_ih), _t(w_hh)
    if precompute is None:
        precompute = not shared and G * B * L * gH <= PRECOMPUTE_LIMIT
    if precompute and not shared:
        xw = torch.baddbmm(in_bias, x.reshape(G, B * L, -1), w_ih_t).view(G, B, L, gH)
        step_input = lambda t: xw[:, :, t]  # noqa: E731
    elif shared:
        step_input = lambda t: _project(x[:, t], w_ih_t, in_bias)  # noqa: E731
    else:
        step_input = lambda t: _project(x[:, :, t], w_ih_t, in_bias)  # noqa: E731

    pointwise = _pointwise(cell, fused)
    h = w_hh.new_zeros(G, B, H)
    c = h if cell == "lstm" else None
    b_hh_gru = b_hh.unsqueeze(1) if cell == "gru" else None
    states = []
    for t in range(L):
        xw_t = step_input(t)
        if cell == "rnn":
            h_new = activation(torch.baddbmm(xw_t, h, w_hh_t))
        elif cell == "lstm":
            h_new, c_new = pointwise(torch.baddbmm(xw_t, h, w_hh_t), c)
        else:
            h_new = pointwise(xw_t, torch.baddbmm(b_hh_gru, h, w_hh_t), h)
        if mask is not None:
            keep = mask[:, t].view(G, 1, 1)
            h_new = torch.where(keep, h_new, h)
            if cell == "lstm":
                c_new = torch.where(keep, c_new, c)
        h = h_new
        if cell == "lstm":
            c = c_new
        if return_sequence:
            states.append(h)
    return torch.stack(states, dim=2) if return_sequence else h


def readout(params: dict, h: torch.Tensor) -> torch.Tensor:
    """Head on the last state (G, B, H) -> (G, B, C) or on every state (G, B, L, H) -> (G, B, L, C)."""
    w, b = params["head_weight"], params["head_bias"]
    G = w.shape[0]
    if h.dim() == 3:
        return torch.baddbmm(b.unsqueeze(1), h, _t(w))
    _, B, L, H = h.shape
    return torch.baddbmm(b.unsqueeze(1), h.reshape(G, B * L, H), _t(w)).view(G, B, L, -1)


class StackedModel:
    """G models of one cell (one layer, one direction) with a linear head, weights stacked.

    `params` maps ALL_KEYS to leaf tensors (requires_grad) with the members axis first.
    `forward(x, mask)` -> (G, B, C) for last-step tasks, (G, B, L, C) with `per_step`.
    """

    def __init__(self, cell: str, params: dict, per_step: bool, activations: Sequence[str] | None = None,
                 fused: bool = False):
        if cell not in GATE_COUNT:
            raise ValueError(f"stacked cells: unknown cell {cell!r}; allowed: {list(BUILTIN_CELLS)}")
        self.cell, self.per_step, self.fused = cell, bool(per_step), bool(fused)
        self.params = {k: params[k] for k in ALL_KEYS}
        G = self.members
        self.activations = Activations(activations if activations is not None else ["tanh"] * G)
        if len(self.activations.names) != G:
            raise ValueError(f"stacked cells: {len(self.activations.names)} activations for {G} members")

    @property
    def members(self) -> int:
        return int(self.params["weight_hh"].shape[0])

    @property
    def hidden(self) -> int:
        return int(self.params["weight_hh"].shape[2])

    def parameters(self) -> list[torch.Tensor]:
        return [self.params[k] for k in ALL_KEYS]

    def forward(self, x, mask=None, params=None, activations=None):
        params = self.params if params is None else params
        h = stacked_sequence(self.cell, params, x, activations or self.activations, mask=mask,
                             return_sequence=self.per_step, fused=self.fused)
        return readout(params, h)

    __call__ = forward

    @classmethod
    def from_models(cls, models: Sequence[torch.nn.Module], cell: str, per_step: bool,
                    activations: Sequence[str] | None = None, device=None, dtype=None,
                    fused: bool = False) -> "StackedModel":
        """Stack the layer-0 weights and heads of G `SequenceModel`s (PyTorch names)."""
        params = {}
        for k in ALL_KEYS:
            tensors = [member_tensor(m, k) for m in models]
            stacked = torch.stack([t.detach() for t in tensors]).to(device=device, dtype=dtype)
            params[k] = stacked.contiguous().requires_grad_(True)
        return cls(cell, params, per_step, activations, fused)

    @torch.no_grad()
    def select(self, index: Sequence[int]) -> "StackedModel":
        """A new stack holding only the members `index` (in that order)."""
        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.params["weight_hh"].device)
        params = {k: v.detach().index_select(0, idx).contiguous().requires_grad_(True)
                  for k, v in self.params.items()}
        return StackedModel(self.cell, params, self.per_step,
                            [self.activations.names[i] for i in index], self.fused)

    @torch.no_grad()
    def load_member(self, g: int, model: torch.nn.Module) -> torch.nn.Module:
        """Copy member g's weights into a `SequenceModel` (any device/dtype); returns it."""
        for k in ALL_KEYS:
            target = member_tensor(model, k)
            target.copy_(self.params[k][g].detach().to(device=target.device, dtype=target.dtype))
        return model


def member_tensor(model: torch.nn.Module, key: str) -> torch.Tensor:
    """The tensor of a SequenceModel behind a stacked key (layer 0, forward direction)."""
    if key == "head_weight":
        return model.head.weight
    if key == "head_bias":
        return model.head.bias
    return getattr(model.rnn, f"{key}_l0")
