"""Paper studies: the analysis that turns a study's aggregated tables into the paper's tables
and figures, and the curated results that regenerate them without training.

    from rnnbench import papers
    papers.NAMES                               # the analyses; a study file names one (`paper:`)
    papers.outputs("le2015")                   # ["tables/success.csv", ..., "figures/....pdf"]
    papers.analyse("le2015", runs, curves, gradflow, "results/le2015/paper")
    papers.curate("results/le2015")            # copy + thin into results/curated/le2015/, analyse
    papers.regenerate()                        # every curated study's tables and figures

The tables are the aggregated ones of `rnnbench.aggregate` (runs.parquet, curves.parquet,
gradflow.parquet). One module per kind of analysis: gradflow.py (decay rates, forget-gate
products), success.py (success against length or clipping threshold, the copy baseline),
digits.py (test accuracy); common.py holds the statistics and drawing they share, curated.py the
curated layout. This module stays light (no plotting imports): the study loader checks names
against NAMES, and the workflow reads `outputs` to know the files.
"""
from __future__ import annotations

import importlib
from pathlib import Path

# analysis name -> (module:function, table stems, figure stems)
ANALYSES = {
    "gradflow": ("gradflow:analyse", ("decay_rates", "forget_products"),
                 ("gradflow_profiles", "decay_rate_vs_log_rho", "forget_product_vs_lag")),
    "pascanu2013": ("success:pascanu2013", ("success", "longest_T"), ("success_vs_T",)),
    "le2015": ("success:le2015", ("success", "longest_T"), ("success_vs_T", "final_loss_vs_T")),
    "arjovsky2016_copy": ("success:arjovsky2016_copy", ("loss_vs_baseline",),
                          ("final_loss_vs_T", "learning_curves")),
    "clipping": ("success:clipping", ("clipping",), ("clipping_vs_threshold",)),
    "hochreiter1997": ("success:hochreiter1997", ("success", "longest_T"), ("success_vs_T",)),
    "digits": ("digits:analyse", ("accuracy",), ("accuracy", "learning_curves")),
}
NAMES = tuple(ANALYSES)
TABLE_FORMATS = ("csv", "md")
FIGURE_FORMATS = ("png", "pdf")


def _check(name: str) -> None:
    if name not in ANALYSES:
        raise ValueError(f"unknown paper analysis {name!r}; known: {list(NAMES)}")


def outputs(name: str) -> list[str]:
    """The files `analyse(name, ...)` writes, relative to its out_dir."""
    _check(name)
    _, tables, figures = ANALYSES[name]
    return ([f"tables/{t}.{ext}" for t in tables for ext in TABLE_FORMATS]
            + [f"figures/{f}.{ext}" for f in figures for ext in FIGURE_FORMATS])


def analyse(name: str, runs, curves, gradflow, out_dir) -> list[Path]:
    """Write the tables (CSV + Markdown) and figures (PNG + PDF) of analysis `name` from the
    aggregated tables into out_dir/tables/ and out_dir/figures/; returns the paths."""
    _check(name)
    module, function = ANALYSES[name][0].split(":")
    analysis = getattr(importlib.import_module(f".{module}", __name__), function)
    out_dir = Path(out_dir)
    analysis(runs, curves, gradflow, out_dir)
    missing = [p for p in outputs(name) if not (out_dir / p).exists()]
    if missing:  # a broken analysis must not look finished to the workflow
        raise RuntimeError(f"paper analysis {name!r} did not write {missing}")
    return [out_dir / p for p in outputs(name)]


def analyse_files(name: str, tables, out_dir) -> list[Path]:
    """`analyse` from the aggregated files: `tables` maps runs, curves and gradflow to their
    parquet paths (the workflow's paper rule passes its input)."""
    import pandas as pd
    return analyse(name, *(pd.read_parquet(tables[k]) for k in ("runs", "curves", "gradflow")),
                   out_dir)


def curate(study_dir, curated_root=None, paper: str | None = None):
    """Copy and thin a finished study's aggregated rows into curated_root/<study>/ and write its
    tables and figures there (see curated.py)."""
    from .curated import CURATED_ROOT, curate as _curate
    return _curate(study_dir, curated_root or CURATED_ROOT, paper)


def regenerate(names=None, curated_root=None) -> list[Path]:
    """Rewrite every curated study's (or the named ones') tables and figures from its rows."""
    from .curated import CURATED_ROOT, regenerate as _regenerate
    return _regenerate(names, curated_root or CURATED_ROOT)
