"""Vanishing and exploding gradients (Bengio et al. 1994; Pascanu et al. 2013 §2): how fast the
gradient-flow profiles of `rnnbench.diagnostics` decay with the lag k.

For a linear RNN, dh_T/dh_{T-k} = W_hh^k: the spectral norm of the Jacobian product decays like
rho^k (exactly, for a normal W_hh), so its fitted per-step rate is log rho. A saturating f'
(tanh) can only make it faster, and the bound (beta_W beta_f)^k caps it from above. The LSTM's
direct cell path carries the product of its forget gates instead.

    run_decay_rates(gradflow, runs)   one row per (run, phase): fitted rates, log rho, log bound
    decay_rates(gradflow, runs)       per (method, rho, forget bias, phase): mean over seeds
                                      with a bootstrap 95 % interval
    forget_products(gradflow, runs)   the LSTM's forget-gate product per (forget bias, phase)
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import seaborn as sns

from . import common
from .common import bootstrap_ci, save, set_title

PHASES = ("start", "end")
# inits whose init_scale is W_hh's spectral radius (identity and orthogonal: the gain, equal to it)
RHO_INITS = ("spectral", "orthogonal", "identity", "smart")
KEYS = ["method", "cell", "activation", "rho", "forget_bias", "phase"]
RUN_INFO = ["method", "cell", "activation", "init", "init_scale", "forget_bias", "seed", "T",
            "diverged", "spectral_radius_start", "spectral_radius_end"]


def decay_rate(lag, values) -> float:
    """Per-step decay rate of `values` along `lag`: the least-squares slope of log(values) on
    lag over the finite, nonzero values (nats per step; < 0 decays, > 0 explodes). NaN with
    fewer than two such lags."""
    lag = np.asarray(lag, dtype=float)
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values) & (values > 0)
    if ok.sum() < 2 or np.ptp(lag[ok]) == 0:
        return math.nan
    return float(np.polyfit(lag[ok], np.log(values[ok]), 1)[0])


def _log(x) -> float:
    return math.log(x) if x is not None and np.isfinite(x) and x > 0 else math.nan


def run_decay_rates(gradflow: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, phase in start/end): the decay rates of grad_norm, jacobian_norm and
    forget_product, log rho (rho = init_scale where the init sets W_hh's spectral radius), the
    log of W_hh's spectral radius measured at that phase, and log(beta_W beta_f), the bound's
    rate."""
    columns = ["run_id", *KEYS[:5], "seed", "phase", "rate_grad_norm", "rate_jacobian_norm",
               "log_rho", "log_spectral_radius", "log_bound_rate", "rate_forget_product",
               "lags_fitted", "diverged"]
    if gradflow.empty or runs.empty:
        return pd.DataFrame(columns=columns)
    info = runs.set_index("run_id")[[c for c in RUN_INFO if c in runs]]
    rows = []
    flows = gradflow[gradflow["phase"].isin(PHASES)]
    for (run_id, phase), g in flows.groupby(["run_id", "phase"], sort=False):
        if run_id not in info.index:
            continue
        r, g = info.loc[run_id], g.sort_values("lag")
        rho = float(r["init_scale"]) if r["init"] in RHO_INITS else math.nan
        jac = g["jacobian_norm"].to_numpy(dtype=float)
        rows.append({
            "run_id": run_id, "method": r["method"], "cell": r["cell"],
            "activation": r["activation"], "rho": rho, "forget_bias": float(r["forget_bias"]),
            "seed": int(r["seed"]), "phase": phase,
            "rate_grad_norm": decay_rate(g["lag"], g["grad_norm"]),
            "rate_jacobian_norm": decay_rate(g["lag"], jac),
            "log_rho": _log(rho),
            "log_spectral_radius": _log(r.get(f"spectral_radius_{phase}")),
            "log_bound_rate": decay_rate(g["lag"], g["bound"]),
            "rate_forget_product": decay_rate(g["lag"], g["forget_product"]),
            "lags_fitted": int((np.isfinite(jac) & (jac > 0)).sum()),
            "diverged": bool(r["diverged"]),
        })
    return _ordered(pd.DataFrame(rows, columns=columns), runs)


def _ordered(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(pd.unique(runs["method"]))}
    phase = {p: i for i, p in enumerate(PHASES)}
    keys = [c for c in ("rho", "forget_bias", "seed") if c in df]
    return (df.assign(_m=df["method"].map(rank), _p=df["phase"].map(phase))
            .sort_values(["_p", "_m", *keys], kind="stable").drop(columns=["_m", "_p"])
            .reset_index(drop=True))


