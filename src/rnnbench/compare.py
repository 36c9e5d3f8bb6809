"""Compare methods against a baseline method: effect sizes, intervals, tests, a verdict, and a
leaderboard of every method.

    comparison_table(runs, baseline="tanh-RNN")   # one row per (method, task, T) vs the baseline
    leaderboard(runs)                              # every method ranked by the cells it solves
    write_comparison("results/my-study", "tanh-RNN")   # both tables as .csv/.md, atomically

A *cell* is one (task, T) and the value of any other run field that varies within a method
(an axis such as `clip`); fields that only differ between methods (`cell`, `init`, ...) are
what the methods are. Cells are never pooled: each extra field is an extra key, and a method's
row is matched with the baseline's runs of the same cell.

Statistics, per cell, method (k1 solved of n1 runs) against baseline (k2 of n2):
- success_diff = k1/n1 - k2/n2, with Newcombe's hybrid score 95% interval (Newcombe 1998,
  method 10), built from the two Wilson intervals.
- loss_ratio = median final_eval_loss of the method / that of the baseline, with a percentile
  bootstrap 95% interval (each group resampled on its own; fixed seed, so tables reproduce).
  A diverged run (flagged `diverged`, or a NaN/inf loss) counts as loss +inf, the worst: a
  median that falls on a diverged run is inf; x/inf = 0, inf/x = inf, and two infinite (or two
  zero) medians tie: ratio 1.
- p_value: two-sided Fisher exact test on the 2x2 solved/not-solved counts; when both success
  rates are 0 or both are 1 (success says nothing) a two-sided Mann-Whitney U test on
  final_eval_loss (diverged = worst) instead. Column `test` says which.
- p_adjusted: Holm's step-down adjustment over each method's rows (its cells): a method's
  verdict answers "does it beat the baseline on this benchmark", and does not change with
  the number of other methods in the table.
- verdict: "better" or "worse" when p_adjusted < alpha (0.05), by the sign of the effect the
  test measured: success_diff for Fisher, prob_lower_loss - 1/2 for Mann-Whitney (the chance
  that a method run ends with a lower loss than a baseline run, ties counting half);
  "no evidence" otherwise.

Leaderboard: a method solves a cell when its success rate >= threshold (0.5). Methods are
ranked by cells solved (more first), then mean success rate over their cells (higher first),
then the median over cells of the method's median loss relative to the best method's in that
cell (lower first; the ratio rule above). Methods equal on all three share a rank.

Tuning on validation seeds (study key `compare: {..., tune: lr, validation_seeds: [...]}`,
`select_tuned`): the runs of the validation seeds choose, per method and cell, the value of the
tuned axis with the lowest median final_eval_loss (diverged = +inf; ties: the first value in
sorted order); the comparison and the leaderboard then use only the other (test) seeds' runs
at that value, and never the test runs' losses to choose. The tuned column is renamed
`tuned_<axis>` there, so that it is not a cell key: each method is compared at its own choice.
The validation runs must be evaluated on other held-out sequences than the test runs (another
`eval_seed`; the study loader checks this).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import config_columns, wilson_interval, write_table

ALPHA = 0.05
N_BOOT = 2000
BOOT_SEED = 0
SUCCESS_THRESHOLD = 0.5
VERDICTS = ("better", "worse", "no evidence")
FISHER, MANN_WHITNEY = "fisher", "mann-whitney"
COLUMNS = ["method", "baseline", "task", "T", "n_runs", "success_rate", "baseline_success_rate",
           "success_diff", "success_diff_lo", "success_diff_hi", "loss_ratio", "loss_ratio_lo",
           "loss_ratio_hi", "p_value", "p_adjusted", "verdict"]
EXTRA_COLUMNS = ["baseline_n_runs", "n_solved", "baseline_n_solved", "median_loss",
                 "baseline_median_loss", "prob_lower_loss", "test"]
LEADERBOARD_COLUMNS = ["rank", "method", "cells_solved", "cells", "mean_success_rate",
                       "median_relative_loss", "n_runs"]
REQUIRED = ("method", "task", "T", "solved", "final_eval_loss")


# --- statistics ------------------------------------------------------------------------------
def newcombe_interval(k1, n1, k2, n2, z: float = 1.96) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) for p1 - p2 = k1/n1 - k2/n2, from the
    Wilson intervals (l1, u1), (l2, u2) of each proportion:
    (d - sqrt((p1-l1)^2 + (u2-p2)^2), d + sqrt((u1-p1)^2 + (p2-l2)^2)). (nan, nan) if n = 0."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def worst_if_diverged(loss, diverged=None) -> np.ndarray:
    """Final losses with every diverged run (NaN/inf loss, or flagged) set to +inf."""
    loss = np.asarray(loss, dtype=float).copy()
    bad = ~np.isfinite(loss)
    if diverged is not None:
        bad |= np.asarray(pd.Series(diverged).eq(True), dtype=bool)
    loss[bad] = np.inf
    return loss


def loss_ratio(num, den):
    """num / den for losses in [0, inf], elementwise: x/inf = 0, inf/x = inf, x/0 = inf, and
    equal infinite or zero medians tie (1), so the ratio is defined for every pair."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = num / den
    ratio = np.where(num == den, 1.0, ratio)  # inf/inf and 0/0
    return ratio if ratio.ndim else float(ratio)


