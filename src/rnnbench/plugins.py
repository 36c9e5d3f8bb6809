"""Plug-ins: a new recurrent method (cell, activation, init scheme or task) is one Python file.

A plug-in is a file whose import calls the registries: `rnnbench.register_cell`,
`register_activation`, `register_init`, `register_task`. `load_plugins` imports them from,
in this order:

1. every `*.py` in `methods/` of the working directory (the project root, where Snakemake
   runs), except files starting with `_` (helpers) or `template_` (skeletons to copy);
2. the paths it is given (a study's `plugins:` list): files, or folders read like `methods/`;
3. the paths in the environment variable RNNBENCH_PLUGINS (os.pathsep-separated): this is how
   the workflow hands a study's plug-ins to its jobs (see workflow/rules/common.smk);
4. the entry points of group `rnnbench.plugins` of installed packages: a module (imported) or
   a callable (called without arguments).

Each file is imported once per process, as a module named `rnnbench_plugin_<stem>_<hash>`;
loading it again is a no-op. A file that raises on import, or that registers a name already
taken, stops with a ValueError naming the file (and, for a taken name, the file that took it);
whatever it had registered before failing is removed again.

This module imports only the standard library: `import rnnbench` stays light.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

ENV_VAR = "RNNBENCH_PLUGINS"
ENTRY_POINT_GROUP = "rnnbench.plugins"
METHODS_DIR = "methods"
SKIP_PREFIXES = ("_", "template_")
BUILTIN = "rnnbench (built-in)"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass
class _Loading:
    label: str
    registered: list = field(default_factory=list)  # (kind, registry, name, previous value)


_MISSING = object()
_LOADED: dict[str, str] = {}                   # file path or entry point -> module name
_LOADING: list[_Loading] = []                  # plug-ins being imported (innermost last)
_ORIGINS: dict[tuple[str, str], str] = {}      # (kind, name) -> where it was registered


# --- loading -------------------------------------------------------------------------------
def load_plugins(paths=(), base_dir=None, methods_dir: bool = True, env: bool = True,
                 entry_points: bool = True) -> list[str]:
    """Load every plug-in source (see the module docstring); returns `paths` resolved to
    absolute paths (relative ones against `base_dir`, default the working directory)."""
    resolved = resolve_paths(paths, base_dir)
    if methods_dir and Path(METHODS_DIR).is_dir():
        load_path(Path(METHODS_DIR))
    for path in resolved:
        load_path(path)
    if env:
        for path in resolve_paths(env_paths(), None, where=f"environment variable {ENV_VAR}"):
            load_path(path)
    if entry_points:
        load_entry_points()
    return resolved


def resolve_paths(paths, base_dir=None, where: str = "plugins") -> list[str]:
    """Absolute paths of existing files or folders; a missing one raises, naming it."""
    if isinstance(paths, (str, Path)) or not all(isinstance(p, (str, Path)) for p in paths):
        raise ValueError(f"{where}: expected a list of file or folder paths, got {paths!r}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out = []
    for p in paths:
        path = Path(p).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        if not path.exists():
            raise ValueError(f"{where}: plug-in path {str(p)!r} does not exist "
                             f"(looked for {path}; relative paths start from {base.resolve()})")
        out.append(str(path))
    return out


def env_paths() -> list[str]:
    return [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]


def env_value(paths) -> str:
    """RNNBENCH_PLUGINS holding its current paths and `paths` (each once): what a job needs."""
    merged = list(dict.fromkeys([*env_paths(), *map(str, paths)]))
    return os.pathsep.join(merged)


def discover(folder) -> list[Path]:
    """The plug-in files of a folder: `*.py`, sorted, without `_*` and `template_*`."""
    return sorted(p for p in Path(folder).glob("*.py")
                  if p.is_file() and not p.name.startswith(SKIP_PREFIXES))


def load_path(path) -> None:
    """A file is loaded as it is (whatever its name); a folder as `discover` lists it."""
    path = Path(path)
    if path.is_dir():
        for file in discover(path):
            load_file(file)
    elif path.suffix == ".py":
        load_file(path)
    else:
        raise ValueError(f"plug-in {path}: expected a .py file or a folder of them")


def load_file(path) -> types.ModuleType:
    """Import one plug-in file (once per process) and return its module."""
    path = Path(path).resolve()
    key = str(path)
    if key in _LOADED:
        return sys.modules[_LOADED[key]]
    if not path.is_file():
        raise ValueError(f"plug-in {path}: no such file")
    _import_registries()
    stem = re.sub(r"\W", "_", path.stem)
    name = f"rnnbench_plugin_{stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before executing: dataclasses and pickling look it up
    try:
        with _loading(key, path):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _LOADED[key] = name
    return module


def load_entry_points() -> None:
    """Import (or call) every entry point of group `rnnbench.plugins`, once per process."""
    from importlib import metadata
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry point {ep.name} = {ep.value}"
        if key in _LOADED:
            continue
        dist = getattr(getattr(ep, "dist", None), "name", None)
        label = f"entry point {ep.name!r} ({ep.value}" + (f", package {dist})" if dist else ")")
        _import_registries()
        with _loading(label, None):
            target = ep.load()
            if callable(target) and not isinstance(target, types.ModuleType):
                target()
        _LOADED[key] = ep.value


def loaded() -> list[str]:
    """Files and entry points loaded in this process, in loading order."""
    return list(_LOADED)


@contextlib.contextmanager
def _loading(label: str, path: Path | None):
    record = _Loading(label)
    _LOADING.append(record)
    try:
        yield record
    except BaseException as exc:
        _rollback(record)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ValueError(f"plug-in {label} failed to load: {_describe(exc, path)}") from exc
    finally:
        _LOADING.pop()


def _rollback(record: _Loading) -> None:
    for kind, registry, name, previous in reversed(record.registered):
        if previous is _MISSING:
            registry.pop(name, None)
            _ORIGINS.pop((kind, name), None)
        else:
            registry[name] = previous


def _describe(exc: BaseException, path: Path | None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if path is not None:  # the line of the plug-in that raised, when the traceback passes it
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__)
                 if Path(f.filename).resolve() == path]
        if lines:
            text += f" (line {lines[-1]})"
    return text


def _import_registries() -> None:
    """The built-ins register first, so that they are never taken for a plug-in's names."""
    from . import init, models, tasks  # noqa: F401


# --- the registries' shared book-keeping -----------------------------------------------------
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