def _mean_ci(values):
    values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    lo, hi = bootstrap_ci(finite)
    return (float(finite.mean()) if len(finite) else math.nan), lo, hi


def decay_rates(gradflow: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, cell, activation, rho, forget bias, phase): the mean decay rates over seeds
    with bootstrap 95 % intervals, log rho, the mean log spectral radius at that phase, the
    bound's mean log rate, and rate minus log spectral radius (0 for a linear cell with a
    normal W_hh)."""
    per_run = run_decay_rates(gradflow, runs)
    columns = [*KEYS, "n_runs", "rate_jacobian_norm", "rate_jacobian_lo", "rate_jacobian_hi",
               "rate_grad_norm", "rate_grad_lo", "rate_grad_hi", "log_rho",
               "log_spectral_radius", "log_bound_rate", "jacobian_rate_minus_log_radius",
               "n_diverged"]
    rows = []
    for key, g in per_run.groupby(KEYS, dropna=False, sort=False):
        jac, jlo, jhi = _mean_ci(g["rate_jacobian_norm"])
        grad, glo, ghi = _mean_ci(g["rate_grad_norm"])
        radius = pd.to_numeric(g["log_spectral_radius"]).mean()
        rows.append({**dict(zip(KEYS, key)), "n_runs": len(g),
                     "rate_jacobian_norm": jac, "rate_jacobian_lo": jlo, "rate_jacobian_hi": jhi,
                     "rate_grad_norm": grad, "rate_grad_lo": glo, "rate_grad_hi": ghi,
                     "log_rho": g["log_rho"].iloc[0], "log_spectral_radius": radius,
                     "log_bound_rate": pd.to_numeric(g["log_bound_rate"]).mean(),
                     "jacobian_rate_minus_log_radius": jac - radius,
                     "n_diverged": int(g["diverged"].sum())})
    return pd.DataFrame(rows, columns=columns)


def forget_products(gradflow: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """LSTM runs, per (method, forget bias, phase): the decay rate of the forget-gate product
    along the cell path (mean over seeds, bootstrap 95 %), the geometric-mean forget gate it
    implies, exp(rate), beside sigmoid(forget bias), the gate of a unit whose other inputs sum
    to zero; and the median product at lag T/2."""
    columns = ["method", "forget_bias", "phase", "n_runs", "rate_forget_product", "rate_lo",
               "rate_hi", "mean_forget_gate", "sigmoid_forget_bias", "product_at_half_T"]
    per_run = run_decay_rates(gradflow, runs)
    lstm = per_run[per_run["cell"] == "lstm"]
    rows = []
    for (method, bias, phase), g in lstm.groupby(["method", "forget_bias", "phase"], sort=False):
        rate, lo, hi = _mean_ci(g["rate_forget_product"])
        T = int(runs.loc[runs["run_id"].isin(g["run_id"]), "T"].iloc[0])
        at_half = gradflow[gradflow["run_id"].isin(g["run_id"]) & (gradflow["phase"] == phase)
                           & (gradflow["lag"] == T // 2)]["forget_product"]
        rows.append({"method": method, "forget_bias": bias, "phase": phase, "n_runs": len(g),
                     "rate_forget_product": rate, "rate_lo": lo, "rate_hi": hi,
                     "mean_forget_gate": math.exp(rate) if np.isfinite(rate) else math.nan,
                     "sigmoid_forget_bias": 1 / (1 + math.exp(-bias)),
                     "product_at_half_T": float(at_half.median()) if len(at_half) else math.nan})
    return pd.DataFrame(rows, columns=columns)


# --- the study -------------------------------------------------------------------------------
def analyse(runs, curves, gradflow, out_dir):
    rates = decay_rates(gradflow, runs)
    forget = forget_products(gradflow, runs)
    common.write_tables({"decay_rates": rates, "forget_products": forget}, out_dir)
    per_run = run_decay_rates(gradflow, runs)
    gradflow_profiles(gradflow, runs, rates, out_dir)
    decay_rate_vs_log_rho(per_run, rates, runs, out_dir)
    forget_product_vs_lag(gradflow, runs, forget, out_dir)


def _shades(n: int) -> list:
    """A sequential, colour-blind-safe scale (low rho / bias dark, high light)."""
    return sns.color_palette("cividis", max(n, 1))


def _start_deviation_phrase(rates, column="rate_grad_norm") -> str:
    start = rates[(rates["phase"] == "start") & rates["log_rho"].notna()]
    parts = [f"{method} {(g[column] - g['log_rho']).mean():+.3f}"
             for method, g in start.groupby("method", sort=False)]
    return ", ".join(parts) if parts else "no rnn runs"


def _relative_profiles(gradflow, runs):
    """grad_norm / grad_norm at lag 0, per run and phase (start/end), with the run's info."""
    data = gradflow[gradflow["phase"].isin(PHASES)].copy()
    data["grad_norm"] = common.positive(data["grad_norm"])
    ref = data[data["lag"] == 0].set_index(["run_id", "phase"])["grad_norm"].rename("ref")
    data = data.join(ref, on=["run_id", "phase"])
    data["relative"] = data["grad_norm"] / data["ref"]
    info = runs[["run_id", "method", "cell", "init", "init_scale", "forget_bias"]]
    return data.merge(info, on="run_id")


