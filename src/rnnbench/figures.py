"""The study's figures as data: one entry per figure, with the function that draws it, the
aggregated tables it reads (in the order of the function's arguments), its report caption and
the study key it needs, if any. The workflow draws a study's figures with one rule (`figures`:
one process that imports matplotlib once and forks a worker per core, `render_all`), so a new
figure is a function in `plots.py` and an entry here.

The table names its functions rather than holding them: the Snakemake process reads this
module to plan a study, and importing seaborn and scipy there would delay every job's start.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .records import DEFAULT_FIGURE_FORMATS, check_figure_formats

TABLES = ("runs", "curves", "gradflow")  # what aggregation writes: <study_dir>/<name>.parquet


@dataclass(frozen=True)
class FigureSpec:
    draw: str             # a function of rnnbench.plots: draw(*tables, path_stem, formats=)
                          # -> [paths]; with `needs`, also the value of that study key
    inputs: tuple         # names from TABLES
    caption: str          # reStructuredText, shown under the figure in the HTML report
    needs: str = ""       # a study key that must be set for the figure to be drawn
    cost: int = 1         # panels drawn per (task, T) of the study, about: the workers take
                          # the costliest figures first, so that the cheap ones fill the end


FIGURES: dict[str, FigureSpec] = {
    "success_vs_T": FigureSpec("success_vs_T", ("runs",), cost=0, caption="""\
Success rate against sequence length T, one line per method (Pascanu et al. 2013, Fig. 7
view). Error bars: Wilson 95% score intervals over the seeds of each point; points are
dodged slightly along T so that bars do not overlap."""),
    "learning_curves": FigureSpec("learning_curves", ("curves", "runs"), cost=1, caption="""\
Evaluation loss against training step, one panel per sequence length (and task), one line per
method: median over seeds, shaded band from the smallest to the largest seed. Dashed: the
task's baseline loss (best input-independent predictor). Log scale; runs stop early when solved,
so late steps have fewer seeds."""),
    "grad_norms": FigureSpec("grad_norms", ("curves", "runs"), cost=1, caption="""\
Global gradient norm before clipping against training step, one panel per sequence length,
one line per method (median over seeds, min-max band; long runs are thinned to about 400
steps). Dotted: the clipping threshold where global norm clipping is on. Spikes far above it
are the exploding-gradient events that clipping bounds. Log scale."""),
    "gradflow_vs_lag": FigureSpec("gradflow_vs_lag", ("gradflow", "runs"), cost=2, caption="""\
Gradient flow through time: norm of the loss gradient with respect to the hidden state k steps
before the end, relative to its value at lag 0, ‖∂L/∂h_{T−k}‖ / ‖∂L/∂h_T‖, against k, at the
start and at the end of training (median over seeds). Dashed, same colour: the bound
(β_W β_f)^k = (‖W_hh‖₂ · max|f′|)^k, with β_W and β_f upper bounds of the norms of the
recurrent weights and of diag f′ (rnn cells only); an exponentially falling
curve is vanishing gradient, a rising one exploding. The axis follows the measured norms; the
bound may leave it."""),
    "comparison": FigureSpec("comparison_of_runs", ("runs",), cost=0, caption="""\
Methods against the baseline method (study key ``compare``), one row per method and cell, one
row of panels per task. Left: success rate minus the baseline's, with Newcombe's 95% interval
(0 dotted). Right: median final loss relative to the baseline's, with a bootstrap 95% interval
on a log axis (1 dotted; left of 1 is better); a ratio of 0 or infinity (diverged runs) sits
open at the panel edge. Colour and marker give the Holm-adjusted verdict: better, worse or no
evidence.""", needs="compare"),
}


def figures_for(study) -> list[str]:
    """The names of the figures a study draws (those whose study key is set)."""
    return [name for name, spec in FIGURES.items()
            if not spec.needs or figure_setting(name, study)]


def figure_setting(name: str, study):
    """The value of the study key figure `name` needs (None if it needs none): what `render`
    takes instead of the whole study, so that a figure can be drawn in a process of its own."""
    spec = FIGURES[name]
    return getattr(study, spec.needs) if spec.needs else None


def check(name: str, study_dir, setting=None) -> list[Path]:
    """The input tables of figure `name`, once what drawing it takes is there: a known name,
    the value of the study key it needs, its tables in `study_dir` (ValueError naming each)."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {sorted(FIGURES)}")
    spec = FIGURES[name]
    if spec.needs and setting is None:
        raise ValueError(f"figure {name!r} needs the value of the study key {spec.needs!r} "
                         "(--settings)")
    files = [Path(study_dir) / f"{table}.parquet" for table in spec.inputs]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"figure {name!r}: no aggregated table {missing} (the workflow's "
                         "aggregate rule, or rnnbench.aggregate.aggregate_study, writes it)")
    return files


def render(name: str, study_dir, setting=None, formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    """Draw figure `name` of the study in `study_dir` from its aggregated tables into
    `study_dir/figures/<name>.<format>` for each of `formats`; `setting`: the value of the
    study key it needs."""
    formats = check_figure_formats(formats)
    files = check(name, study_dir, setting)
    import pandas as pd

    from . import plots

    spec = FIGURES[name]
    tables = [pd.read_parquet(f) for f in files]
    stem = Path(study_dir) / "figures" / name
    draw = getattr(plots, spec.draw)
    if spec.needs:
        return draw(*tables, stem, setting, formats=formats)
    return draw(*tables, stem, formats=formats)


def render_all(study_dir, settings: dict, jobs: int = 1,
               formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    """Draw several figures of the study in `study_dir` (`settings`: figure name -> the value
    of the study key it needs, None if none), `jobs` at a time, each in `formats`; returns
    their paths in the order of `settings`. Every figure is checked (`check`) before any is
    drawn.

    The workers are forked after matplotlib and pandas are imported, so each figure costs its
    drawing only (a process per figure spent about as long importing as drawing). The pool
    forks them all at its first task, before it starts threads of its own; a worker that dies
    breaks the pool (BrokenProcessPool) instead of leaving its figure waited for."""
    unknown = [name for name in settings if name not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; known: {sorted(FIGURES)}")
    formats = check_figure_formats(formats)
    inputs = {name: check(name, study_dir, setting) for name, setting in settings.items()}
    from . import plots  # noqa: F401 - before forking: the workers share the imports

    items = list(settings.items())
    if jobs <= 1 or len(items) <= 1:
        return [path for name, setting in items
                for path in _render_named(name, study_dir, setting, formats)]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(jobs, len(items)), mp_context=context) as pool:
        pending = {name: pool.submit(_render_named, name, study_dir, settings[name], formats)
                   for name in drawing_order(inputs)}
        return [path for name, _ in items for path in pending[name].result()]


def drawing_order(inputs: dict) -> list[str]:
    """The figures of `inputs` (name -> its input files) in the order the workers take them:
    costliest first (`FigureSpec.cost`, then the largest inputs), so that the short ones fill
    the end instead of one worker drawing the longest figure alone."""
    return sorted(inputs, key=lambda name: (-FIGURES[name].cost,
                                            -sum(f.stat().st_size for f in inputs[name])))


def _render_named(name: str, study_dir, setting, formats) -> list[Path]:
    """`render`, with the figure's name on any error (a worker's error reaches the parent with
    its traceback as text, which does not say which figure it was drawing)."""
    try:
        return render(name, study_dir, setting, formats)
    except Exception as exc:
        exc.add_note(f"while drawing figure {name!r} of {study_dir}")
        raise
