"""Success, divergence and final loss against the sequence length or the clipping threshold:
Pascanu 2013 (Fig. 7), Le 2015, Hochreiter & Schmidhuber 1997, Arjovsky 2016 (copy) and the
clipping sweep.

Every analysis takes the aggregated tables (runs, curves, gradflow) and an output folder and
writes the tables and figures `rnnbench.papers.outputs(name)` lists. Rates carry Wilson 95 %
intervals, losses a bootstrap 95 % interval of the median over seeds; titles state what the
rows show (computed from them).
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd

from .. import tasks
from . import common
from ..plots import band
from .common import HALF, colours, fmt_length, length_axis, save, set_title

LINE_STYLES = ("-", "--", ":", "-.")


# --- the studies -----------------------------------------------------------------------------
def pascanu2013(runs, curves, gradflow, out_dir):
    """Fig. 7: success rate vs T per (method, clipping), one panel per task."""
    _success_study(runs, out_dir, line_by=["method", "clip"], panel_by="task")


def hochreiter1997(runs, curves, gradflow, out_dir):
    """LSTM vs tanh RNN: success rate vs T, one panel per task."""
    _success_study(runs, out_dir, line_by=["method"], panel_by="task")


def le2015(runs, curves, gradflow, out_dir):
    """IRNN vs tanh RNN vs LSTM on adding: success rate and final MSE vs T."""
    rates = _success_study(runs, out_dir, line_by=["method"], panel_by=None)
    final_loss_vs_T(rates, runs, out_dir, "final MSE")


def arjovsky2016_copy(runs, curves, gradflow, out_dir):
    """Copy: final cross-entropy vs T against the 10 ln 8/(T+20) baseline; learning curves."""
    by = ["method", "T"]
    rates = common.rate_rows(runs, by) if not runs.empty else _empty_rates(by)
    table = rates[by + ["n_runs", "median_final_eval_loss", "final_loss_lo", "final_loss_hi",
                        "baseline_loss", "n_solved", "success_rate", "n_diverged"]].copy()
    table.insert(len(by) + 5, "loss_over_baseline",
                 table["median_final_eval_loss"] / table["baseline_loss"])
    table.insert(len(by) + 6, "below_baseline", table["final_loss_hi"] < table["baseline_loss"])
    common.write_tables({"loss_vs_baseline": table}, out_dir)
    final_loss_vs_T(rates, runs, out_dir, "final cross-entropy (nats per step)")
    learning_curves(curves, runs, out_dir, "eval cross-entropy (nats per step)")


def clipping(runs, curves, gradflow, out_dir):
    """Success and divergence rate vs clipping threshold, norm vs value vs none."""
    by = ["method", "clip", "clip_threshold"]
    rates = common.rate_rows(runs, by) if not runs.empty else _empty_rates(by)
    rates.loc[rates["clip"] == "none", "clip_threshold"] = math.nan  # the threshold is unused
    table = rates[by + ["n_runs", "n_solved", "success_rate", "success_lo", "success_hi",
                        "n_diverged", "divergence_rate", "divergence_lo", "divergence_hi",
                        "median_steps_to_solve", "median_final_eval_loss", "baseline_loss"]]
    common.write_tables({"clipping": table}, out_dir)
    clipping_vs_threshold(rates, runs, out_dir)


# --- shared pieces ---------------------------------------------------------------------------
def _empty_rates(by):
    return common.rate_rows(pd.DataFrame(columns=[*by, "solved", "diverged", "final_eval_loss",
                                                  "steps_to_solve", "baseline_loss"]), by)


def _success_study(runs, out_dir, line_by, panel_by):
    """success.csv|md (per line, panel and T) and longest_T.csv|md, and success_vs_T."""
    keys = line_by + ([panel_by] if panel_by else [])
    by = keys + ["T"]
    rates = common.rate_rows(runs, by) if not runs.empty else _empty_rates(by)
    table = rates[by + ["n_runs", "n_solved", "success_rate", "success_lo", "success_hi",
                        "median_steps_to_solve", "n_diverged", "divergence_rate",
                        "median_final_eval_loss", "baseline_loss"]]
    longest = common.longest_solved(rates, keys)
    common.write_tables({"success": table, "longest_T": longest}, out_dir)
    success_vs_T(rates, longest, runs, out_dir, line_by, panel_by)
    return rates


def _lines(rates, line_by):
    """(line key tuple, label, method, line style) per line, in table order: the colour is the
    method's, the style tells its variants (e.g. clipping off) apart."""
    variants = [c for c in line_by if c != "method"]
    keys = [k if isinstance(k, tuple) else (k,) for k, _ in
            rates.groupby(line_by, dropna=False, sort=False)]
    # variant styles: solid first; a variant that switches something off ("none") dashed
    found = sorted({tuple(dict(zip(line_by, k))[c] for c in variants) for k in keys},
                   key=lambda v: (any(x == "none" for x in v), [str(x) for x in v]))
    lines = []
    for key in keys:
        values = dict(zip(line_by, key))
        variant = tuple(values[c] for c in variants)
        style = LINE_STYLES[found.index(variant) % len(LINE_STYLES)]
        lines.append((key, _label(values, variants), values["method"], style))
    return lines