def _median_band(sub, column):
    """lags, median over runs of log10(column), and its bootstrap band (in log10)."""
    wide = sub.pivot_table(index="run_id", columns="lag", values=column, dropna=False)
    logs = np.log10(common.positive(wide.to_numpy().ravel()).reshape(wide.shape))
    lo, hi = common.bootstrap_rows(logs, np.nanmedian)
    with warnings.catch_warnings():  # a lag where every run underflowed stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(logs, axis=0)
    return wide.columns.to_numpy(), median, lo, hi


def gradflow_profiles(gradflow, runs, rates, out_dir):
    """Rows: methods; columns: start / end of training. Lines: rho (rnn) or forget bias (LSTM),
    median over seeds of ||dL/dh_{T-k}|| / ||dL/dh_T|| with a bootstrap band; the bound
    (beta_W beta_f)^k dashed in the line's colour."""
    name = "gradflow_profiles"
    if gradflow.empty or runs.empty:
        return common.empty(out_dir, name, "Gradient norm vs lag", "no profiles recorded")
    data = _relative_profiles(gradflow, runs)
    methods = list(pd.unique(runs["method"]))
    phases = [p for p in PHASES if p in set(data["phase"])]
    fig, axes = common.figure(len(methods) * len(phases), ncols=len(phases), size=(4.6, 2.9))
    for i, method in enumerate(methods):
        sub_m = data[data["method"] == method]
        is_lstm = (sub_m["cell"] == "lstm").all()
        by = "forget_bias" if is_lstm else "init_scale"
        values = sorted(sub_m[by].unique())
        shades = dict(zip(values, _shades(len(values))))
        for j, phase in enumerate(phases):
            ax = axes[i * len(phases) + j]
            sub = sub_m[sub_m["phase"] == phase]
            measured = []
            for value in values:
                g = sub[sub[by] == value]
                if g.empty:
                    continue
                lag, median, lo, hi = _median_band(g, "relative")
                label = f"b_f = {value:g}" if is_lstm else f"ρ = {value:g}"
                ax.plot(lag, 10 ** median, color=shades[value], label=label)
                ax.fill_between(lag, 10 ** lo, 10 ** hi, color=shades[value], alpha=0.2, lw=0)
                measured.append(median[np.isfinite(median)])
                if not is_lstm:
                    bound = g.groupby("lag")["bound"].median()
                    ax.plot(bound.index, common.positive(bound), color=shades[value], ls="--",
                            lw=0.8)
            ax.set_yscale("log")
            finite = np.concatenate(measured) if measured else np.array([])
            if finite.size:  # the bound may explode: keep the axis on the measured norms
                ax.set_ylim(10 ** (finite.min() - 1), 10 ** (max(finite.max(), 0) + 1))
            ax.set_xlabel("lag k (steps)")
            ax.set_ylabel("‖∂L/∂h_(T−k)‖ / ‖∂L/∂h_T‖")
            ax.set_title(f"{method}, {phase} of training")
            ax.legend(fontsize="x-small", title=None if is_lstm else "dashed: (β_W β_f)^k",
                      title_fontsize="x-small")
    set_title(fig, "Gradient norm k steps back, median over seeds (95 % bootstrap): fitted "
              "decay rate minus log ρ at initialisation, per step: "
              + _start_deviation_phrase(rates))
    return save(fig, out_dir, name)


