"""Plug-ins: a new recurrent method (cell, activation, init scheme or task) is one Python file.

A plug-in is a file whose import calls the registries: `rnnbench.register_cell`,
`register_activation`, `register_init`, `register_task`. `load_plugins` imports them from
(all four by default, in this order):

1. every `*.py` in `methods/` of the working directory (the project root, where Snakemake
   runs), except files starting with `_` (helpers) or `template_` (skeletons to copy);
2. the paths it is given (a study's `plugins:` list): files, or folders read like `methods/`;
3. the paths in the environment variable RNNBENCH_PLUGINS (os.pathsep-separated): this is how
   the workflow hands a study's plug-ins to its jobs (see workflow/rules/common.smk);
4. the entry points of group `rnnbench.plugins` of installed packages: a module (imported) or
   a callable (called without arguments).

What loads what: `load_plugins` imports every source (`rnnbench list|paper`, and code that
asks). A study (`load_study`: the Snakemake process, `rnnbench validate|compare`), a training
job and `rnnbench run` first import the sources they are given (2 and 3: a study's `plugins:`,
`--plugin`, $RNNBENCH_PLUGINS), then `load_needed`: 1 and 4 only when a cell, activation, init
scheme or task the runs name is not registered yet. A study of built-in names thus imports no
plug-in, nor torch, which plug-ins import (docs/performance.md: the workflow is read in less
than half the time), and a broken file in methods/ stops only what needs methods/. For the same
reason a plug-in that replaces a built-in name (`overwrite=True`) belongs in a study's
`plugins:` or $RNNBENCH_PLUGINS: from methods/ it would apply only where something else sent
the process looking there.

Each file is imported once per process, as a module named `rnnbench_plugin_<stem>_<hash>`;
loading it again is a no-op. A file that raises on import, or that registers a name already
taken, stops with a ValueError naming the file (and, for a taken name, the file that took it);
whatever it had registered before failing is removed again.

The registries' shared book-keeping (where each name comes from, a name taken twice, undoing a
failed plug-in) is rnnbench.registry, which every registry imports; this module finds and loads
plug-ins, and imports the registries before the first one. At module level both import only
the standard library: `import rnnbench` stays light.
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
from pathlib import Path

from . import registry
from .registry import ENTRY_POINT_GROUP, ENV_VAR, METHODS_DIR

SKIP_PREFIXES = ("_", "template_")

_LOADED: dict[str, str] = {}                   # file path or entry point -> module name
# The run fields whose values a registry resolves; each is also the registry's kind.
NAMED_FIELDS = ("cell", "activation", "init", "task")


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


def load_needed(names) -> bool:
    """Load methods/ and the installed entry points if one of `names`, (field, value) pairs of
    NAMED_FIELDS, is not registered yet; returns whether it did. Load the plug-ins given
    explicitly first: what they register is not looked for elsewhere."""
    _import_registries()
    if all(_registered(field, value) for field, value in names):
        return False
    if Path(METHODS_DIR).is_dir():
        load_path(Path(METHODS_DIR))
    load_entry_points()
    return True


def names_of(configs) -> set[tuple[str, str]]:
    """The (field, value) pairs of NAMED_FIELDS that run configs (RunConfigs or dicts of
    fields) set; values that are not text are left to the configs' own checks."""
    pairs = set()
    for cfg in configs:
        values = cfg if isinstance(cfg, dict) else vars(cfg)
        pairs.update((f, values[f]) for f in NAMED_FIELDS if isinstance(values.get(f), str))
    return pairs


def _registered(field: str, value: str) -> bool:
    from . import init_schemes, models, tasks
    listing = {"cell": models.cells, "activation": models.activations,
               "init": init_schemes.schemes, "task": tasks.names}[field]
    return value in listing()


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
    """Registrations inside are `label`'s; on failure they are undone and a ValueError names
    the plug-in."""
    try:
        with registry.recording(label) as record:
            yield record
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ValueError(f"plug-in {label} failed to load: {_describe(exc, path)}") from exc


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
    from . import init_schemes, models, tasks  # noqa: F401 - lazy: `import rnnbench` stays light
