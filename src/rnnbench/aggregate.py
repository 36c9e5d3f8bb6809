"""Collect the run folders of a study into tables, and summarise success with Wilson intervals.

    runs, curves, gradflow = collect("results/default")
    success_table(runs)       # one row per configuration (all fields but the seed)
    longest_T_solved(runs)    # per method: the longest T solved in at least half of the seeds
    aggregate_study("results/default", study)   # writes the tables below, atomically

Outputs of `aggregate_study`: runs.parquet, curves.parquet, gradflow.parquet,
tables/success.csv|md, tables/longest_T.csv|md.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import records
from .config import field_names

# Columns that never split a configuration (seed) or that are bookkeeping, not configuration.
NOT_GROUPED = ("seed",)
SUCCESS_THRESHOLD = 0.5


# --- reading ---------------------------------------------------------------------------------
def collect(study_dir, folders=None, allow_missing: bool = False):
    """Read every run folder under `study_dir/runs` (or only `folders`, names under `runs/`)
    into three tables.

    A folder without summary.parquet is an unfinished run: an error naming it, or skipped with
    `allow_missing`. A damaged file is always an error naming the file.
    """
    runs_dir = Path(study_dir) / "runs"
    if folders is None:
        folders = sorted(p for p in runs_dir.glob("*") if p.is_dir()) if runs_dir.is_dir() else []
    else:
        folders = [runs_dir / f for f in folders]
    summaries, curves, flows = [], [], []
    for folder in folders:
        if not records.finished(folder):
            if allow_missing:
                continue
            raise ValueError(f"run folder {folder} has no summary.parquet (unfinished or missing "
                             "run); rerun it or pass allow_missing=True")
        summaries.append(records.read_run_table(folder / "summary.parquet"))
        curves.append(records.read_run_table(folder / "curve.parquet"))
        flows.append(records.read_run_table(folder / "gradflow.parquet"))
    return tuple(records.concat_run_tables(t) for t in (summaries, curves, flows))


# --- statistics ------------------------------------------------------------------------------
def wilson_interval(k, n, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n; (nan, nan) when n == 0."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def config_columns(runs: pd.DataFrame) -> list[str]:
    """The run fields present in `runs` that identify a configuration (all but the seed)."""
    return [c for c in field_names() if c in runs.columns and c not in NOT_GROUPED]


def varying_columns(runs: pd.DataFrame, exclude=()) -> list[str]:
    """Configuration columns that take more than one value in `runs` (NaN counts as a value)."""
    return [c for c in config_columns(runs)
            if c not in exclude and runs[c].nunique(dropna=False) > 1]


def key_columns(runs: pd.DataFrame) -> list[str]:
    """Columns shown for a configuration: method, task, T, then whatever else varies."""
    first = [c for c in ("method", "task", "T") if c in runs.columns]
    return first + varying_columns(runs, exclude=first)


def success_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (every run field but the seed): counts, success rate with its
    Wilson 95% interval, median steps to solve (solved runs only), divergence rate, median final
    eval loss and the task's baseline loss."""
    columns = ["n_runs", "n_solved", "success_rate", "wilson_lo", "wilson_hi",
               "median_steps_to_solve", "divergence_rate", "median_final_eval_loss",
               "baseline_loss"]
    keys = key_columns(runs)
    if runs.empty:
        return pd.DataFrame(columns=keys + columns)
    rows = []
    groups = runs.groupby(config_columns(runs), dropna=False, sort=False)
    for _, g in groups:
        solved = g["solved"].eq(True)  # missing/NaN counts as not solved
        k, n = int(solved.sum()), len(g)
        lo, hi = wilson_interval(k, n)
        final = g["final_eval_loss"].replace([np.inf, -np.inf], np.nan)
        rows.append({**{c: g[c].iloc[0] for c in keys},
                     "n_runs": n, "n_solved": k, "success_rate": k / n,
                     "wilson_lo": lo, "wilson_hi": hi,
                     "median_steps_to_solve": g.loc[solved, "steps_to_solve"].median(),
                     "divergence_rate": g["diverged"].eq(True).mean(),
                     "median_final_eval_loss": final.median(),
                     "baseline_loss": g["baseline_loss"].iloc[0]})
    table = pd.DataFrame(rows, columns=keys + columns)
    return _sorted(table, runs, keys)


