"""Initialisation schemes for the recurrent stack and the head (docs/science/model-and-bptt.md §5).

`build_initialised_model(cfg, task)` is the model every backend (and every ensemble member)
starts from: `models.build` then `apply` with a generator seeded by `init_seed(cfg.seed)`.

`apply(model, cfg, generator)` redraws every parameter of `model.rnn` and `model.head` from
`generator`, so the same generator seed gives the same weights. Draws are made in float64 on the
generator's device (use a CPU generator) and then copied into the parameters: a float32 and a
float64 model, on any device, start from the same numbers up to rounding.

Recurrent and input weights are treated per gate block (each H x n row block of a (G*H, n)
matrix: LSTM i,f,g,o; GRU r,z,n), since each gate is its own linear map. `cfg.init_scale`
(None -> DEFAULT_SCALE) is:

  default     PyTorch's RNN rule, every parameter U(-1/sqrt(H), 1/sqrt(H)); head as nn.Linear.
              init_scale is ignored.
  glorot      xavier-uniform blocks of weight_ih and weight_hh with gain init_scale (1); biases 0.
  orthogonal  (Saxe 2014) orthogonal weight_hh blocks with gain init_scale (1); glorot weight_ih;
              biases 0.
  identity    (IRNN, Le 2015) weight_hh blocks = init_scale (1) * I; weight_ih N(0, 0.001^2);
              biases 0.
  normal      (Pascanu 2013) every weight, head included, N(0, sigma^2) with sigma = init_scale
              (0.1, his "basic tanh"; 0.01 is his "sigmoid"); biases 0.
  spectral    the default draw (head included), then each weight_hh block rescaled to spectral
              radius init_scale (1): differs from "default" only in the scale of weight_hh.
  smart       (Pascanu 2013 "smart tanh") sparse weight_hh blocks, each unit (row) with
              min(15, H) nonzero incoming weights N(0, 1), rescaled to spectral radius
              init_scale (0.95); weight_ih and head N(0, 0.01^2); biases 0.

The head is xavier-uniform with bias 0 for glorot/orthogonal/identity. After the
scheme, LSTM stacks get `cfg.forget_bias` added to the forget-gate rows (H:2H) of every bias_ih.

A plug-in scheme (`register_init`) draws each gate block of every weight_hh with its own
function; every other parameter and the head follow the built-in scheme `base`.

A plug-in cell's stack (models.PluginStack) keeps the cell's own initialisation except for its
parameters whose own name starts with `weight_hh`: "default" keeps those too; "spectral"
rescales the cell's own blocks to spectral radius init_scale; every other scheme redraws them
as above (orthogonal, identity and smart need square blocks). The head follows the scheme.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from . import models, registry
# The scheme registry holds no torch, so that a study's names are checked without it.
from .init_numpy import init_seed
from .init_schemes import (DEFAULT_SCALE, SCHEMES, UserScheme, register_init,  # noqa: F401
                           scheme_entry, schemes)

IRNN_INPUT_STD = 1e-3    # Le et al. 2015
SMART_NONZERO = 15       # incoming recurrent weights per unit, Pascanu et al. 2013
SMART_INPUT_STD = 0.01   # W_in, W_out ~ N(0, 0.01) in the "smart tanh" regime


def _user_block(user: UserScheme, shape, scale, g, where: str):
    value = user.draw(tuple(shape), scale, g)
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(shape):
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"init {user.name!r} (from {registry.origin('init', user.name)}): "
                         f"draw returned {got} for a block of {where} of shape {tuple(shape)}")
    return value.to(device=g.device, dtype=torch.float64)


# --- draws: float64 on the generator's device ---------------------------------------------

def _randn(shape, std, g):
    return std * torch.randn(shape, generator=g, dtype=torch.float64, device=g.device)


def _uniform(shape, bound, g):
    return torch.empty(shape, dtype=torch.float64, device=g.device).uniform_(-bound, bound, generator=g)


def _glorot(shape, gain, g):
    fan_out, fan_in = shape
    return _uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), g)


def _orthogonal(n, gain, g):
    q, r = torch.linalg.qr(_randn((n, n), 1.0, g))
    # sign fix: Q of a Gaussian is Haar-distributed only with diag(R) > 0 (as nn.init.orthogonal_)
    return gain * q * torch.sign(torch.diagonal(r))


def _radius(w):
    return torch.linalg.eigvals(w).abs().max()


def _with_radius(w, rho):
    return w * (rho / _radius(w))


def _sparse(n, nonzero, g):
    """Each row (a unit's incoming weights in PyTorch's W h layout) gets `nonzero` N(0,1) entries."""
    for _ in range(100):  # a rare nilpotent draw (radius 0) cannot be rescaled: draw again
        w = torch.zeros(n, n, dtype=torch.float64, device=g.device)
        for row in range(n):
            cols = torch.randperm(n, generator=g, device=g.device)[:nonzero]
            w[row, cols] = _randn((nonzero,), 1.0, g)
        if _radius(w) > 1e-12:
            return w
    raise RuntimeError("could not draw a sparse recurrent matrix with nonzero spectral radius")


def _per_block(shape, gates, draw):
    """(G*H, n) from G independent draws of an (H, n) block."""
    rows, cols = shape
    if rows % gates:
        raise ValueError(f"parameter of shape {shape} does not split into {gates} gate blocks")
    return torch.cat([draw((rows // gates, cols)) for _ in range(gates)])


def _rnn_param(scheme, kind, shape, gates, hidden, scale, g):
    """The new value of one recurrent-stack parameter; kind in weight_ih, weight_hh, bias."""
    if scheme in ("default", "spectral"):
        value = _uniform(shape, 1.0 / math.sqrt(hidden), g)
        if scheme == "spectral" and kind == "weight_hh":
            value = torch.cat([_with_radius(b, scale) for b in value.chunk(gates)])
        return value
    if kind == "bias":
        return torch.zeros(shape, dtype=torch.float64, device=g.device)
    if scheme == "normal":
        return _randn(shape, scale, g)
    if kind == "weight_ih":
        if scheme == "identity":
            return _randn(shape, IRNN_INPUT_STD, g)
        if scheme == "smart":
            return _randn(shape, SMART_INPUT_STD, g)
        return _per_block(shape, gates, lambda s: _glorot(s, scale if scheme == "glorot" else 1.0, g))
    # weight_hh, one H x H block per gate
    if scheme == "glorot":
        return _per_block(shape, gates, lambda s: _glorot(s, scale, g))
    if scheme == "orthogonal":
        return _per_block(shape, gates, lambda s: _orthogonal(s[0], scale, g))
    if scheme == "identity":
        return _per_block(shape, gates, lambda s: scale * torch.eye(s[0], dtype=torch.float64, device=g.device))
    if scheme == "smart":
        return _per_block(shape, gates,
                          lambda s: _with_radius(_sparse(s[0], min(SMART_NONZERO, s[0]), g), scale))
    raise ValueError(f"field 'init': unknown value {scheme!r}; allowed: {list(SCHEMES)}")


def _kind(name):
    for kind in ("weight_ih", "weight_hh", "bias"):
        if name.startswith(kind):
            return kind
    raise ValueError(f"init: parameter {name!r} of the recurrent stack is not weight_ih/weight_hh/bias*")


def _head_params(scheme, weight_shape, bias_shape, scale, g):
    fan_in = weight_shape[1]
    if scheme in ("default", "spectral"):  # nn.Linear: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), same for bias
        bound = 1.0 / math.sqrt(fan_in)
        return _uniform(weight_shape, bound, g), _uniform(bias_shape, bound, g)
    zeros = torch.zeros(bias_shape, dtype=torch.float64, device=g.device)
    if scheme == "normal":
        return _randn(weight_shape, scale, g), zeros
    if scheme == "smart":
        return _randn(weight_shape, SMART_INPUT_STD, g), zeros
    return _glorot(weight_shape, 1.0, g), zeros


@torch.no_grad()
def apply(model: nn.Module, cfg, generator: torch.Generator) -> nn.Module:
    """Initialise `model.rnn` and `model.head` (or a bare stack) in place; returns the model."""
    scheme = cfg.init
    user = scheme_entry(scheme)
    if cfg.init_scale is not None:
        scale = cfg.init_scale
    else:
        scale = user.default_scale if user else DEFAULT_SCALE[scheme]
    rnn = getattr(model, "rnn", model)
    head = getattr(model, "head", None)
    gates, hidden = rnn.gate_count, rnn.hidden_size
    for name, p in rnn.named_parameters():  # fixed order: the draw sequence is deterministic
        if getattr(rnn, "is_plugin", False):
            value = _plugin_param(scheme, user, name, p, gates, scale, generator)
        elif user is not None:
            value = _user_param(user, _kind(name), name, tuple(p.shape), gates, hidden, scale,
                                generator)
        else:
            value = _rnn_param(scheme, _kind(name), tuple(p.shape), gates, hidden, scale,
                               generator)
        if value is not None:
            p.copy_(value)
    if head is not None:
        head_scheme = user.base if user else scheme
        head_scale = DEFAULT_SCALE[head_scheme] if user else scale
        weight, bias = _head_params(head_scheme, tuple(head.weight.shape), tuple(head.bias.shape),
                                    head_scale, generator)
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    if cfg.forget_bias:
        _add_forget_bias(rnn, cfg.forget_bias)
    return model


def build_initialised_model(cfg, task) -> nn.Module:
    """The model every backend starts from: same seed -> same weights, on every backend."""
    generator = torch.Generator().manual_seed(init_seed(cfg.seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(cfg.seed))
        model = models.build(cfg, task)
    apply(model, cfg, generator)
    return model


def _user_param(user, kind, name, shape, gates, hidden, scale, g):
    if kind == "weight_hh":
        return _per_block(shape, gates, lambda s: _user_block(user, s, scale, g, name))
    return _rnn_param(user.base, kind, shape, gates, hidden, DEFAULT_SCALE[user.base], g)


def _plugin_param(scheme, user, name, p, gates, scale, g):
    """New value of a plug-in stack's parameter, or None to keep the cell's own."""
    if not name.rsplit(".", 1)[-1].startswith("weight_hh") or scheme == "default":
        return None
    shape = tuple(p.shape)
    if len(shape) != 2 or shape[0] % gates:
        raise ValueError(f"field 'init': {scheme!r} draws weight_hh matrices of {gates} row "
                         f"block(s); parameter {name} has shape {shape} (rename a recurrent "
                         "parameter that is not such a matrix so it does not start with weight_hh)")
    block = (shape[0] // gates, shape[1])
    square = block[0] == block[1]
    if scheme in ("orthogonal", "identity", "smart", "spectral") and not square:
        raise ValueError(f"field 'init': {scheme!r} needs square weight_hh blocks; parameter "
                         f"{name} has blocks of shape {block}")
    if user is not None:
        return _per_block(shape, gates, lambda s: _user_block(user, s, scale, g, name))
    if scheme == "spectral":  # the cell's own draw, rescaled: differs from "default" in scale only
        own = p.detach().to(device=g.device, dtype=torch.float64)
        return torch.cat([_with_radius(b, scale) for b in own.chunk(gates)])
    return _rnn_param(scheme, "weight_hh", shape, gates, block[0], scale, g)


def _add_forget_bias(rnn: nn.Module, value: float) -> None:
    """Jozefowicz et al. 2015: start with the forget gate open (sigmoid(1) ~ 0.73)."""
    gate = getattr(rnn, "forget_gate", None)
    if gate is None:
        raise ValueError(f"field 'forget_bias': the {type(rnn).__name__} stack has no forget gate")
    hidden = rnn.hidden_size
    for name, p in rnn.named_parameters():
        if name.startswith("bias_ih"):  # one of the two bias vectors: b_ih + b_hh enters the gate
            p[gate * hidden:(gate + 1) * hidden] += value
