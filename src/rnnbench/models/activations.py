"""Elementwise activations for the plain RNN cell, each with sup|f'| for the gradient bound.

The BPTT bound ||delta_k|| <= ||delta_t|| (beta_W beta_f)^(t-k) (docs/science/model-and-bptt.md §3) needs
beta_f = sup|f'|, so an activation is registered together with that number.

No torch import here: a study's names are checked (in the Snakemake process too) without it.
The built-in functions reach torch through the tensor they are given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .. import registry


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable  # tensor -> tensor, elementwise, differentiable by autograd
    derivative_bound: float                      # sup |f'(x)|


_ACTIVATIONS: dict[str, Activation] = {}


def register_activation(name: str, fn: Callable | None = None, derivative_bound: float | None = None,
                        overwrite: bool = False) -> Callable:
    """Make `name` usable as `RunConfig.activation` (for cells that accept an activation).

    `fn` is elementwise and differentiable by autograd; `derivative_bound` is sup |f'|. Without
    `fn` this returns a decorator: `@register_activation("cube", derivative_bound=3.0)`."""
    if fn is None:
        def _registering(function):
            register_activation(name, function, derivative_bound, overwrite)
            return function
        return _registering
    if not isinstance(name, str) or not name:
        raise ValueError(f"activation name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise ValueError(f"activation {name!r}: fn must be callable, got {type(fn).__name__}")
    if derivative_bound is None:
        raise ValueError(f"activation {name!r}: derivative_bound (sup |f'|) is required")
    bound = float(derivative_bound)
    if not (bound > 0 and math.isfinite(bound)):
        raise ValueError(f"activation {name!r}: derivative_bound must be > 0 and finite, got {bound}")
    registry.note_registration("activation", name, _ACTIVATIONS, overwrite)
    _ACTIVATIONS[name] = Activation(name, fn, bound)
    return fn


def activations() -> list[str]:
    return list(_ACTIVATIONS)


def get_activation(name: str) -> Activation:
    if name not in _ACTIVATIONS:
        raise ValueError(f"field 'activation': unknown value {name!r}; allowed: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def derivative_bound(name: str) -> float:
    """sup |f'| of a registered activation (beta_f in the gradient bound)."""
    return get_activation(name).derivative_bound


def tanh(x):
    return x.tanh()  # the same operation as torch.tanh(x)


def relu(x):
    return x.relu()


def sigmoid(x):
    return x.sigmoid()


def identity(x):
    return x


def softsign(x):
    """x / (1 + |x|): f'(0) = 1."""
    from torch.nn import functional  # loaded with the tensor: a look-up
    return functional.softsign(x)


def leaky_relu(x):
    """Slope 0.01 below zero."""
    from torch.nn import functional
    return functional.leaky_relu(x)


# nn.RNN runs tanh and relu fused; every other name goes through the hand-written loop
register_activation("tanh", tanh, 1.0)
register_activation("relu", relu, 1.0)
register_activation("sigmoid", sigmoid, 0.25)
register_activation("identity", identity, 1.0)
register_activation("softsign", softsign, 1.0)
register_activation("leaky_relu", leaky_relu, 1.0)