def _label(values: dict, variants) -> str:
    return ", ".join([str(values["method"])] + [f"{c}={values[c]}" for c in variants])


def _select(df, columns, key):
    mask = np.ones(len(df), dtype=bool)
    for c, v in zip(columns, key):
        mask &= (df[c] == v).to_numpy() if not (isinstance(v, float) and math.isnan(v)) \
            else df[c].isna().to_numpy()
    return df[mask]


def success_vs_T(rates, longest, runs, out_dir, line_by, panel_by):
    name = "success_vs_T"
    if rates.empty:
        return common.empty(out_dir, name, "Success rate vs sequence length")
    panels = list(pd.unique(rates[panel_by])) if panel_by else [None]
    fig, axes = common.figure(len(panels), ncols=2)
    palette = colours(runs)
    for ax, panel in zip(axes, panels):
        sub = rates if panel is None else rates[rates[panel_by] == panel]
        for key, label, method, style in _lines(sub, line_by):
            g = _select(sub, line_by, key).sort_values("T")
            band(ax, g["T"], g["success_rate"], g["success_lo"], g["success_hi"],
                 palette.get(method), label, style)
        length_axis(ax, sub["T"])
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("success rate\n(fraction of seeds, Wilson 95 %)")
        ax.axhline(HALF, color="0.6", lw=0.8, ls=":")
        ax.set_title(str(panel) if panel is not None else "")
        ax.legend(fontsize="small")
    common.shared_legend(fig, axes)
    set_title(fig, "Longest T solved by at least half of the seeds — "
              + longest_solved_phrase(longest, line_by, panel_by))
    return save(fig, out_dir, name)


MAX_LISTED = 4  # lines per panel named in a title; beyond, the best and the worst


def longest_solved_phrase(longest, line_by, panel_by) -> str:
    """The figure title's finding: each panel's longest T solved, per line; one value when
    every line has the same, only the best and the worst beyond MAX_LISTED lines."""
    if longest.empty:
        return "no runs"
    if longest["longest_T_solved"].isna().all():
        return "no configuration, at any tested T"
    variants = [c for c in line_by if c != "method"]
    groups = longest.groupby(panel_by, sort=False) if panel_by else [(None, longest)]
    parts = []
    for panel, g in groups:
        entries = [(_label(row, variants), row["longest_T_solved"]) for _, row in g.iterrows()]
        lengths = {fmt_length(T) for _, T in entries}
        if len(lengths) == 1:  # one answer for every line: say it once
            text = ("none at any T" if g["longest_T_solved"].isna().all()
                    else f"every line {lengths.pop()}")
        elif len(entries) > MAX_LISTED:
            ranked = sorted(entries, key=lambda e: -(0 if math.isnan(e[1]) else e[1]))
            entries = [ranked[0], ranked[-1]]
            text = f"best {entries[0][0]} {fmt_length(entries[0][1])}, worst {entries[1][0]} " \
                   f"{fmt_length(entries[1][1])}"
        else:
            text = ", ".join(f"{label} {fmt_length(T)}" for label, T in entries)
        parts.append(f"{panel}: {text}" if panel is not None else text)
    return "; ".join(parts)