def longest_T_solved(runs: pd.DataFrame, threshold: float = SUCCESS_THRESHOLD,
                     success: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method (and per value of any other varying field): the largest T whose success rate
    is >= `threshold` (NaN if no T reaches it), its success rate, and the largest T tested.
    Shorter T need not all be solved: the rule looks at each T on its own. `success`: the
    runs' success_table, if the caller has it already."""
    table = success_table(runs) if success is None else success
    keys = [c for c in key_columns(runs) if c != "T"]
    columns = keys + ["longest_T_solved", "success_rate_at_longest", "max_T_tested",
                      "T_tested"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for _, g in table.groupby(keys, dropna=False, sort=False):
        ok = g[g["success_rate"] >= threshold]
        best = ok.loc[ok["T"].idxmax()] if len(ok) else None
        rows.append({**{c: g[c].iloc[0] for c in keys},
                     "longest_T_solved": best["T"] if best is not None else math.nan,
                     "success_rate_at_longest": best["success_rate"] if best is not None
                     else math.nan,
                     "max_T_tested": g["T"].max(),
                     "T_tested": ",".join(str(t) for t in sorted(g["T"]))})
    return pd.DataFrame(rows, columns=columns)


def _sorted(table, runs, keys):
    """Methods in the order they first appear (the study's order), then the other keys."""
    order = {m: i for i, m in enumerate(pd.unique(runs["method"]))} if "method" in runs else {}
    rank = table["method"].map(order) if order else pd.Series(0, index=table.index)
    others = [c for c in keys if c != "method"]
    return (table.assign(_rank=rank).sort_values(["_rank", *others], kind="stable")
            .drop(columns="_rank").reset_index(drop=True))


# --- writing ---------------------------------------------------------------------------------
def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (no dependency on `tabulate`)."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "—" if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---"
                          for c in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def write_table(df: pd.DataFrame, stem) -> list[Path]:
    """`stem`.csv and `stem`.md, atomically."""
    stem = Path(stem)
    return [records.write_csv(df, stem.with_suffix(".csv")),
            records.write_text(to_markdown(df), stem.with_suffix(".md"))]


def aggregate_study(study_dir, study=None, allow_missing: bool = False) -> dict[str, Path]:
    """Collect a study's runs (only the study's run ids when `study` is given, so folders of
    older configurations are ignored) and write the aggregated tables. Returns name -> path."""
    study_dir = Path(study_dir)
    folders = None
    if study is not None:
        configs = study.runs()  # built and validated once: each call builds them all again
        plan = pd.DataFrame({"run_id": [cfg.run_id() for cfg in configs],
                             "label": [study.label(cfg) for cfg in configs]})
        folders = [study.folder(cfg) for cfg in configs]
    runs, curves, gradflow = collect(study_dir, folders, allow_missing=allow_missing)
    if study is not None and not runs.empty:
        runs = runs.drop(columns=["label"], errors="ignore").merge(plan, on="run_id", how="left")
        runs.insert(1, "label", runs.pop("label"))
    out = {
        "runs": records.write_parquet(runs, study_dir / "runs.parquet"),
        "curves": records.write_parquet(curves, study_dir / "curves.parquet"),
        "gradflow": records.write_parquet(gradflow, study_dir / "gradflow.parquet"),
    }
    tables = study_dir / "tables"
    success = success_table(runs)
    out["success"], out["success_md"] = write_table(success, tables / "success")
    out["longest_T"], out["longest_T_md"] = write_table(
        longest_T_solved(runs, success=success), tables / "longest_T")
    return out
