"""rnnbench: reproducible studies of long-range dependency learning with recurrent networks."""
__version__ = "0.1.0"


def run(config, out_dir=None, **kwargs):
    """Train and evaluate one run; see `rnnbench.train.run`."""
    from .train import run as _run
    return _run(config, out_dir=out_dir, **kwargs)
