"""The training rules, defined once: optimisers and gradient-clipping modes.

Every engine applies them: the torch backend through `torch.optim` (`torch_optimizer`), the
Numba backend on numpy arrays (`NumpyOptimizer`, `numpy_clip`), the ensemble engine on stacked
per-member tensors (rnnbench.ensemble.engine). All follow torch.optim's update rules with the
constants below, and the run config, the study schema and the engines take their names from
these tables; tests/test_training_rules.py applies the three to the same gradients.

`RunConfig.momentum` is one number whose role depends on the optimiser (`OptimizerRule.momentum`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ADAM_BETA2 = 0.999
EPS = 1e-8        # Adam's and RMSprop's denominator guard (torch.optim uses 1e-8 for both)


@dataclass(frozen=True)
class OptimizerRule:
    slots: tuple          # per-parameter state the rule keeps
    momentum: str         # what RunConfig.momentum means for it
    rule: str             # the update, in torch.optim's form


OPTIMIZERS: dict[str, OptimizerRule] = {
    "sgd": OptimizerRule((), "unused", "p -= lr g"),
    "momentum": OptimizerRule(("buf",), "momentum", "buf = g (first step), else momentum buf + g; "
                                                     "p -= lr buf"),
    "adam": OptimizerRule(("m", "v"), "beta1", "m = beta1 m + (1-beta1) g; v = beta2 v + (1-beta2) g^2; "
                                               "p -= lr/(1-beta1^t) m / (sqrt(v/(1-beta2^t)) + eps)"),
    "rmsprop": OptimizerRule(("sq",), "alpha", "sq = alpha sq + (1-alpha) g^2; "
                                               "p -= lr g / (sqrt(sq) + eps)"),
}

# The global L2 norm of all gradients is always measured (in float64) before clipping; a
# non-finite norm leaves the gradients alone and the step is skipped (the run has diverged).
CLIP_MODES: dict[str, str] = {
    "none": "no clipping",
    "norm": "if ||g|| > theta: g <- theta g / ||g|| (Pascanu et al. 2013)",
    "value": "every element clamped to [-theta, theta]",
}


def torch_optimizer(cfg, parameters):
    """The torch.optim optimiser of `cfg.optimizer`."""
    import torch

    lr, momentum = cfg.lr, cfg.momentum
    build = {
        "sgd": lambda: torch.optim.SGD(parameters, lr=lr),
        "momentum": lambda: torch.optim.SGD(parameters, lr=lr, momentum=momentum),
        "adam": lambda: torch.optim.Adam(parameters, lr=lr, betas=(momentum, ADAM_BETA2), eps=EPS),
        "rmsprop": lambda: torch.optim.RMSprop(parameters, lr=lr, alpha=momentum, eps=EPS),
    }
    if cfg.optimizer not in build:
        raise ValueError(f"field 'optimizer': unknown value {cfg.optimizer!r}; "
                         f"allowed: {list(OPTIMIZERS)}")
    return build[cfg.optimizer]()


def numpy_clip(grads: dict, cfg) -> tuple[float, bool]:
    """Clip numpy gradients in place by `cfg.clip`; returns (norm before clipping, clipped)."""
    norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
    if cfg.clip == "none" or not math.isfinite(norm):
        return norm, False
    theta = cfg.clip_threshold
    if cfg.clip == "norm":
        if norm <= theta:
            return norm, False
        for g in grads.values():
            g *= theta / norm
        return norm, True
    clipped = any(bool(np.any(np.abs(g) > theta)) for g in grads.values())
    for g in grads.values():
        np.clip(g, -theta, theta, out=g)
    return norm, clipped


class NumpyOptimizer:
    """`cfg.optimizer`'s update rule, in place on a dict of numpy arrays."""

    def __init__(self, cfg, params: dict):
        self.cfg = cfg
        self.t = 0
        self.slots = {name: {k: np.zeros_like(v) for k, v in params.items()}
                      for name in OPTIMIZERS[cfg.optimizer].slots}

    def update(self, params: dict, grads: dict) -> None:
        cfg, lr = self.cfg, self.cfg.lr
        self.t += 1
        for k, p in params.items():
            g = grads[k]
            if cfg.optimizer == "sgd":
                p -= lr * g
            elif cfg.optimizer == "momentum":
                buf = self.slots["buf"][k]
                if self.t == 1:
                    buf[:] = g                       # torch starts the buffer at the gradient
                else:
                    buf *= cfg.momentum
                    buf += g
                p -= lr * buf
            elif cfg.optimizer == "adam":
                beta1 = cfg.momentum
                m, v = self.slots["m"][k], self.slots["v"][k]
                m *= beta1
                m += (1 - beta1) * g
                v *= ADAM_BETA2
                v += (1 - ADAM_BETA2) * g * g
                step_size = lr / (1 - beta1 ** self.t)
                denom = np.sqrt(v) / math.sqrt(1 - ADAM_BETA2 ** self.t) + EPS
                p -= step_size * (m / denom)
            else:  # rmsprop
                alpha = cfg.momentum
                sq = self.slots["sq"][k]
                sq *= alpha
                sq += (1 - alpha) * g * g
                p -= lr * g / (np.sqrt(sq) + EPS)

    def state_dict(self):
        return {"t": self.t, "slots": {n: {k: v.copy() for k, v in s.items()}
                                       for n, s in self.slots.items()}}

    def load_state_dict(self, state):
        self.t = state["t"]
        self.slots = {n: {k: np.array(v) for k, v in s.items()} for n, s in state["slots"].items()}