def _baseline_curve(runs, lengths):
    """The task's input-independent baseline loss on a dense grid of T (one task)."""
    task = runs["task"].iloc[0]
    options = runs["task_options"].iloc[0] if "task_options" in runs else "{}"
    options = json.loads(options) if isinstance(options, str) else {}
    grid = np.unique(np.geomspace(min(lengths), max(lengths), 60).round().astype(int))
    grid = [T for T in grid if _valid_length(task, T, options)]
    return grid, [tasks.make(task, int(T), **options).baseline_loss for T in grid]


def _valid_length(task, T, options) -> bool:
    try:
        tasks.check(task, int(T), options)
    except ValueError:
        return False
    return True


def final_loss_vs_T(rates, runs, out_dir, ylabel):
    """Median final eval loss vs T per method (bootstrap 95 % band), the baseline dashed."""
    name = "final_loss_vs_T"
    if rates.empty:
        return common.empty(out_dir, name, "Final loss vs sequence length")
    fig, (ax,) = common.figure(1)
    palette = colours(runs)
    for method in pd.unique(rates["method"]):
        g = rates[rates["method"] == method].sort_values("T")
        band(ax, g["T"], common.positive(g["median_final_eval_loss"]),
             common.positive(g["final_loss_lo"]), common.positive(g["final_loss_hi"]),
             palette.get(method), method)
    grid, baseline = _baseline_curve(runs, rates["T"])
    ax.plot(grid, baseline, color="0.2", ls="--", lw=1.2, label="baseline (ignores the input)")
    length_axis(ax, rates["T"])
    ax.set_yscale("log")
    ax.set_ylabel(f"{ylabel}\n(median over seeds, 95 % bootstrap)")
    ax.legend(fontsize="small")
    set_title(fig, "Final loss below the input-independent baseline (95 % interval under it): "
              + _below_phrase(rates))
    return save(fig, out_dir, name)


def _below_phrase(rates) -> str:
    parts = []
    for method in pd.unique(rates["method"]):
        g = rates[rates["method"] == method].sort_values("T")
        below = g.loc[g["final_loss_hi"] < g["baseline_loss"], "T"].tolist()
        lengths = g["T"].tolist()
        if not below:
            where = "at no T"
        elif below == lengths[:len(below)]:
            where = f"T <= {int(below[-1])}" if len(below) < len(lengths) else "at every T"
        else:
            where = "T = " + ", ".join(str(int(t)) for t in below)
        parts.append(f"{method} {where}")
    return "; ".join(parts)


def learning_curves(curves, runs, out_dir, ylabel, panel_by="T", panel_title=None):
    """Eval loss vs step, one panel per value of `panel_by`, median over seeds with a
    bootstrap band, the task's input-independent baseline dashed."""
    name = "learning_curves"
    panel_title = panel_title or (lambda value: f"T = {value}")
    data = pd.DataFrame()
    if not curves.empty and not runs.empty:
        info = runs[list(dict.fromkeys(["run_id", "method", panel_by, "baseline_loss"]))]
        data = curves.dropna(subset=["eval_loss"]).merge(info, on="run_id")
    if data.empty:
        return common.empty(out_dir, name, "Learning curves", "no evaluation points")
    panels = list(pd.unique(runs[panel_by]))
    fig, axes = common.figure(len(panels), ncols=2)
    palette = colours(runs)
    for ax, panel in zip(axes, panels):
        sub = data[data[panel_by] == panel]
        for method in pd.unique(runs["method"]):
            g = sub[sub["method"] == method]
            if g.empty:
                continue
            wide = g.pivot_table(index="run_id", columns="step", values="eval_loss")
            logs = np.log(common.positive(wide.to_numpy().ravel()).reshape(wide.shape))
            lo, hi = common.bootstrap_rows(logs, np.nanmedian)
            with warnings.catch_warnings():  # a step where every run's loss is NaN stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                median = np.exp(np.nanmedian(logs, axis=0))
            band(ax, wide.columns, median, np.exp(lo), np.exp(hi), palette.get(method), method,
                 marker="")
        if len(sub):
            ax.axhline(sub["baseline_loss"].iloc[0], color="0.2", ls="--", lw=1.2,
                       label="baseline")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title(panel))
        ax.legend(fontsize="small")
    common.shared_legend(fig, axes)
    set_title(fig, "Evaluation loss during training (median over seeds, 95 % bootstrap band) "
              "against the input-independent baseline")
    return save(fig, out_dir, name)


