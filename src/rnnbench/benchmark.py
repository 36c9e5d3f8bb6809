"""The standing benchmark (config/benchmark.yaml) and `rnnbench compare METHOD`.

    compare_method("my_rnn")        # train my_rnn's runs of the benchmark, compare with the
                                    # committed baseline runs, write results/compare-my_rnn/
    check_protocol(runs, study)     # committed runs made under exactly the benchmark's fields?
    method_seconds(study)           # estimated core-seconds of each method's runs

`compare_method` writes a study file with the one method (the benchmark's fixed fields, axes,
seeds, exclusions) to results/compare-<METHOD>/study.yaml, trains it with Snakemake and the
repository's Snakefile, and adds the committed runs of the other methods
(results/curated/benchmark/runs.parquet) after `check_protocol` has found every one of them
made with the run fields the benchmark gives it. With the benchmark's `compare.tune`, the value
of the tuned axis (the learning rate) is chosen per method and cell on the validation seeds
(rnnbench.compare.select_tuned) and the comparison uses the test seeds at that value only.
Outputs in results/compare-<METHOD>/: comparison.csv|md (METHOD against the baseline, per
cell), leaderboard.csv|md (every method), tuning.csv|md (the chosen values), comparison.png|pdf
(the forest plot), snakemake.log.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from .chunks import estimate_seconds
from .config import RunConfig, field_names

BENCHMARK = "config/benchmark.yaml"
BASELINE_RUNS = "results/curated/benchmark/runs.parquet"
RESULTS = "results"
STEPS_DONE = re.compile(r"(\d+) of (\d+) steps \(")  # Snakemake's progress line
_FIELD_DEFAULTS = RunConfig().record()


class TrainingFailed(RuntimeError):
    """Snakemake did not finish the method's runs (its log says why)."""


@dataclass
class Comparison:
    files: dict            # name -> path written
    comparison: pd.DataFrame
    leaderboard: pd.DataFrame
    tuning: pd.DataFrame


# --- the protocol check ----------------------------------------------------------------------
def check_protocol(runs: pd.DataFrame, study, source: str = "the committed runs") -> None:
    """Raise ValueError unless every row of `runs` is one of `study`'s runs, made with exactly
    the run fields the study gives it, and every method present has all its runs.

    A row is matched to the study's run of the same method, seed and axis values; then every
    run field is compared. A field missing from `runs` (added to rnnbench since) passes when
    the study leaves it at its default, the behaviour before it existed. The message names the
    run and the first differing field."""
    if runs.empty:
        raise ValueError(f"{source}: no runs")
    missing = [c for c in ("method", "seed", *study.axes) if c not in runs.columns]
    if missing:
        raise ValueError(f"{source}: lacks column(s) {missing}")
    expected = {_key(cfg.record(), study.axes): cfg for cfg in study.runs()}
    seen = set()
    for _, row in runs.iterrows():
        key = _key(row, study.axes)
        label = _label(row, study.axes)
        if row["method"] not in study.methods:
            raise ValueError(f"{source}: run {label} is of method {row['method']!r}, which the "
                             f"benchmark does not define (its methods: {list(study.methods)})")
        if key in seen:
            raise ValueError(f"{source}: run {label} appears twice")
        seen.add(key)
        cfg = expected.get(key)
        if cfg is None:
            raise ValueError(f"{source}: run {label} is not one of the benchmark's runs"
                             + _why_not_expanded(row, study))
        want = cfg.record()
        for name in field_names():
            have = row[name] if name in row.index else _ABSENT
            if not _same(have, want[name]):
                if have is _ABSENT:
                    if _same(want[name], _FIELD_DEFAULTS[name]):
                        continue
                    have = "(not recorded)"
                raise ValueError(
                    f"{source}: run {label} was made with {name}={have!r}; the benchmark has "
                    f"{name}={want[name]!r} (field '{name}' differs: the committed runs are not "
                    "from this protocol; rerun them or restore the benchmark's value)")
    for method in pd.unique(runs["method"]):
        lacking = [cfg for key, cfg in expected.items() if cfg.method == method and key not in seen]
        if lacking:
            raise ValueError(f"{source}: method {method!r} lacks {len(lacking)} of the "
                             f"benchmark's runs, e.g. {study.label(lacking[0])}")


_ABSENT = object()


def _key(values, axes) -> tuple:
    return (values["method"], int(values["seed"]), *(_plain(values[a]) for a in axes))


def _plain(value):
    """numpy scalars as Python ones, so that keys from parquet rows and configs compare."""
    return value.item() if hasattr(value, "item") else value


