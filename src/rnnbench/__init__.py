"""rnnbench: reproducible studies of long-range dependency learning with recurrent networks.

The registries are reached through thin functions here, so `import rnnbench` stays light
(the registries themselves hold no torch: it is imported by the first model built).
"""
from ._version import __version__  # noqa: F401


def run(config, out_dir=None, **kwargs):
    """Train and evaluate one run; see `rnnbench.train.run`."""
    from .train import run as _run
    return _run(config, out_dir=out_dir, **kwargs)


def register_cell(name, builder=None, **kwargs):
    """A new `cell`: `@register_cell("name")` on an nn.Module class `cls(input_size,
    hidden_size, cfg)` whose forward maps x (B, L, I) to h (B, L, H); see rnnbench.models."""
    from .models import register_cell
    return register_cell(name, builder, **kwargs)


def register_activation(name, fn=None, derivative_bound=None, **kwargs):
    """A new `activation` with sup|f'| = derivative_bound; see rnnbench.models.activations."""
    from .models import register_activation
    return register_activation(name, fn, derivative_bound, **kwargs)


def register_init(name, draw=None, **kwargs):
    """A new `init` scheme drawing weight_hh blocks: draw(shape, scale, generator); see
    rnnbench.init_schemes.register_init."""
    from .init_schemes import register_init
    return register_init(name, draw, **kwargs)


def register_task(name=None, cls=None, **kwargs):
    """A new `task`: a subclass of rnnbench.tasks.Task; see rnnbench.tasks.register_task."""
    from .tasks import register_task
    return register_task(name, cls, **kwargs)


def load_plugins(*paths, **kwargs):
    """Import the plug-ins of methods/, `paths`, $RNNBENCH_PLUGINS and installed entry points;
    see rnnbench.plugins."""
    from .plugins import load_plugins
    return load_plugins(paths, **kwargs)