def clipping_vs_threshold(rates, runs, out_dir):
    """Success (top) and divergence (bottom) rate vs theta, norm (left) and value (right)
    clipping; the unclipped runs at the right end of every panel ("none")."""
    name = "clipping_vs_threshold"
    if rates.empty:
        return common.empty(out_dir, name, "Clipping threshold")
    clipped = rates[rates["clip"] != "none"]
    none = rates[rates["clip"] == "none"]
    kinds = [k for k in ("norm", "value") if k in set(clipped["clip"])] or ["norm"]
    thetas = sorted(clipped["clip_threshold"].dropna().unique()) or [1.0]
    none_x = max(thetas) * 3
    fig, axes = common.figure(2 * len(kinds), ncols=len(kinds), size=(4.8, 3.2))
    palette = colours(runs)
    for row, (rate, what) in enumerate((("success", "success rate"),
                                        ("divergence", "divergence rate"))):
        for col, kind in enumerate(kinds):
            ax = axes[row * len(kinds) + col]
            methods = list(pd.unique(rates["method"]))
            for i, method in enumerate(methods):
                g = clipped[(clipped["method"] == method) & (clipped["clip"] == kind)]
                g = g.sort_values("clip_threshold")
                if len(g):
                    band(ax, g["clip_threshold"], g[f"{rate}_rate"], g[f"{rate}_lo"],
                         g[f"{rate}_hi"], palette.get(method), method)
                n = none[none["method"] == method]
                if len(n):
                    r = n.iloc[0]
                    dodge = 1 + 0.12 * (i - (len(methods) - 1) / 2)  # keep the bars apart
                    ax.errorbar([none_x * dodge], [r[f"{rate}_rate"]],
                                yerr=[[r[f"{rate}_rate"] - r[f"{rate}_lo"]],
                                      [r[f"{rate}_hi"] - r[f"{rate}_rate"]]],
                                color=palette.get(method), marker="s", mfc="white", capsize=3)
            ax.set_xscale("log")
            ticks = [*thetas, none_x]
            ax.set_xticks(ticks, [f"{t:g}" for t in thetas] + ["none"])
            ax.minorticks_off()
            ax.set_ylim(-0.03, 1.03)
            unit = "global gradient norm" if kind == "norm" else "per-element |gradient|"
            ax.set_xlabel(f"clip threshold θ ({unit})")
            ax.set_ylabel(f"{what}\n(fraction of seeds, Wilson 95 %)")
            ax.set_title(f"{kind} clipping")
            ax.legend(fontsize="small")
    common.shared_legend(fig, axes)
    set_title(fig, _clipping_phrase(rates))
    return save(fig, out_dir, name)


def _clipping_phrase(rates) -> str:
    def diverged(sub):
        return f"{int(sub['n_diverged'].sum())}/{int(sub['n_runs'].sum())}"
    parts = [f"Runs diverged without clipping: {diverged(rates[rates['clip'] == 'none'])}"]
    for kind in ("norm", "value"):
        sub = rates[rates["clip"] == kind]
        if len(sub):
            parts.append(f"{kind} clipping: {diverged(sub)}")
    best = rates.sort_values(["success_rate", "n_runs"], ascending=False, kind="stable")
    if len(best) and best["success_rate"].iloc[0] > 0:
        r = best.iloc[0]
        theta = "" if r["clip"] == "none" else f" θ={r['clip_threshold']:g}"
        parts.append(f"highest success: {r['method']} {r['clip']}{theta} "
                     f"({int(r['n_solved'])}/{int(r['n_runs'])})")
    else:
        parts.append("no run solved the task")
    return "; ".join(parts)