def median_ratio(a, b) -> float:
    """median(a) / median(b) with diverged runs (NaN/inf) as +inf; see `loss_ratio`."""
    a, b = _losses(a, "a"), _losses(b, "b")
    return loss_ratio(np.median(a), np.median(b))


def bootstrap_ratio_interval(a, b, n_boot: int = N_BOOT, confidence: float = 0.95,
                             seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of median(a) / median(b): `a` and `b` are resampled with
    replacement, each on its own, `n_boot` times with numpy's generator seeded by `seed` (the
    same inputs always give the same interval). NaN/inf losses count as +inf (worst) and the
    ratio follows `loss_ratio`; the percentiles are order statistics (inverted CDF), so infinite
    replicates need no arithmetic."""
    a, b = _losses(a, "a"), _losses(b, "b")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    med_a = np.median(a[rng.integers(0, len(a), size=(n_boot, len(a)))], axis=1)
    med_b = np.median(b[rng.integers(0, len(b), size=(n_boot, len(b)))], axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(loss_ratio(med_a, med_b), [tail, 1 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest of m p-values
    becomes max over j <= i of min(1, (m - j + 1) p_(j)) (monotone, capped at 1; the same as
    statsmodels' multipletests(method="holm")). NaN p-values stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[(p < 0) | (p > 1)].tolist()}")
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def fisher_test(k1, n1, k2, n2) -> float:
    """Two-sided Fisher exact p-value of k1/n1 vs k2/n2 solved."""
    from scipy import stats  # here: scipy.stats would delay the Snakemake process's start

    return float(stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]],
                                    alternative="two-sided").pvalue)


def mann_whitney_test(a, b) -> tuple[float, float]:
    """Two-sided Mann-Whitney U p-value of losses `a` vs `b` (diverged = +inf) and the chance
    that a value of `a` is below one of `b`, ties counting half. Identical samples: p = 1."""
    a, b = _losses(a, "a"), _losses(b, "b")
    if np.all(np.concatenate([a, b]) == a[0]):  # all tied: the test has nothing to rank
        return 1.0, 0.5
    from scipy import stats

    res = stats.mannwhitneyu(a, b, alternative="two-sided")
    return float(res.pvalue), 1.0 - float(res.statistic) / (len(a) * len(b))


def _losses(x, name) -> np.ndarray:
    x = worst_if_diverged(np.atleast_1d(np.asarray(x, dtype=float)).ravel())
    if x.size == 0:
        raise ValueError(f"{name}: no losses (empty sample)")
    return x


# --- tables ----------------------------------------------------------------------------------
def cell_columns(runs: pd.DataFrame) -> list[str]:
    """The columns that define a cell: task, T, then every other configuration column that takes
    more than one value within some method's (task, T) (an axis; never pooled). Columns that
    only differ between methods describe the methods and are not cell keys, nor are those that
    follow from (task, T) within a method (a hidden size that match_params sets per task)."""
    first = [c for c in ("task", "T") if c in runs.columns]
    if runs.empty:
        return first
    within = runs.groupby(["method", *first], dropna=False)
    extra = [c for c in config_columns(runs) if c not in ("method", *first)
             and within[c].nunique(dropna=False).max() > 1]
    return first + extra


def check_baseline_cells(runs: pd.DataFrame, baseline: str, where: str = "comparison") -> None:
    """Raise ValueError unless `baseline` is one of the methods of `runs`, another method is
    there to compare, and the baseline has runs in every cell where another method has runs."""
    missing = [c for c in ("method", "task", "T") if c not in runs.columns]
    if missing:
        raise ValueError(f"{where}: runs table lacks column(s) {missing}")
    methods = list(pd.unique(runs["method"]))
    if baseline not in methods:
        raise ValueError(f"{where}: baseline {baseline!r} is not one of the methods {methods}")
    if len(methods) < 2:
        raise ValueError(f"{where}: only the baseline {baseline!r} has runs; nothing to compare")
    keys = cell_columns(runs)
    cells = _cell_ids(runs, keys)
    have = set(cells[runs["method"] == baseline])
    lacking = runs.loc[~cells.isin(have), keys].drop_duplicates()
    if len(lacking):
        first = ", ".join(f"{k}={v}" for k, v in lacking.iloc[0].items())
        raise ValueError(f"{where}: baseline {baseline!r} has no runs in cell {first}"
                         + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else "")
                         + "; add those runs or drop the cell from the other methods")


def comparison_table(runs: pd.DataFrame, baseline: str, alpha: float = ALPHA,
                     n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> pd.DataFrame:
    """One row per (method, cell) for every method but `baseline`, compared with the baseline's
    runs of the same cell (the module docstring gives the statistics and the verdict rule).

    Columns: COLUMNS (a fixed order others rely on), then EXTRA_COLUMNS, then the cell keys
    beyond task and T. Rows: methods in study order, then the cell keys. Empty `runs` gives an
    empty table; a baseline that is not a method, or that lacks runs in a cell another method
    has, is a ValueError naming it."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS + EXTRA_COLUMNS)
    missing = [c for c in REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"comparison: runs table lacks column(s) {missing}")
    check_baseline_cells(runs, baseline)
    keys = cell_columns(runs)
    columns = COLUMNS + EXTRA_COLUMNS + keys[2:]
    runs = runs.assign(_cell=_cell_ids(runs, keys), _solved=runs["solved"].eq(True),
                       _loss=worst_if_diverged(runs["final_eval_loss"], runs.get("diverged")))
    base = {cell: g for cell, g in runs[runs["method"] == baseline].groupby("_cell", sort=False)}
    rows = []
    for (method, cell), g in runs[runs["method"] != baseline].groupby(
            ["method", "_cell"], sort=False):
        b = base[cell]
        k1, n1, k2, n2 = int(g["_solved"].sum()), len(g), int(b["_solved"].sum()), len(b)
        p1, p2 = k1 / n1, k2 / n2
        lo, hi = newcombe_interval(k1, n1, k2, n2)
        ratio_lo, ratio_hi = bootstrap_ratio_interval(g["_loss"], b["_loss"], n_boot=n_boot,
                                                      seed=seed)
        p_mw, prob_lower = mann_whitney_test(g["_loss"], b["_loss"])
        uninformative = (k1 == 0 and k2 == 0) or (k1 == n1 and k2 == n2)
        test = MANN_WHITNEY if uninformative else FISHER
        rows.append({
            "method": method, "baseline": baseline,
            **{c: g[c].iloc[0] for c in keys},
            "n_runs": n1, "success_rate": p1, "baseline_success_rate": p2,
            "success_diff": p1 - p2, "success_diff_lo": lo, "success_diff_hi": hi,
            "loss_ratio": median_ratio(g["_loss"], b["_loss"]),
            "loss_ratio_lo": ratio_lo, "loss_ratio_hi": ratio_hi,
            "p_value": p_mw if uninformative else fisher_test(k1, n1, k2, n2),
            "baseline_n_runs": n2, "n_solved": k1, "baseline_n_solved": k2,
            "median_loss": float(np.median(g["_loss"])),
            "baseline_median_loss": float(np.median(b["_loss"])),
            "prob_lower_loss": prob_lower, "test": test})
    table = pd.DataFrame(rows)
    table = _in_study_order(table, runs, keys)
    table["p_adjusted"] = np.nan
    for _, rows in table.groupby("method", sort=False):  # one family per method
        table.loc[rows.index, "p_adjusted"] = holm(rows["p_value"])
    effect = np.where(table["test"] == FISHER, table["success_diff"],
                      table["prob_lower_loss"] - 0.5)
    significant = table["p_adjusted"] < alpha
    table["verdict"] = np.select([significant & (effect > 0), significant & (effect < 0)],
                                 ["better", "worse"], "no evidence")
    return table[columns]


