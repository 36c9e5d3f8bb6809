"""Statistics and drawing shared by the paper analyses.

Intervals: Wilson 95 % for rates (success, divergence: `aggregate.wilson_interval`), a
percentile bootstrap over seeds for everything else (losses, accuracies, decay rates), with a
fixed generator seed so that regenerated tables are identical byte for byte.
"""
from __future__ import annotations

import io
import math
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .. import records
from ..aggregate import wilson_interval, write_table
from ..plots import method_colours, new_figure

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
HALF = 0.5          # a configuration "solves" a length when at least half of its seeds do
TITLE_CHARS_PER_INCH = 10.5  # title characters per line, per inch of figure width


# --- statistics ------------------------------------------------------------------------------
def bootstrap_ci(values, statistic=np.mean, resamples: int = BOOTSTRAP_RESAMPLES,
                 level: float = LEVEL, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over the finite `values` (resampled with
    replacement); (nan, nan) without values, (v, v) for one value."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, len(values), size=(resamples, len(values)))]
    stats = statistic(samples, axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_rows(matrix, statistic=np.nanmean, resamples: int = BOOTSTRAP_RESAMPLES,
                   level: float = LEVEL, seed: int = BOOTSTRAP_SEED):
    """Per column of `matrix` (rows = seeds), the bootstrap interval of `statistic` over rows:
    (lo, hi) arrays. One row gives (row, row)."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape[0] <= 1:
        return matrix[0].copy(), matrix[0].copy()
    rng = np.random.default_rng(seed)
    index = rng.integers(0, matrix.shape[0], size=(resamples, matrix.shape[0]))
    with warnings.catch_warnings():  # a lag where every seed underflowed stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = statistic(matrix[index], axis=1)            # (resamples, columns)
        tail = (1 - level) / 2 * 100
        lo, hi = np.nanpercentile(stats, [tail, 100 - tail], axis=0)
    return lo, hi


def rate_rows(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per configuration `by`: runs, solved and diverged counts with Wilson 95 % intervals,
    median steps to solve, median final eval loss with a bootstrap interval, baseline loss."""
    rows = []
    for key, g in runs.groupby(by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        n = len(g)
        solved, diverged = int(g["solved"].eq(True).sum()), int(g["diverged"].eq(True).sum())
        final = g["final_eval_loss"].replace([np.inf, -np.inf], np.nan)
        lo, hi = wilson_interval(solved, n)
        dlo, dhi = wilson_interval(diverged, n)
        flo, fhi = bootstrap_ci(final, np.median)
        rows.append({**dict(zip(by, key)), "n_runs": n, "n_solved": solved,
                     "success_rate": solved / n, "success_lo": lo, "success_hi": hi,
                     "n_diverged": diverged, "divergence_rate": diverged / n,
                     "divergence_lo": dlo, "divergence_hi": dhi,
                     "median_steps_to_solve": g.loc[g["solved"].eq(True), "steps_to_solve"].median(),
                     "median_final_eval_loss": final.median(), "final_loss_lo": flo,
                     "final_loss_hi": fhi, "baseline_loss": g["baseline_loss"].iloc[0]})
    columns = [*by, "n_runs", "n_solved", "success_rate", "success_lo", "success_hi",
               "n_diverged", "divergence_rate", "divergence_lo", "divergence_hi",
               "median_steps_to_solve", "median_final_eval_loss", "final_loss_lo",
               "final_loss_hi", "baseline_loss"]
    return in_study_order(pd.DataFrame(rows, columns=columns), runs, by)


def in_study_order(table: pd.DataFrame, runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows ordered by method as the study lists them, then by the other keys."""
    if table.empty or "method" not in by:
        return table.reset_index(drop=True)
    rank = {m: i for i, m in enumerate(pd.unique(runs["method"]))}
    others = [c for c in by if c != "method"]
    return (table.assign(_rank=table["method"].map(rank))
            .sort_values(["_rank", *others], kind="stable").drop(columns="_rank")
            .reset_index(drop=True))


def longest_solved(rates: pd.DataFrame, by: list[str], length: str = "T") -> pd.DataFrame:
    """Per configuration `by` (without the length): the longest length solved in at least half
    of the seeds, the shortest length that is not, and the lengths tested."""
    rows = []
    for key, g in rates.groupby(by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = g.loc[g["success_rate"] >= HALF, length]
        failed = g.loc[g["success_rate"] < HALF, length]
        rows.append({**dict(zip(by, key)),
                     "longest_T_solved": ok.max() if len(ok) else math.nan,
                     "shortest_T_failed": failed.min() if len(failed) else math.nan,
                     "T_tested": ",".join(str(t) for t in sorted(g[length]))})
    return pd.DataFrame(rows, columns=[*by, "longest_T_solved", "shortest_T_failed", "T_tested"])


def fmt_length(value) -> str:
    return "none" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else str(int(value))


# --- writing ---------------------------------------------------------------------------------
def write_tables(tables: dict, out_dir) -> list[Path]:
    """name -> DataFrame, written as out_dir/tables/<name>.csv and .md."""
    paths = []
    for name, df in tables.items():
        paths += write_table(df, Path(out_dir) / "tables" / name)
    return paths


def save(fig, out_dir, name: str) -> list[Path]:
    """out_dir/figures/<name>.png and .pdf, atomically; no creation date in the PDF, so that a
    regenerated figure is the same file."""
    paths = []
    for fmt, metadata in (("png", None), ("pdf", {"CreationDate": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150, metadata=metadata)
        paths.append(records.write_bytes(buf.getvalue(),
                                         Path(out_dir) / "figures" / f"{name}.{fmt}"))
    return paths


def figure(n_panels: int = 1, ncols: int = 2, size=(4.6, 3.4)):
    return new_figure(n_panels, ncols=ncols, size=size)


def set_title(fig, text: str) -> None:
    """The figure's finding as its title, wrapped to the figure's width."""
    width = max(40, int(fig.get_figwidth() * TITLE_CHARS_PER_INCH))
    fig.suptitle("\n".join(textwrap.wrap(text, width, break_on_hyphens=False)),
                 fontsize="medium")


def shared_legend(fig, axes, ncols: int = 3) -> None:
    """One legend below the panels for the lines they share (each label once)."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncols=min(ncols, len(entries)), fontsize="small", frameon=False)


def note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def empty(out_dir, name: str, title: str, text: str = "no finished runs") -> list[Path]:
    fig, (ax,) = figure(1)
    set_title(fig, title)
    note(ax, text)
    ax.set_xticks([])
    ax.set_yticks([])
    return save(fig, out_dir, name)


def colours(runs: pd.DataFrame) -> dict:
    return method_colours(pd.unique(runs["method"])) if "method" in runs else {}


def length_axis(ax, lengths, label="sequence length T (steps)"):
    lengths = sorted({int(t) for t in lengths})
    ax.set_xscale("log")
    ax.set_xticks(lengths, [str(t) for t in lengths])
    ax.minorticks_off()
    ax.set_xlabel(label)


def positive(values) -> np.ndarray:
    """Finite, > 0 values (others NaN), for log axes and log fits."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)
