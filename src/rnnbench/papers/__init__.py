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
curated layout, analyses.py the table of analyses (re-exported here). This module stays light
(no plotting imports): the study loader checks names against NAMES, and the workflow reads
`outputs` to know the files.
"""
from __future__ import annotations

from pathlib import Path

from .analyses import (ANALYSES, FIGURE_FORMATS, NAMES, TABLE_FORMATS, analyse,  # noqa: F401
                       analyse_files, outputs)


def curate(study_dir, curated_root=None, paper: str | None = None):
    """Copy and thin a finished study's aggregated rows into curated_root/<study>/ and write its
    tables and figures there (see curated.py)."""
    from .curated import CURATED_ROOT, curate as _curate  # lazy: pandas, the analyses
    return _curate(study_dir, curated_root or CURATED_ROOT, paper)


def regenerate(names=None, curated_root=None) -> list[Path]:
    """Rewrite every curated study's (or the named ones') tables and figures from its rows."""
    from .curated import CURATED_ROOT, regenerate as _regenerate  # lazy, as in curate
    return _regenerate(names, curated_root or CURATED_ROOT)