def _label(row, axes) -> str:
    return "/".join([str(row["method"]), *(f"{a}={_plain(row[a])}" for a in axes),
                     f"seed={_plain(row['seed'])}"])


def _same(a, b) -> bool:
    if a is _ABSENT:
        return False
    a, b = _plain(a), _plain(b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _why_not_expanded(row, study) -> str:
    if int(row["seed"]) not in study.seeds:
        return f" (seed {_plain(row['seed'])} is not among its seeds {study.seeds})"
    for axis, values in study.axes.items():
        if _plain(row[axis]) not in values:
            return f" (field '{axis}' = {_plain(row[axis])!r} is not among its values {values})"
    return " (the benchmark excludes it)"


# --- one method on the benchmark -------------------------------------------------------------
def derived_study(study, method: str, overrides: dict, results_dir: str = RESULTS) -> dict:
    """The benchmark with only `method` (run-field `overrides`): a study dict named
    compare-<method> (results in <results_dir>/compare-<method>/)."""
    name = "compare-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", method).strip("-.")
    exclude = [e for e in study.exclude if e.get("method", method) == method]
    return {"study": name,
            "description": f"{method} on the standing benchmark (rnnbench compare)",
            "seeds": list(study.seeds), "fixed": dict(study.fixed),
            "methods": {method: dict(overrides)}, "axes": dict(study.axes),
            "exclude": exclude, "chunks": dict(study.chunks), "ensemble": dict(study.ensemble),
            "plugins": list(study.plugins), "results_dir": str(results_dir)}


def compare_method(method: str, overrides: dict | None = None, benchmark=BENCHMARK,
                   baseline: str | None = None, baseline_runs=BASELINE_RUNS,
                   results_dir=RESULTS, cores: int | None = None,
                   progress: bool | None = None) -> Comparison:
    """Train `method` on the benchmark and compare it with the committed baseline runs (see the
    module docstring). `method` is one of the benchmark's methods (its fields, then
    `overrides`) or a cell name (`cell: method`, then `overrides`). Everything is checked
    before anything trains."""
    from .compare import comparison_table, leaderboard, select_tuned
    from .study import load_study

    committed = _read_runs(baseline_runs, benchmark)  # before the (slower) expansion
    study = load_study(benchmark)
    baseline = baseline or study.compare.get("baseline")
    if not baseline:
        raise ValueError(f"{benchmark}: no baseline method; give --baseline or set "
                         "compare: {baseline: <method>} in the benchmark")
    if method == baseline:
        raise ValueError(f"{method!r} is the baseline; compare another method with it")
    check_protocol(committed, study, f"{baseline_runs}")
    if baseline not in set(committed["method"]):
        raise ValueError(f"{baseline_runs}: no runs of the baseline {baseline!r} (methods there: "
                         f"{list(pd.unique(committed['method']))})")
    fields = {**(study.methods.get(method) or {"cell": method}), **(overrides or {})}
    derived = derived_study(study, method, fields, results_dir)
    load_study(derived)  # an unknown cell or a bad --set value stops here, before Snakemake
    out_dir = Path(results_dir) / derived["study"]
    out_dir.mkdir(parents=True, exist_ok=True)
    study_file = out_dir / "study.yaml"
    from .records import write_text
    write_text(yaml.safe_dump(derived, sort_keys=False), study_file)

    runs_file = out_dir / "runs.parquet"
    rc = run_snakemake(study_file, runs_file, cores or os.cpu_count() or 1,
                       out_dir / "snakemake.log", progress)
    if rc != 0:
        raise TrainingFailed(f"Snakemake failed (exit status {rc}) training {method!r}; see "
                             f"{out_dir / 'snakemake.log'}:\n{_tail(out_dir / 'snakemake.log')}")
    new = pd.read_parquet(runs_file)
    runs = pd.concat([committed[committed["method"] != method], new], ignore_index=True)
    tune = study.compare.get("tune")
    choices = pd.DataFrame(columns=["method", "task", "T"])
    if tune:
        runs, choices = select_tuned(runs, tune, study.compare["validation_seeds"])
    table = comparison_table(runs[runs["method"].isin([method, baseline])], baseline)
    board = leaderboard(runs)
    return Comparison(_write(out_dir, table, board, choices), table, board, choices)


def _read_runs(path, benchmark) -> pd.DataFrame:
    if not Path(path).is_file():
        raise ValueError(f"no committed baseline runs at {path}: run the benchmark first "
                         f"(snakemake --configfile {benchmark}) and commit its runs.parquet "
                         "there, or name the file with --baseline-runs")
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        raise ValueError(f"{path}: unreadable runs table ({exc})") from None