def leaderboard(runs: pd.DataFrame, threshold: float = SUCCESS_THRESHOLD) -> pd.DataFrame:
    """Every method ranked by the number of cells it solves (success rate >= `threshold`).

    Ties are broken by the mean success rate over the method's cells (higher first), then by
    the median over its cells of its median final loss relative to the best method's median in
    that cell (lower first; diverged runs are +inf, ratios as `loss_ratio`). Methods equal on
    all three share the rank (1, 2, 2, 4) and keep the study's order. `cells` counts the cells
    where the method has runs. Empty `runs` gives an empty table."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if runs.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    missing = [c for c in REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"leaderboard: runs table lacks column(s) {missing}")
    keys = cell_columns(runs)
    runs = runs.assign(_cell=_cell_ids(runs, keys), _solved=runs["solved"].eq(True),
                       _loss=worst_if_diverged(runs["final_eval_loss"], runs.get("diverged")))
    per_cell = (runs.groupby(["method", "_cell"], sort=False)
                .agg(success_rate=("_solved", "mean"), median_loss=("_loss", "median"),
                     n_runs=("_solved", "size")).reset_index())
    best = per_cell.groupby("_cell")["median_loss"].transform("min")
    per_cell["relative_loss"] = loss_ratio(per_cell["median_loss"], best)
    per_cell["solved"] = per_cell["success_rate"] >= threshold
    board = (per_cell.groupby("method", sort=False)
             .agg(cells_solved=("solved", "sum"), cells=("_cell", "size"),
                  mean_success_rate=("success_rate", "mean"),
                  median_relative_loss=("relative_loss", "median"), n_runs=("n_runs", "sum"))
             .reset_index())
    board["cells_solved"] = board["cells_solved"].astype(int)
    order = ["cells_solved", "mean_success_rate", "median_relative_loss"]
    board = board.sort_values(order, ascending=[False, False, True], kind="stable")
    first_of_tie = board[order].ne(board[order].shift()).any(axis=1)  # equal rows share a rank
    position = pd.Series(np.arange(1, len(board) + 1), index=board.index)
    board["rank"] = position.where(first_of_tie).ffill().astype(int)
    return board[LEADERBOARD_COLUMNS].reset_index(drop=True)


def write_comparison(study_dir, baseline: str, tune: str | None = None,
                     validation_seeds=()) -> dict[str, Path]:
    """Read `study_dir`/runs.parquet and write tables/comparison.csv|md,
    tables/leaderboard.csv|md and tables/tuning.csv|md (the choices of `select_tuned`; empty
    without `tune`) atomically. Returns name -> path."""
    if not baseline:
        raise ValueError(f"{study_dir}: no baseline to compare with; set the study key "
                         "compare: {baseline: <method name>}")
    study_dir = Path(study_dir)
    runs = pd.read_parquet(study_dir / "runs.parquet")
    choices = pd.DataFrame(columns=["method", "task", "T"])
    if tune:
        runs, choices = select_tuned(runs, tune, validation_seeds)
    tables = study_dir / "tables"
    out = {}
    out["comparison"], out["comparison_md"] = write_table(comparison_table(runs, baseline),
                                                          tables / "comparison")
    out["leaderboard"], out["leaderboard_md"] = write_table(leaderboard(runs),
                                                            tables / "leaderboard")
    out["tuning"], out["tuning_md"] = write_table(choices, tables / "tuning")
    return out


def compared_runs(runs: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """The runs a study's comparison uses: with `tune` in the study's `compare` settings, the
    test runs at the values chosen on the validation seeds (`select_tuned`); else all."""
    if not settings.get("tune"):
        return runs
    return select_tuned(runs, settings["tune"], settings.get("validation_seeds", ()))[0]


def select_tuned(runs: pd.DataFrame, tune: str, validation_seeds,
                 score: str = "final_eval_loss") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Choose the value of the axis `tune` (e.g. lr) per method and cell on the validation
    seeds' runs, and keep the test runs (every other seed) at that value.

    The group of a choice is (method, task, T and any other cell key but `tune` and
    eval_seed); its score is the median of `score` over the group's validation runs at one
    value (diverged or NaN = +inf), the lowest wins, ties go to the first value in sorted
    order. Returns (test runs at the chosen values, with column `tune` renamed
    `tuned_<tune>`; one row per group: its keys, the chosen value, its validation median,
    the number of validation runs and every candidate's median as text). A group without
    validation runs, or without test runs at its chosen value, is a ValueError naming it."""
    validation_seeds = list(validation_seeds)
    missing = [c for c in ("method", "seed", tune, score) if c not in runs.columns]
    if missing:
        raise ValueError(f"tuning: runs table lacks column(s) {missing}")
    if not validation_seeds:
        raise ValueError(f"tuning {tune!r}: no validation seeds given")
    keys = ["method"] + [c for c in cell_columns(runs) if c not in (tune, "eval_seed")]
    is_validation = runs["seed"].isin(validation_seeds)
    validation, test = runs[is_validation], runs[~is_validation]
    if validation.empty or test.empty:
        which = "validation" if validation.empty else "test"
        raise ValueError(f"tuning {tune!r}: no {which} runs (validation seeds "
                         f"{validation_seeds}, seeds present {sorted(runs['seed'].unique())})")
    medians = (validation.assign(_loss=worst_if_diverged(validation[score],
                                                         validation.get("diverged")))
               .groupby(keys + [tune], sort=True, dropna=False)["_loss"]
               .agg(["median", "size"]).reset_index())
    choices = []
    for group, g in medians.groupby(keys, sort=False, dropna=False):
        best = g.sort_values([tune]).sort_values("median", kind="stable").iloc[0]
        candidates = ", ".join(f"{v:g}: {m:.4g}" if isinstance(v, float) else f"{v}: {m:.4g}"
                               for v, m in zip(g[tune], g["median"]))
        choices.append({**dict(zip(keys, group if isinstance(group, tuple) else (group,))),
                        tune: best[tune], "validation_median_loss": best["median"],
                        "validation_runs": int(best["size"]), "candidates": candidates})
    order = {m: i for i, m in enumerate(pd.unique(runs["method"]))}  # the study's order
    choices = (pd.DataFrame(choices).assign(_rank=lambda c: c["method"].map(order))
               .sort_values("_rank", kind="stable").drop(columns="_rank")
               .reset_index(drop=True))
    lacking = test[keys].drop_duplicates().merge(choices[keys], how="left", indicator=True)
    lacking = lacking[lacking["_merge"] == "left_only"]
    if len(lacking):
        first = ", ".join(f"{k}={v}" for k, v in lacking.iloc[0][keys].items())
        raise ValueError(f"tuning {tune!r}: no validation runs (seeds {validation_seeds}) for "
                         f"{first}; the choice would have to look at test runs")
    chosen = test.merge(choices[keys + [tune]], on=keys + [tune], how="inner")
    without = choices[keys + [tune]].merge(chosen[keys].drop_duplicates(), how="left",
                                           indicator=True)
    without = without[without["_merge"] == "left_only"]
    if len(without):
        first = ", ".join(f"{k}={v}" for k, v in without.iloc[0][keys + [tune]].items())
        raise ValueError(f"tuning {tune!r}: the value chosen on the validation runs has no "
                         f"test runs: {first}")
    chosen = chosen.rename(columns={tune: f"tuned_{tune}"})
    return chosen.reset_index(drop=True), choices


# --- helpers ---------------------------------------------------------------------------------
def _cell_ids(runs: pd.DataFrame, keys: list[str]) -> pd.Series:
    """One text id per cell (NaN-safe: NaN keys would not match as dict keys or tuples)."""
    if not keys:
        return pd.Series("", index=runs.index)
    return runs[keys].astype(str).agg("|".join, axis=1)


def _in_study_order(table: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(pd.unique(runs["method"]))}
    return (table.assign(_rank=table["method"].map(order))
            .sort_values(["_rank", *keys], kind="stable")
            .drop(columns="_rank").reset_index(drop=True))
