"""Sequential and permuted 8x8 digits: test accuracy per cell.

accuracy_table(runs): per (method, task), the mean test accuracy (1 - final eval error on the
whole 360-image test split) over seeds with a bootstrap 95 % interval, the best seed, the median
final cross-entropy and the number of diverged runs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import common
from .common import bootstrap_ci, save, set_title
from .success import learning_curves as _learning_curves

TASK_LABELS = {"digits": "sequential", "digits_permuted": "permuted"}


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    columns = ["method", "task", "n_runs", "accuracy", "accuracy_lo", "accuracy_hi",
               "best_accuracy", "median_final_eval_loss", "baseline_accuracy", "n_diverged"]
    rows = []
    for (method, task), g in runs.groupby(["method", "task"], sort=False):
        accuracy = 1.0 - pd.to_numeric(g["final_eval_error"], errors="coerce")
        lo, hi = bootstrap_ci(accuracy)
        rows.append({"method": method, "task": task, "n_runs": len(g),
                     "accuracy": accuracy.mean(), "accuracy_lo": lo, "accuracy_hi": hi,
                     "best_accuracy": accuracy.max(),
                     "median_final_eval_loss": g["final_eval_loss"].median(),
                     "baseline_accuracy": 1.0 - g["baseline_error"].iloc[0],
                     "n_diverged": int(g["diverged"].eq(True).sum())})
    table = pd.DataFrame(rows, columns=columns)
    return common.in_study_order(table, runs, ["method", "task"])


def analyse(runs, curves, gradflow, out_dir):
    table = accuracy_table(runs) if not runs.empty else accuracy_table(
        pd.DataFrame(columns=["method", "task", "final_eval_error", "final_eval_loss",
                              "baseline_error", "diverged"]))
    common.write_tables({"accuracy": table}, out_dir)
    accuracy_figure(table, runs, out_dir)
    learning_curves(curves, runs, out_dir)


def accuracy_figure(table, runs, out_dir):
    """Mean test accuracy per method (bootstrap 95 % bars), sequential and permuted side by
    side; the majority-class accuracy dotted."""
    name = "accuracy"
    if table.empty:
        return common.empty(out_dir, name, "Test accuracy")
    fig, (ax,) = common.figure(1, size=(5.6, 3.6))
    palette = common.colours(runs)
    methods = list(pd.unique(table["method"]))
    task_names = list(pd.unique(table["task"]))
    width = 0.8 / max(len(task_names), 1)
    for j, task in enumerate(task_names):
        sub = table[table["task"] == task].set_index("method").reindex(methods)
        x = np.arange(len(methods)) + (j - (len(task_names) - 1) / 2) * width
        for xi, (method, r) in zip(x, sub.iterrows()):
            if pd.isna(r["accuracy"]):
                continue
            ax.errorbar([xi], [r["accuracy"]], yerr=[[r["accuracy"] - r["accuracy_lo"]],
                                                     [r["accuracy_hi"] - r["accuracy"]]],
                        color=palette.get(method), marker="o" if j == 0 else "s",
                        mfc=None if j == 0 else "white", capsize=3, ls="")
        ax.plot([], [], color="0.3", marker="o" if j == 0 else "s",
                mfc=None if j == 0 else "white", ls="", label=TASK_LABELS.get(task, task))
    ax.axhline(table["baseline_accuracy"].iloc[0], color="0.4", ls=":", lw=1,
               label="majority class")
    ax.set_xticks(np.arange(len(methods)), methods)
    ax.set_xlabel("cell")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy\n(fraction of the 360 test images)")
    ax.legend(fontsize="small")
    set_title(fig, "Test accuracy, mean over seeds (95 % bootstrap): " + "; ".join(
        f"{TASK_LABELS.get(task, task)}: best {g.loc[g['accuracy'].idxmax(), 'method']} "
        f"{g['accuracy'].max():.1%}"
        for task, g in table.dropna(subset=["accuracy"]).groupby("task", sort=False)))
    return save(fig, out_dir, name)


def learning_curves(curves, runs, out_dir):
    """Test cross-entropy vs step, one panel per task, the class-frequency baseline dashed."""
    return _learning_curves(curves, runs, out_dir, "test cross-entropy (nats)", panel_by="task",
                            panel_title=lambda task: f"{TASK_LABELS.get(task, task)} digits")