def _write(out_dir: Path, table, board, choices) -> dict[str, Path]:
    from . import plots
    from .aggregate import write_table
    out = {}
    out["comparison"], out["comparison_md"] = write_table(table, out_dir / "comparison")
    out["leaderboard"], out["leaderboard_md"] = write_table(board, out_dir / "leaderboard")
    out["tuning"], out["tuning_md"] = write_table(choices, out_dir / "tuning")
    out["figure"], out["figure_pdf"] = plots.comparison(table, out_dir / "comparison")
    return out


def run_snakemake(study_file, target, cores: int, log_path, progress: bool | None = None) -> int:
    """Run the repository's Snakefile on `study_file` up to `target` in the working directory;
    its output goes to `log_path`, and on a terminal (unless RNNBENCH_NO_PROGRESS is set) a
    progress bar follows Snakemake's "N of M steps" lines. Returns Snakemake's exit status."""
    snakefile = Path(__file__).resolve().parents[2] / "Snakefile"
    if not snakefile.is_file():
        raise ValueError(f"rnnbench compare runs the repository's workflow, but there is no "
                         f"Snakefile at {snakefile} (install rnnbench from a checkout: pip "
                         "install -e .)")
    if progress is None:
        progress = sys.stderr.isatty() and not os.environ.get("RNNBENCH_NO_PROGRESS")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--configfile",
           str(study_file), "--cores", str(cores), "--rerun-incomplete", str(target)]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(desc="training", unit="job", dynamic_ncols=True)
    with open(log_path, "w") as log, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log.write(line)
            log.flush()
            done = STEPS_DONE.search(line)
            if bar is not None and done:
                bar.total = int(done[2])
                bar.update(int(done[1]) - bar.n)
        rc = proc.wait()
    if bar is not None:
        bar.close()
    return rc


def _tail(path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text().splitlines()[-lines:])
    except OSError:
        return ""


def summary_lines(table: pd.DataFrame, board: pd.DataFrame, method: str) -> list[str]:
    """A few lines for the terminal: the verdict per cell, then the method's rank."""
    lines = []
    for _, r in table.iterrows():
        lines.append(f"  {r['task']} T={r['T']}: solved {r['n_solved']}/{r['n_runs']} vs "
                     f"{r['baseline_n_solved']}/{r['baseline_n_runs']}, loss ratio "
                     f"{r['loss_ratio']:.3g} [{r['loss_ratio_lo']:.3g}, {r['loss_ratio_hi']:.3g}]"
                     f", p_adj {r['p_adjusted']:.3g}: {r['verdict']}")
    ranked = board[board["method"] == method]
    if len(ranked):
        lines.append(f"leaderboard: {method} ranks {int(ranked['rank'].iloc[0])} of "
                     f"{len(board)} ({int(ranked['cells_solved'].iloc[0])} of "
                     f"{int(ranked['cells'].iloc[0])} cells solved)")
    return lines


# --- cost ------------------------------------------------------------------------------------
def method_seconds(study, timings: dict | None = None) -> dict[str, float]:
    """Estimated core-seconds of each method's runs at the full step budget (early stopping
    only makes them cheaper).

    rnnbench.chunks.estimate_seconds prices the built-in cells (a FLOP model of the Numba
    kernels). A plug-in cell trains in a Python loop over time whose overheads that model does
    not know (and it has no Jacobian profile, which the model prices), so a plug-in method is
    priced from `timings`: (method, task) -> (L, seconds per training step, seconds per
    evaluation, seconds of the fixed per-run work), measured at sequence length L; a run costs
    steps x per step + evaluations x per evaluation, scaled by its length over L, plus the
    fixed part (benchmarks/benchmark_cost.py measures them). Runs without timings use the
    model."""
    from . import tasks
    timings = timings or {}
    totals: dict[str, float] = {}
    for cfg in study.runs():
        timing = timings.get((cfg.method, cfg.task))
        if timing is None:
            seconds = estimate_seconds(cfg)
        else:
            length, per_step, per_eval, fixed = timing
            scale = tasks.make(cfg.task, cfg.T, **cfg.task_options).max_length / length
            evaluations = cfg.steps // cfg.eval_interval + 1
            seconds = scale * (cfg.steps * per_step + evaluations * per_eval) + fixed
        totals[cfg.method] = totals.get(cfg.method, 0.0) + seconds
    return totals
