"""The registry of initialisation schemes: the built-in names, their default scales, and the
schemes that plug-ins add (`register_init`); what each scheme draws is rnnbench.init.

Standard library only (no torch): a study's `init` names are checked where no model is built,
e.g. in the Snakemake process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from . import registry

SCHEMES = ("default", "glorot", "orthogonal", "identity", "normal", "spectral", "smart")
DEFAULT_SCALE = {"default": None, "glorot": 1.0, "orthogonal": 1.0, "identity": 1.0,
                 "normal": 0.1, "spectral": 1.0, "smart": 0.95}


@dataclass(frozen=True)
class UserScheme:
    name: str
    draw: Callable      # (shape (rows, cols), scale, generator) -> tensor of that shape
    default_scale: float | None
    base: str           # built-in scheme of every parameter but weight_hh, and of the head


_REGISTRY: dict[str, UserScheme | None] = dict.fromkeys(SCHEMES)  # None: a built-in scheme


def register_init(name: str, draw: Callable | None = None, *, default_scale: float | None = None,
                  base: str = "default", overwrite: bool = False) -> Callable:
    """Make `name` usable as `RunConfig.init`. `draw(shape, scale, generator)` returns one
    gate block of a weight_hh, of `shape` (rows, cols), drawn from `generator` (a CPU
    torch.Generator: pass it to every torch random call); `scale` is `cfg.init_scale` or
    `default_scale`. Without `draw` this returns a decorator."""
    if draw is None:
        def _registering(function):
            register_init(name, function, default_scale=default_scale, base=base,
                          overwrite=overwrite)
            return function
        return _registering
    if not isinstance(name, str) or not name:
        raise ValueError(f"init scheme name must be a non-empty string, got {name!r}")
    if not callable(draw):
        raise ValueError(f"init {name!r}: draw must be callable, got {type(draw).__name__}")
    if base not in SCHEMES:
        raise ValueError(f"init {name!r}: base must be a built-in scheme {list(SCHEMES)}, "
                         f"got {base!r}")
    if default_scale is not None and not (default_scale > 0 and math.isfinite(default_scale)):
        raise ValueError(f"init {name!r}: default_scale must be > 0, got {default_scale}")
    if name in SCHEMES:
        raise ValueError(f"init {name!r} is already registered by {registry.BUILTIN}; "
                         "choose another name")
    registry.note_registration("init", name, _REGISTRY, overwrite)
    _REGISTRY[name] = UserScheme(name, draw, default_scale, base)
    return draw


def schemes() -> list[str]:
    return list(_REGISTRY)


def scheme_entry(name: str) -> UserScheme | None:
    """A plug-in's scheme, or None for a built-in one; an unknown name raises ValueError."""
    if name not in _REGISTRY:
        raise ValueError(f"field 'init': unknown value {name!r}; allowed: {schemes()}")
    return _REGISTRY[name]
