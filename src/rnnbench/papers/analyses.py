"""The table of paper analyses: name -> the function that writes its tables and figures, and
the files it writes. Light (no plotting imports): the study loader checks names against NAMES
and the workflow reads `outputs`; an analysis module is imported when it runs."""
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
    analysis = getattr(importlib.import_module(f".{module}", __package__), function)
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
