"""Figures of a study (matplotlib's Agg canvas; no pyplot state, safe in workers).

Each function takes the aggregated tables and a path stem and writes `stem.png` and `stem.pdf`
atomically (`formats=`: the study's `figure_formats`). Empty inputs give a figure with a note
instead of an error.

- success_vs_T     success rate vs T per method, Wilson 95% bars (Pascanu et al. 2013, Fig. 7)
- learning_curves  eval loss vs step per (task, T) panel, median over seeds with min-max band,
                   the task's baseline loss dashed
- grad_norms       gradient norm before clipping vs step, the clipping threshold dotted
- gradflow_vs_lag  ||dL/dh_{T-k}|| / ||dL/dh_T|| vs lag k at the start and end of training,
                   with the bound (beta_W beta_f)^k dashed
- comparison       forest plot of methods vs a baseline (rnnbench.compare.comparison_table):
                   success-rate difference and median-loss ratio with their 95% intervals
"""
from __future__ import annotations

import io
import math
import re
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation

from . import records
from .records import DEFAULT_FIGURE_FORMATS
from .aggregate import key_columns, success_table
from .compare import COLUMNS, EXTRA_COLUMNS, compared_runs, comparison_table

MAX_POINTS = 400  # per line: long curves are thinned to about this many steps
BAND_ALPHA = 0.2  # the shading of an interval band
# seaborn's "colorblind" palette, written out: importing seaborn (and scipy.stats with it) would
# cost more than drawing a figure of a small study.
COLORBLIND = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4",
              "#949494", "#ece133", "#56b4e9")
COMPARISON_COLUMNS = COLUMNS + EXTRA_COLUMNS  # the rest of a comparison table are cell keys


# --- shared helpers --------------------------------------------------------------------------
# Room around each panel of a "grid" figure, in inches: y tick labels as wide as "5×10⁻³" (a log
# axis spanning less than a decade) and a y label on the left, x tick labels and an x label
# below, a one-line title above; a legend as wide as its panel may reach into the right margin.
PANEL_MARGINS = {"left": 0.85, "right": 0.12, "bottom": 0.48, "top": 0.27}


def new_figure(n_panels: int = 1, ncols: int = 3, size=(4.2, 3.2), layout="constrained"):
    """A figure of `n_panels` panels of `size` inches, `ncols` a row. layout "grid": each panel
    in a cell of `size` with PANEL_MARGINS around it, for figures with no text beyond their
    panels' own; else a matplotlib layout engine. Constrained layout measures every tick label
    twice and makes the first save draw the figure once more: most of the cost of a study figure."""
    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    width, height = size[0] * ncols, size[1] * nrows
    grid = layout == "grid"
    fig = Figure(figsize=(width, height), layout="none" if grid else layout)
    FigureCanvasAgg(fig)
    if grid:
        m = PANEL_MARGINS
        fig.subplots_adjust(left=m["left"] / width, right=1 - m["right"] / width,
                            bottom=m["bottom"] / height, top=1 - m["top"] / height,
                            wspace=(m["left"] + m["right"]) / (size[0] - m["left"] - m["right"]),
                            hspace=(m["bottom"] + m["top"]) / (size[1] - m["bottom"] - m["top"]))
    # Titles at a fixed height (no panel has ticks or an offset text above it): matplotlib would
    # otherwise measure every panel's y axis at each draw to place them.
    with mpl.rc_context({"axes.titley": 1.0} if grid else {}):
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:max(n_panels, 1)])


def save(fig: Figure, path_stem, formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    """Write `path_stem`.<format> for each of `formats` (default png and pdf) atomically
    (rendered in memory, then renamed into place)."""
    stem = Path(path_stem)
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150)
        paths.append(records.write_bytes(buf.getvalue(), stem.with_name(f"{stem.name}.{fmt}")))
        # The first save placed the axes (in figure units, the same for every format). With no
        # engine left the next save neither lays out nor draws once more to do so; "none" would
        # leave a placeholder engine, which still costs that extra draw.
        with mpl.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)
    return paths


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


