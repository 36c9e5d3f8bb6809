"""The task registry: `register_task`, and the look-ups by name (`names`, `check`, `make`).

The task modules and plug-ins register here; rnnbench.tasks imports the built-in task modules,
so that `import rnnbench.tasks` registers them.
"""
from __future__ import annotations

from ..registry import note_registration
from . import losses
from .base import Task

REGISTRY: dict[str, type[Task]] = {}


def register_task(name=None, cls: type[Task] | None = None, *, overwrite: bool = False):
    """Make a Task subclass usable as `RunConfig.task`: `register_task("name", cls)`, or as a
    decorator, `@register_task("name")` or `@register_task` (the class's own `name`)."""
    if isinstance(name, type):  # bare decorator
        return register_task(None, name, overwrite=overwrite)
    if cls is None:
        def _registering(task_class):
            register_task(name, task_class, overwrite=overwrite)
            return task_class
        return _registering
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"task {name!r}: expected a subclass of rnnbench.tasks.Task, got {cls!r}")
    own = cls.__dict__.get("name", "")
    name = own if name is None else name
    if not isinstance(name, str) or not name:
        raise ValueError(f"task class {cls.__name__}: give a name (register_task('name', cls) "
                         "or the class attribute `name`)")
    if own and own != name:
        raise ValueError(f"task {name!r}: class {cls.__name__} is named {own!r}")
    if cls.loss_kind not in losses.KINDS:
        raise ValueError(f"task {name!r}: loss_kind must be one of {list(losses.KINDS)}, "
                         f"got {cls.loss_kind!r}")
    note_registration("task", name, REGISTRY, overwrite)
    cls.name = name
    REGISTRY[name] = cls
    return cls


def names() -> list[str]:
    return sorted(REGISTRY)


def _lookup(name) -> type[Task]:
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; allowed tasks: {names()}")
    return REGISTRY[name]


def check(name: str, T: int, options: dict | None = None) -> None:
    """Raise ValueError for an unknown task, an impossible T or a bad option; builds no data."""
    _lookup(name).check(T, options)


def make(name: str, T: int, **options) -> Task:
    return _lookup(name)(T, **options)
