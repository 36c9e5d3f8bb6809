"""The registries' shared book-keeping: where every registered name comes from.

Every register_* function (cells, activations, init schemes, tasks) calls `note_registration`
just before it stores a name. That refuses a name already taken (naming both sources),
remembers the name's source (BUILTIN, a plug-in file or entry point, or the file of the calling
code), and, while `recording(label)` is active (rnnbench.plugins loading a plug-in), notes the
registration so that a plug-in failing half-way can be undone.

Standard library only: the registries import it, and it imports none of them.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Where plug-ins come from (rnnbench.plugins reads them; the registries name them in errors).
ENV_VAR = "RNNBENCH_PLUGINS"
ENTRY_POINT_GROUP = "rnnbench.plugins"
METHODS_DIR = "methods"
BUILTIN = "rnnbench (built-in)"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass
class _Loading:
    label: str
    registered: list = field(default_factory=list)  # (kind, registry, name, previous value)


_MISSING = object()
_LOADING: list[_Loading] = []                  # plug-ins being imported (innermost last)
_ORIGINS: dict[tuple[str, str], str] = {}      # (kind, name) -> where it was registered


@contextlib.contextmanager
def recording(label: str):
    """Registrations inside the block come from `label`; if the block raises, they are undone
    (each name gets back its previous value, or is removed) and the exception goes on."""
    record = _Loading(label)
    _LOADING.append(record)
    try:
        yield record
    except BaseException:
        _rollback(record)
        raise
    finally:
        _LOADING.pop()


def _rollback(record: _Loading) -> None:
    for kind, registry, name, previous in reversed(record.registered):
        if previous is _MISSING:
            registry.pop(name, None)
            _ORIGINS.pop((kind, name), None)
        else:
            registry[name] = previous


def note_registration(kind: str, name: str, registry: dict, overwrite: bool = False) -> str:
    """Called by every register_* just before it stores `registry[name]`: raises ValueError
    for a name already taken (naming both sources), remembers where `name` comes from, and lets
    a failing plug-in's registrations be undone. Returns the source."""
    source = current_source()
    key = (kind, name)
    if name in registry and not overwrite:
        raise ValueError(f"{kind} {name!r} is already registered by {origin(kind, name)}; "
                         f"{source} registers it again (choose another name)")
    if _LOADING:
        _LOADING[-1].registered.append((kind, registry, name, registry.get(name, _MISSING)))
    _ORIGINS[key] = source
    return source


def origin(kind: str, name: str) -> str:
    """Where a registered name comes from: BUILTIN, a plug-in file or entry point, or a file."""
    return _ORIGINS.get((kind, name), BUILTIN)


def registered_by_plugins() -> dict[str, list[tuple[str, str]]]:
    """source -> [(kind, name), ...] for everything not built into rnnbench."""
    out: dict[str, list] = {}
    for (kind, name), source in _ORIGINS.items():
        if source != BUILTIN:
            out.setdefault(source, []).append((kind, name))
    return out


# Frames of the registry functions themselves (and their decorator closures), skipped when
# looking for the code that registers.
_REGISTRY_FRAMES = frozenset({"register_cell", "register_activation", "register_init",
                              "register_task", "_registering", "note_registration",
                              "current_source"})


def current_source() -> str:
    """The plug-in being loaded, else the file of the code calling a register_* function
    (BUILTIN inside the rnnbench package)."""
    if _LOADING:
        return _LOADING[-1].label
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name in _REGISTRY_FRAMES:
        frame = frame.f_back
    if frame is None:
        return BUILTIN
    filename = frame.f_code.co_filename
    try:
        inside = Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        inside = False
    return BUILTIN if inside else filename