class PlainLogFormatter(LogFormatterSciNotation):
    """matplotlib's log-axis labels (10^k, 2×10^k) written with Unicode superscripts instead of
    mathtext: the same look without the mathtext parser, which would parse every distinct label
    again for the PNG and for the PDF."""

    def __call__(self, x, pos=None):
        label = super().__call__(x, pos)
        match = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
        if match is None:
            return label
        text = match.group(1).replace(r"\times", "×")
        return re.sub(r"\^\{(-?\d+)\}", lambda m: m.group(1).translate(_SUPERSCRIPT), text)


def log_axis(ax, which: str = "y") -> None:
    """A log scale on axis `which` labelled by PlainLogFormatter (as matplotlib labels it:
    decades as major labels, a few minor ones when the axis spans little)."""
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


def band(ax, x, y, lo, hi, colour, label, linestyle="-", marker="o"):
    """A line (with markers unless `marker` is None) and its interval as a shaded band."""
    x, y, lo, hi = (np.asarray(v, dtype=float) for v in (x, y, lo, hi))
    ax.plot(x, y, color=colour, ls=linestyle, marker=marker, ms=4, label=label)
    ax.fill_between(x, lo, hi, color=colour, alpha=BAND_ALPHA, lw=0)


def _empty(path_stem, title: str, note: str, formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    fig, (ax,) = new_figure(1, layout="grid")
    ax.set_title(title)
    ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return save(fig, path_stem, formats)


def line_labels(runs: pd.DataFrame) -> pd.Series:
    """Legend entry of each run: the method, plus the fields (other than task, T and seed) that
    vary within a method, e.g. `tanh-RNN, clip=none`. Indexed by run_id."""
    if "method" not in runs:
        runs = runs.assign(method="run")
    extra = [c for c in key_columns(runs) if c not in ("method", "task", "T")
             and runs.groupby("method")[c].nunique(dropna=False).max() > 1]
    labels = runs["method"].astype(str)
    for c in extra:
        labels = labels + f", {c}=" + runs[c].astype(str)
    return pd.Series(labels.values, index=runs["run_id"].values)


def _palette(runs: pd.DataFrame) -> dict:
    """Line label -> colour, lines ordered by method (study order), then by label."""
    labels = line_labels(runs)
    methods = runs["method"] if "method" in runs else pd.Series("run", runs.index)
    rank = {m: i for i, m in enumerate(pd.unique(methods))}
    order = sorted(set(labels), key=lambda lab: (
        min(rank[m] for m in methods[labels.values == lab]), lab))
    return {line: COLORBLIND[i % len(COLORBLIND)] for i, line in enumerate(order)}


def _panels(runs: pd.DataFrame) -> list[tuple]:
    """(task, T) pairs, in order; one panel each."""
    cols = [c for c in ("task", "T") if c in runs]
    return list(runs[cols].drop_duplicates().sort_values(cols).itertuples(index=False, name=None))


def _panel_title(runs, key) -> str:
    many_tasks = "task" in runs and runs["task"].nunique() > 1
    task, T = key
    return f"{task}, T={T}" if many_tasks else f"T={T}"


def _with_runs(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Join a per-step table with the run's task, T, line label and thresholds."""
    info = runs[["run_id", "task", "T"]].copy()
    info["line"] = line_labels(runs).values
    for c in ("clip", "clip_threshold", "baseline_loss"):
        if c in runs:
            info[c] = runs[c].values
    return df.merge(info, on="run_id", how="inner")


def _thin(df: pd.DataFrame, column: str = "step") -> pd.DataFrame:
    """Keep about MAX_POINTS distinct steps (every k-th one) so long runs stay cheap to draw."""
    steps = np.sort(df[column].unique())
    if len(steps) <= MAX_POINTS:
        return df
    keep = steps[:: math.ceil(len(steps) / MAX_POINTS)]
    return df[df[column].isin(keep)]


def _positive(s: pd.Series) -> pd.Series:
    """Values that a log axis can show: finite and > 0, the rest NaN."""
    s = pd.to_numeric(s, errors="coerce").astype(float)
    return s.where(np.isfinite(s) & (s > 0))


# --- figures ---------------------------------------------------------------------------------
def success_vs_T(runs: pd.DataFrame, path_stem, formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    """Success rate vs T, one line per method, Wilson 95% error bars; one panel per task."""
    title = "Success rate vs sequence length"
    if runs.empty:
        return _empty(path_stem, title, "no finished runs", formats)
    table = success_table(runs)
    labelled = runs.assign(line=line_labels(runs).values)
    # one line label per configuration row of the success table
    keys = [c for c in key_columns(runs) if c not in ("task", "T")]
    table = table.merge(labelled[keys + ["line"]].drop_duplicates(keys), on=keys, how="left")
    tasks = list(pd.unique(table["task"]))
    fig, axes = new_figure(len(tasks), layout="grid")
    palette = _palette(runs)
    lines = list(palette)
    for ax, task in zip(axes, tasks):
        sub = table[table["task"] == task]
        for i, line in enumerate(lines):
            g = sub[sub["line"] == line].sort_values("T")
            if g.empty:
                continue
            dodge = 1 + 0.02 * (i - (len(lines) - 1) / 2)  # keep error bars apart
            ax.errorbar(g["T"] * dodge, g["success_rate"],
                        yerr=[g["success_rate"] - g["wilson_lo"],
                              g["wilson_hi"] - g["success_rate"]],
                        marker="o", capsize=3, color=palette[line], label=line)
        ax.set_xscale("log")
        Ts = sorted(sub["T"].unique())
        ax.set_xticks(Ts, [str(t) for t in Ts])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("success rate (Wilson 95%)")
        ax.set_title(task if len(tasks) > 1 else title)
        ax.legend(fontsize="small")
    return save(fig, path_stem, formats)


def learning_curves(curves: pd.DataFrame, runs: pd.DataFrame, path_stem,
                    formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    """Eval loss vs step; one panel per (task, T), one line per method (median over seeds,
    min-max band), the task's baseline loss dashed; log y."""
    title = "Evaluation loss"
    data = pd.DataFrame() if curves.empty or runs.empty else _with_runs(curves, runs)
    if not data.empty:
        data = data.assign(eval_loss=_positive(data["eval_loss"])).dropna(subset=["eval_loss"])
    if data.empty:
        return _empty(path_stem, title, "no evaluation points", formats)
    return _per_panel(data, runs, "eval_loss", "eval loss", path_stem, _baseline, formats)


def grad_norms(curves: pd.DataFrame, runs: pd.DataFrame, path_stem,
               formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    """Gradient norm before clipping vs step (median over seeds, min-max band), log y; the
    clipping threshold dotted in panels where norm clipping is on."""
    title = "Gradient norm before clipping"
    data = pd.DataFrame() if curves.empty or runs.empty else _with_runs(curves, runs)
    if not data.empty:
        data = data.assign(grad_norm=_positive(data["grad_norm"])).dropna(subset=["grad_norm"])
    if data.empty:
        return _empty(path_stem, title, "no gradient norms recorded", formats)
    return _per_panel(_thin(data), runs, "grad_norm", "‖∇‖ before clipping", path_stem,
                      _clip_threshold, formats)


def _per_panel(data, runs, y, ylabel, path_stem, decorate, formats):
    panels = _panels(runs[runs["run_id"].isin(data["run_id"])])
    fig, axes = new_figure(len(panels), layout="grid")
    palette = _palette(runs)
    for ax, key in zip(axes, panels):
        sub = data[(data["task"] == key[0]) & (data["T"] == key[1])]
        # median over the seeds and the min-max band, one groupby for every line of the panel
        # (seaborn's lineplot estimates each step separately: most of a figure's cost)
        stats = sub.groupby(["line", "step"])[y].agg(["median", "min", "max"])
        for line in [lab for lab in palette if lab in stats.index.get_level_values("line")]:
            g = stats.loc[line]
            band(ax, g.index, g["median"], g["min"], g["max"], palette[line], line, marker=None)
        decorate(ax, sub)
        ax.set_xlabel("step")
        log_axis(ax, "y")
        ax.set_title(_panel_title(runs, key))
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small")
    return save(fig, path_stem, formats)


def _baseline(ax, sub):
    if "baseline_loss" in sub and sub["baseline_loss"].notna().any():
        ax.axhline(sub["baseline_loss"].dropna().iloc[0], color="0.3", ls="--", lw=1,
                   label="baseline")


def _clip_threshold(ax, sub):
    if "clip" not in sub:
        return
    for thr in sorted(sub.loc[sub["clip"] == "norm", "clip_threshold"].dropna().unique()):
        ax.axhline(thr, color="0.3", ls=":", lw=1, label=f"clip threshold {thr:g}")


def gradflow_vs_lag(gradflow: pd.DataFrame, runs: pd.DataFrame, path_stem,
                    formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    """||dL/dh_{T-k}|| relative to lag 0 vs lag k per method (median over seeds), at the start
    and end of training; the bound (beta_W beta_f)^k dashed in the method's colour; log y.
    Rows: (task, T); columns: phase."""
    title = "Gradient flow vs lag"
    data = pd.DataFrame() if gradflow.empty or runs.empty else _with_runs(gradflow, runs)
    if not data.empty:
        data = data[data["phase"].isin(["start", "end"])]
    if data.empty:
        return _empty(path_stem, title, "no gradient-flow profiles recorded", formats)
    data = data.assign(grad_norm=_positive(data["grad_norm"]), bound=_positive(data["bound"]))
    ref = (data.sort_values("lag").groupby(["run_id", "phase"])["grad_norm"].first()
           .rename("ref"))
    data = data.join(ref, on=["run_id", "phase"])
    data["relative"] = data["grad_norm"] / data["ref"]
    phases = [p for p in ("start", "end") if p in set(data["phase"])]
    panels = _panels(runs[runs["run_id"].isin(data["run_id"])])
    fig, axes = new_figure(len(panels) * len(phases), ncols=len(phases), layout="grid")
    palette = _palette(runs)
    for i, key in enumerate(panels):
        for j, phase in enumerate(phases):
            ax = axes[i * len(phases) + j]
            sub = data[(data["task"] == key[0]) & (data["T"] == key[1]) & (data["phase"] == phase)]
            med = sub.groupby(["line", "lag"])[["relative", "bound"]].median()
            for line in [lab for lab in palette if lab in med.index.get_level_values("line")]:
                g = med.loc[line].sort_index()
                ax.plot(g.index, g["relative"], color=palette[line], label=line)
                if g["bound"].notna().any():
                    ax.plot(g.index, g["bound"], color=palette[line], ls="--", lw=1)
            finite = sub["relative"].dropna()
            log_axis(ax, "y")
            if len(finite):  # the bound may explode: keep the axis on the measured norms
                ax.set_ylim(finite.min() / 10, max(finite.max(), 1) * 10)
            ax.set_xlabel("lag k")
            # Unicode, not mathtext: its parser would cost a worker more than drawing a panel.
            ax.set_ylabel("‖∂L/∂h(T−k)‖ / ‖∂L/∂h(T)‖")
            ax.set_title(f"{_panel_title(runs, key)}, {phase} of training")
            ax.legend(fontsize="small", title="dashed: (‖W‖₂·max|f′|)ᵏ", title_fontsize="small")
    return save(fig, path_stem, formats)


# Verdict -> (colour, marker): blue/orange/grey of the colour-blind palette, told apart by
# marker shape too.
VERDICT_STYLE = {"better": (COLORBLIND[0], "^"), "worse": (COLORBLIND[1], "v"),
                 "no evidence": (COLORBLIND[7], "o")}


def comparison(comparison: pd.DataFrame, path_stem, formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    """Forest plot of a comparison table (rnnbench.compare.comparison_table): one row of panels
    per task, one line per (method, T, other cell keys). Left: success-rate difference with its
    Newcombe 95% interval, zero dotted. Right: median final-loss ratio with its bootstrap 95%
    interval on a log axis, 1 dotted; a ratio of 0 or inf (diverged runs) is drawn at the
    panel's edge as an open marker. Colour and marker give the verdict."""
    title = "Method vs baseline"
    if comparison.empty:
        return _empty(path_stem, title, "no comparison rows", formats)
    table = comparison.reset_index(drop=True)
    baseline = ", ".join(map(str, pd.unique(table["baseline"])))
    extra = [c for c in table.columns if c not in COMPARISON_COLUMNS]  # cell keys beyond T
    tasks = list(pd.unique(table["task"]))
    most = max((table["task"] == t).sum() for t in tasks)
    fig, axes = new_figure(2 * len(tasks), ncols=2, size=(5.0, 0.38 * most + 1.4))
    xlim = _ratio_limits(table)
    for i, task in enumerate(tasks):
        sub = table[table["task"] == task]
        labels = [", ".join([str(r["method"]), f"T={r['T']}",
                             *(f"{c}={r[c]}" for c in extra)]) for _, r in sub.iterrows()]
        y = np.arange(len(sub))[::-1]  # first row on top
        left, right = axes[2 * i], axes[2 * i + 1]
        _forest(left, y, sub["success_diff"], sub["success_diff_lo"], sub["success_diff_hi"],
                sub["verdict"], None)
        left.axvline(0, color="0.3", ls=":", lw=1)
        left.set_xlim(-1.05, 1.05)
        left.set_xlabel("success rate − baseline's (Newcombe 95%)")
        _forest(right, y, sub["loss_ratio"], sub["loss_ratio_lo"], sub["loss_ratio_hi"],
                sub["verdict"], xlim)
        right.axvline(1, color="0.3", ls=":", lw=1)
        log_axis(right, "x")
        right.set_xlim(*xlim)
        right.set_xlabel("median final loss / baseline's (bootstrap 95%)")
        for ax in (left, right):
            ax.set_ylim(-0.7, len(sub) - 0.3)
            ax.set_yticks(y, labels if ax is left else [""] * len(sub))
            ax.grid(axis="x", color="0.9")
        name = f"{task}: " if len(tasks) > 1 else ""
        left.set_title(f"{name}success rate", fontsize="medium")
        right.set_title(f"{name}final loss (lower is better)", fontsize="medium")
    handles = [axes[0].scatter([], [], color=c, marker=m, label=v)
               for v, (c, m) in VERDICT_STYLE.items()]
    fig.legend(handles=handles, title="verdict (Holm-adjusted)", loc="outside lower center",
               ncols=len(handles), fontsize="small", title_fontsize="small")
    fig.suptitle(f"{title}: {', '.join(map(str, pd.unique(table['method'])))} "
                 f"vs {baseline}")
    return save(fig, path_stem, formats)


def comparison_of_runs(runs: pd.DataFrame, path_stem, compare: dict,
                       formats=DEFAULT_FIGURE_FORMATS) -> list[Path]:
    """The forest plot of a study with the key `compare`, from its runs: the comparison table is
    recomputed (seeded, so equal to tables/comparison.csv; read back from CSV it would lose its
    types) from the rows the comparison uses (with `compare.tune`: the test seeds at the chosen
    value)."""
    table = comparison_table(compared_runs(runs, compare), compare["baseline"])
    return comparison(table, path_stem, formats)


def _ratio_limits(table) -> tuple[float, float]:
    """A log-axis range around 1 holding every finite, positive ratio and interval end."""
    values = pd.concat([_positive(table[c]) for c in ("loss_ratio", "loss_ratio_lo",
                                                      "loss_ratio_hi")]).dropna()
    values = [1.0, *values]
    return min(values) / 2.5, max(values) * 2.5


def _forest(ax, y, point, lo, hi, verdicts, limits):
    """Points with horizontal interval bars; with `limits` (a log axis) 0 and inf are drawn at
    the axis edges, open, and NaN rows are left out."""
    point, lo, hi = (pd.to_numeric(v, errors="coerce").to_numpy(dtype=float)
                     for v in (point, lo, hi))
    off_axis = lo_open = hi_open = np.zeros(len(point), bool)
    if limits is not None:
        edges = (limits[0] * 1.4, limits[1] / 1.4)  # just inside the axis: markers stay whole

        def clip(v):
            return np.where(v <= 0, edges[0], np.where(np.isposinf(v), edges[1], v))
        off_axis = (point <= 0) | np.isposinf(point)
        lo_open, hi_open = lo <= 0, np.isposinf(hi)  # the bar runs off the axis: arrow ends
        point, lo, hi = clip(point), clip(lo), clip(hi)
    for yi, p, l, h, verdict, off, l_open, h_open in zip(y, point, lo, hi, verdicts, off_axis,
                                                         lo_open, hi_open):
        colour, marker = VERDICT_STYLE.get(verdict, VERDICT_STYLE["no evidence"])
        if np.isfinite(l) and np.isfinite(h):
            ax.plot([l, h], [yi, yi], color=colour, lw=2, solid_capstyle="butt")
            for end, is_open, arrow in ((l, l_open, "<"), (h, h_open, ">")):
                if is_open:
                    ax.plot([end], [yi], marker=arrow, ms=6, color=colour, ls="none")
        if np.isfinite(p):
            ax.plot([p], [yi], marker=marker, ms=8, color=colour,
                    markerfacecolor="white" if off else colour, ls="none")
        if off:  # name the value the open marker stands for
            ax.annotate("∞" if p > 1 else "0", (p, yi), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize="small", color=colour)
# --- fixed method colours --------------------------------------------------------------------
# Okabe & Ito's colour-blind-safe palette, plus Tol's wine. A method keeps its colour in every
# figure of every study (the paper figures of rnnbench.papers use this table); variants of a
# method (e.g. clipping off) change the line style, not the colour.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9",
             "bluish green": "#009E73", "yellow": "#F0E442", "blue": "#0072B2",
             "vermillion": "#D55E00", "reddish purple": "#CC79A7"}
WINE = "#882255"
METHOD_COLOURS = {
    "tanh-RNN": OKABE_ITO["blue"], "tanh": OKABE_ITO["blue"],
    "basic-tanh": OKABE_ITO["sky blue"], "smart-tanh": OKABE_ITO["blue"],
    "smart-tanh+Omega": WINE,
    "IRNN": OKABE_ITO["orange"], "relu": OKABE_ITO["orange"],
    "linear": OKABE_ITO["black"],
    "LSTM": OKABE_ITO["vermillion"], "GRU": OKABE_ITO["bluish green"],
    "expRNN": OKABE_ITO["reddish purple"],
}
_SPARE = ("#999999", OKABE_ITO["yellow"], "#332288", "#44AA99", "#117733", "#DDCC77")


def method_colour(method: str, index: int = 0) -> str:
    """The fixed colour of a method; a method outside the table gets a spare colour by its
    position `index` among the unknown methods of the figure."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return _SPARE[index % len(_SPARE)]


def method_colours(methods) -> dict:
    """method -> colour for the methods of one figure (unknown ones get distinct spares)."""
    unknown = [m for m in dict.fromkeys(methods) if m not in METHOD_COLOURS]
    return {m: method_colour(m, unknown.index(m) if m in unknown else 0)
            for m in dict.fromkeys(methods)}