def decay_rate_vs_log_rho(per_run, rates, runs, out_dir):
    """Fitted decay rate of ||dh_T/dh_{T-k}|| vs log of W_hh's spectral radius at that phase,
    per rnn method (runs as dots, means with bootstrap 95 % bars); rate = log rho dotted, the
    bound's rate as open markers."""
    name = "decay_rate_vs_log_rho"
    rnn = per_run[per_run["log_spectral_radius"].notna() & (per_run["cell"] == "rnn")]
    if rnn.empty:
        return common.empty(out_dir, name, "Decay rate vs log ρ", "no rnn profiles")
    phases = [p for p in PHASES if p in set(rnn["phase"])]
    fig, axes = common.figure(len(phases), ncols=len(phases))
    palette = common.colours(runs)
    for ax, phase in zip(axes, phases):
        sub = rnn[rnn["phase"] == phase]
        agg = rates[(rates["phase"] == phase) & (rates["cell"] == "rnn")]
        for method in pd.unique(sub["method"]):
            g, a = sub[sub["method"] == method], agg[agg["method"] == method]
            colour = palette.get(method)
            ax.scatter(g["log_spectral_radius"], g["rate_jacobian_norm"], s=8, alpha=0.35,
                       color=colour, lw=0)
            ax.errorbar(a["log_spectral_radius"], a["rate_jacobian_norm"],
                        yerr=[a["rate_jacobian_norm"] - a["rate_jacobian_lo"],
                              a["rate_jacobian_hi"] - a["rate_jacobian_norm"]],
                        color=colour, marker="o", ls="-", capsize=3, label=method)
            ax.scatter(a["log_spectral_radius"], a["log_bound_rate"], marker="^",
                       facecolors="none", edgecolors=colour, s=30)
        x = sub["log_spectral_radius"].to_numpy(dtype=float)
        span = np.array([np.nanmin(x), np.nanmax(x)])
        ax.plot(span, span, color="0.2", ls=":", lw=1, label="rate = log ρ")
        ax.scatter([], [], marker="^", facecolors="none", edgecolors="0.3",
                   label="bound: log(β_W β_f)")
        ax.set_xlabel(f"log ρ (ρ: spectral radius of W_hh at the {phase})")
        ax.set_ylabel("fitted decay rate of ‖∂h_T/∂h_(T−k)‖\n(nats per step)")
        ax.set_title(f"{phase} of training")
        ax.legend(fontsize="small")
    held = rnn["rate_jacobian_norm"] <= rnn["log_bound_rate"] + 1e-9
    checked = rnn["rate_jacobian_norm"].notna() & rnn["log_bound_rate"].notna()
    set_title(fig, "Jacobian decay rate against log ρ; mean (rate − log ρ) at initialisation: "
              + _start_deviation_phrase(rates, "rate_jacobian_norm")
              + f"; rate below the bound's in {int((held & checked).sum())}/{int(checked.sum())}"
              " profiles")
    return save(fig, out_dir, name)


def forget_product_vs_lag(gradflow, runs, forget, out_dir):
    """The LSTM's forget-gate product along the cell path vs lag, per forget bias (median over
    seeds, bootstrap band), with sigmoid(b)^k dashed; start and end of training."""
    name = "forget_product_vs_lag"
    lstm_runs = runs[runs["cell"] == "lstm"] if not runs.empty else runs
    data = gradflow[gradflow["run_id"].isin(lstm_runs["run_id"]) & gradflow["phase"].isin(PHASES)] \
        if not gradflow.empty and not lstm_runs.empty else pd.DataFrame()
    if data.empty:
        return common.empty(out_dir, name, "LSTM forget-gate product", "no LSTM profiles")
    data = data.merge(lstm_runs[["run_id", "forget_bias"]], on="run_id")
    phases = [p for p in PHASES if p in set(data["phase"])]
    biases = sorted(data["forget_bias"].unique())
    shades = dict(zip(biases, _shades(len(biases))))
    fig, axes = common.figure(len(phases), ncols=len(phases))
    for ax, phase in zip(axes, phases):
        sub = data[data["phase"] == phase]
        for bias in biases:
            g = sub[sub["forget_bias"] == bias]
            lag, median, lo, hi = _median_band(g, "forget_product")
            ax.plot(lag, 10 ** median, color=shades[bias], label=f"b_f = {bias:g}")
            ax.fill_between(lag, 10 ** lo, 10 ** hi, color=shades[bias], alpha=0.2, lw=0)
            gate = 1 / (1 + math.exp(-bias))
            ax.plot(lag, gate ** lag, color=shades[bias], ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("lag k (steps)")
        ax.set_ylabel("Π forget gates over the last k steps\n(mean over units)")
        ax.set_title(f"{phase} of training; dashed: σ(b_f)^k")
        ax.legend(fontsize="small")
    start = forget[forget["phase"] == "start"]
    phrase = ", ".join(f"b_f={r.forget_bias:g}: {r.mean_forget_gate:.2f} (σ(b_f) "
                       f"{r.sigmoid_forget_bias:.2f})" for r in start.itertuples())
    set_title(fig, "LSTM forget-gate product along the cell path; geometric-mean forget gate at "
              f"initialisation: {phrase or 'n/a'}")
    return save(fig, out_dir, name)
