"""The paper studies (config/studies/*.yaml, rnnbench.papers): every study file validates and
states a runtime estimate that holds; each study runs end to end at a tiny scale through
Snakemake and produces its paper tables and figures; the analyses on synthetic frames; the
decay-rate diagnostic against the exact linear case; curation and `rnnbench paper`."""
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import rnnbench
from rnnbench import papers, tasks
from rnnbench.chunks import estimate_seconds
from rnnbench.cli import main as cli_main
from rnnbench.papers import common
from rnnbench.papers.curated import curate, curated_bytes, regenerate, thin_curves
from rnnbench.papers.gradflow import decay_rate, decay_rates, forget_products, run_decay_rates
from rnnbench.papers.success import longest_solved_phrase
from rnnbench.study import load_study

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "config" / "studies"
SCALED = sorted(STUDIES.glob("*.yaml"))
BUDGET = sorted((STUDIES / "paper-budget").glob("*.yaml"))
FIXTURE = ROOT / "tests" / "data" / "curated"
CORES = 2
MINUTES_ALLOWED = 45


# --- the study files ---------------------------------------------------------------------------
def test_one_scaled_and_one_paper_budget_file_per_analysis():
    assert sorted(p.stem for p in SCALED) == sorted(papers.NAMES)
    assert sorted(p.stem for p in BUDGET) == sorted(papers.NAMES)


@pytest.mark.parametrize("path", SCALED + BUDGET, ids=lambda p: str(p.relative_to(STUDIES)))
def test_study_file_validates_and_names_its_analysis(path):
    study = load_study(path)
    assert study.paper == path.stem == study.name  # the budgets share the study's folder
    assert len(study.runs()) >= 2


@pytest.mark.parametrize("path", SCALED, ids=lambda p: p.stem)
def test_scaled_study_fits_the_budget_its_header_states(path):
    """The header's estimate is the chunk planner's (within 15 %), and that leaves room in 45
    minutes on 2 cores: the estimate is used at most two thirds of it (a loaded host)."""
    text = path.read_text()
    stated = re.search(r"estimated (\d+)\s*(?:#\s*)?core-minutes", text)
    assert stated, f"{path.name}: header must state 'estimated N core-minutes'"
    minutes = sum(estimate_seconds(cfg) for cfg in load_study(path).runs()) / 60
    assert int(stated.group(1)) == pytest.approx(minutes, rel=0.15), (path.name, minutes)
    assert minutes / CORES <= MINUTES_ALLOWED * 2 / 3, (path.name, minutes)
    assert "paper-budget/" + path.name in text  # points to the paper's budget


@pytest.mark.parametrize("path", BUDGET, ids=lambda p: p.stem)
def test_paper_budget_header_states_its_estimate(path):
    stated = re.search(r"estimated (\d+)\s*(?:#\s*)?core-hours", path.read_text())
    assert stated, f"{path.name}: header must state 'estimated N core-hours'"
    hours = sum(estimate_seconds(cfg) for cfg in load_study(path).runs()) / 3600
    assert int(stated.group(1)) == pytest.approx(hours, rel=0.15), (path.name, hours)


def test_every_study_method_has_its_fixed_colour():
    from rnnbench.plots import METHOD_COLOURS
    for path in SCALED + BUDGET:
        methods = list(load_study(path).methods)
        assert set(methods) <= set(METHOD_COLOURS), (path.name, methods)
        assert len({METHOD_COLOURS[m] for m in methods}) == len(methods), path.name


def test_paper_budget_is_larger_than_the_scaled_study():
    for path in SCALED:
        small, big = load_study(path), load_study(STUDIES / "paper-budget" / path.name)
        cost = [sum(estimate_seconds(c) for c in s.runs()) for s in (small, big)]
        assert cost[1] > 5 * cost[0], path.name
        assert set(big.methods) == set(small.methods), path.name


# --- every study, tiny, through Snakemake ------------------------------------------------------
TINY_FIELDS = {"steps": 12, "eval_interval": 6, "eval_size": 32, "batch_size": 8}
TINY_HIDDEN = 6


def tiny_study(path) -> dict:
    """The study file at a tiny scale: one seed, 12 steps, 6 hidden units, short sequences and
    at most three values per axis (first, middle, last); the same methods, tasks and analysis."""
    data = yaml.safe_load(Path(path).read_text())
    data["seeds"] = 1
    data["fixed"] = {**data.get("fixed", {}), **TINY_FIELDS, "hidden": TINY_HIDDEN}
    data["methods"] = {name: {**o, **({"hidden": TINY_HIDDEN} if "hidden" in o else {})}
                       for name, o in (data.get("methods") or {}).items()}
    used = {data["fixed"].get("task", "adding"), *data.get("axes", {}).get("task", []),
            *(o["task"] for o in data["methods"].values() if "task" in o)}
    min_T = max(tasks.REGISTRY[t].min_T for t in used)
    axes = {}
    for key, values in (data.get("axes") or {}).items():
        if key == "T":
            values = sorted({max(min_T, 5, v // 10) for v in values})
        axes[key] = list(dict.fromkeys([values[0], values[len(values) // 2], values[-1]]))
    data["axes"] = axes
    data["chunks"] = {"per_core": 1}  # with --cores 1: one chunk, one training process
    return data


def workdir(tmp_path, study: dict) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", tmp_path / "Snakefile")
    for d in ("workflow", "profiles/default"):
        shutil.copytree(ROOT / d, tmp_path / d)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return tmp_path


def paper_targets(study: dict) -> list[str]:
    out = Path("results") / study["study"] / "paper"
    return [str(out / rel) for rel in papers.outputs(study["paper"])]


@pytest.fixture(scope="module")
def tiny_runs(request, tmp_path_factory) -> dict:
    """Every selected study, tiny, through Snakemake up to its paper outputs (train, aggregate,
    paper): two workflows at a time, one core and one chunk each (a tiny workflow spends most
    of its time starting Python processes). path -> (workdir, return code, log text)."""
    import os
    import subprocess
    import sys
    import time
    name = "test_study_runs_end_to_end_at_a_tiny_scale"
    selected = [item.callspec.params["path"] for item in request.session.items
                if getattr(item, "originalname", "") == name]
    env = {**os.environ, "RNNBENCH_NO_PROGRESS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    root = tmp_path_factory.mktemp("tiny")
    queue, running, results = list(dict.fromkeys(selected)), {}, {}
    deadline = time.monotonic() + 900
    while queue or running:
        while queue and len(running) < CORES:
            path = queue.pop(0)
            study = tiny_study(path)
            wd = workdir(root / path.stem, study)
            log = open(wd / "snakemake.log", "w")
            proc = subprocess.Popen([sys.executable, "-m", "snakemake", *paper_targets(study),
                                     "--cores", "1", "--quiet", "rules"],
                                    cwd=wd, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[path] = (wd, proc, log)
        for path, (wd, proc, log) in list(running.items()):
            if proc.poll() is None and time.monotonic() > deadline:
                proc.kill()
                proc.wait()
            if proc.poll() is not None:
                log.close()
                results[path] = (wd, proc.returncode, (wd / "snakemake.log").read_text())
                del running[path]
        time.sleep(0.2)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("path", SCALED, ids=lambda p: p.stem)
def test_study_runs_end_to_end_at_a_tiny_scale(tiny_runs, path):
    study = tiny_study(path)
    wd, returncode, log = tiny_runs[path]
    assert returncode == 0, log
    out = wd / "results" / study["study"]
    assert len(pd.read_parquet(out / "runs.parquet")) == len(load_study(study).runs())
    for rel in papers.outputs(study["paper"]):
        assert (out / "paper" / rel).stat().st_size > (1000 if "figures" in rel else 50), rel
    first_table = papers.ANALYSES[study["paper"]][1][0]
    table = pd.read_csv(out / "paper" / "tables" / f"{first_table}.csv")
    assert len(table) >= 1 and set(load_study(study).methods) >= set(table["method"])


# --- analyses on synthetic frames --------------------------------------------------------------
def synthetic_runs(rows) -> pd.DataFrame:
    base = {"task": "adding", "T": 10, "solved": False, "diverged": False, "steps_to_solve": math.nan,
            "final_eval_loss": 0.1, "final_eval_error": 0.5, "baseline_loss": 1 / 6,
            "baseline_error": 0.64, "clip": "norm", "clip_threshold": 1.0, "task_options": "{}"}
    runs = pd.DataFrame([{**base, **r} for r in rows])
    runs["run_id"] = [f"{i:012x}" for i in range(len(runs))]
    runs["seed"] = runs.groupby(["method", "T", "task", "clip", "clip_threshold"]).cumcount()
    return runs


def test_rate_rows_count_with_wilson_intervals():
    runs = synthetic_runs([{"method": "LSTM", "solved": True, "steps_to_solve": 100}] * 3
                          + [{"method": "LSTM", "diverged": True}]
                          + [{"method": "tanh-RNN"}] * 4)
    rates = common.rate_rows(runs, ["method", "T"])
    lstm = rates.set_index("method").loc["LSTM"]
    assert (lstm["n_runs"], lstm["n_solved"], lstm["n_diverged"]) == (4, 3, 1)
    assert lstm["success_rate"] == 0.75 and lstm["success_lo"] < 0.75 < lstm["success_hi"]
    assert lstm["median_steps_to_solve"] == 100
    assert list(rates["method"]) == ["LSTM", "tanh-RNN"]  # the study's order


def test_longest_solved_and_the_success_study_outputs(tmp_path):
    rows = []
    for T, lstm_ok, rnn_ok in [(10, 3, 2), (20, 3, 0), (40, 1, 0)]:
        rows += [{"method": "LSTM", "T": T, "solved": i < lstm_ok} for i in range(3)]
        rows += [{"method": "tanh-RNN", "T": T, "solved": i < rnn_ok} for i in range(3)]
    runs = synthetic_runs(rows)
    papers.analyse("le2015", runs, pd.DataFrame(), pd.DataFrame(), tmp_path)
    longest = pd.read_csv(tmp_path / "tables" / "longest_T.csv").set_index("method")
    assert longest.loc["LSTM", "longest_T_solved"] == 20
    assert longest.loc["LSTM", "shortest_T_failed"] == 40
    assert longest.loc["tanh-RNN", "longest_T_solved"] == 10
    md = (tmp_path / "tables" / "success.md").read_text()
    assert md.startswith("| method | T |") and md.count("\n") == 2 + 6


def test_copy_table_marks_runs_below_the_baseline(tmp_path):
    rows = []
    for T in (10, 50):
        baseline = tasks.make("copy", T).baseline_loss
        rows += [{"method": "LSTM", "task": "copy", "T": T, "baseline_loss": baseline,
                  "final_eval_loss": baseline * (0.5 if T == 10 else 1.0) + 0.001 * i}
                 for i in range(3)]
    papers.analyse("arjovsky2016_copy", synthetic_runs(rows), pd.DataFrame(), pd.DataFrame(),
                   tmp_path)
    table = pd.read_csv(tmp_path / "tables" / "loss_vs_baseline.csv").set_index("T")
    assert table.loc[10, "below_baseline"] and not table.loc[50, "below_baseline"]
    assert table.loc[10, "loss_over_baseline"] == pytest.approx(0.5, rel=0.01)


def test_clipping_table_has_one_unclipped_row_per_method(tmp_path):
    rows = [{"method": m, "clip": clip, "clip_threshold": theta, "diverged": clip == "none"}
            for m in ("tanh-RNN", "LSTM") for clip in ("norm", "value")
            for theta in (0.1, 1.0, 10.0) for _ in range(2)]
    rows += [{"method": m, "clip": "none", "clip_threshold": 1.0, "diverged": True}
             for m in ("tanh-RNN", "LSTM") for _ in range(2)]
    papers.analyse("clipping", synthetic_runs(rows), pd.DataFrame(), pd.DataFrame(), tmp_path)
    table = pd.read_csv(tmp_path / "tables" / "clipping.csv")
    none = table[table["clip"] == "none"]
    assert len(table) == 2 * (2 * 3 + 1) and len(none) == 2
    assert none["clip_threshold"].isna().all() and (none["divergence_rate"] == 1).all()
    assert (table.loc[table["clip"] != "none", "divergence_rate"] == 0).all()


def test_digits_accuracy_is_one_minus_the_test_error(tmp_path):
    rows = [{"method": m, "task": t, "T": 64, "final_eval_error": e, "baseline_error": 0.9}
            for m, e in (("LSTM", 0.1), ("GRU", 0.2)) for t in ("digits", "digits_permuted")
            for _ in range(3)]
    papers.analyse("digits", synthetic_runs(rows), pd.DataFrame(), pd.DataFrame(), tmp_path)
    table = pd.read_csv(tmp_path / "tables" / "accuracy.csv")
    assert list(table["method"]) == ["LSTM", "LSTM", "GRU", "GRU"]
    assert np.allclose(table["accuracy"], [0.9, 0.9, 0.8, 0.8])
    assert np.allclose(table["baseline_accuracy"], 0.1)


def test_decay_rate_fits_the_finite_nonzero_part():
    lag = np.arange(10.0)
    values = 0.7 ** lag
    values[6:] = 0.0            # underflow
    values[3] = np.inf          # one exploded lag
    assert decay_rate(lag, values) == pytest.approx(math.log(0.7), abs=1e-12)
    assert math.isnan(decay_rate(lag[:1], values[:1]))


def synthetic_profiles(rates: dict, T=20, lstm_bias=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run per (method, rho): grad and Jacobian norms exactly exp(rate k)."""
    runs, flows = [], []
    for i, ((method, rho), rate) in enumerate(rates.items()):
        run_id = f"{i:012x}"
        cell = "lstm" if method == "LSTM" else "rnn"
        runs.append({"run_id": run_id, "method": method, "cell": cell, "activation": "tanh",
                     "init": "default" if cell == "lstm" else "spectral", "init_scale": rho,
                     "forget_bias": lstm_bias or 0.0, "seed": 0, "T": T, "diverged": False,
                     "spectral_radius_start": rho, "spectral_radius_end": rho})
        for phase in ("start", "end"):
            k = np.arange(T)
            flows.append(pd.DataFrame({
                "run_id": run_id, "phase": phase, "step": 0, "lag": k,
                "grad_norm": np.exp(rate * k), "jacobian_norm": np.exp(rate * k),
                "bound": np.exp(0.1 * k) if cell == "rnn" else np.nan,
                "forget_product": 0.9 ** k if cell == "lstm" else np.nan}))
    return pd.concat(flows, ignore_index=True), pd.DataFrame(runs)


def test_decay_rates_table_on_synthetic_profiles(tmp_path):
    gradflow, runs = synthetic_profiles({("linear", 0.5): math.log(0.5),
                                         ("tanh", 0.5): math.log(0.5) - 0.2,
                                         ("LSTM", 1.0): -0.01}, lstm_bias=1.0)
    table = decay_rates(gradflow, runs)
    assert len(table) == 3 * 2  # (method, rho) x phase
    start = table[table["phase"] == "start"].set_index("method")
    assert start.loc["linear", "rate_jacobian_norm"] == pytest.approx(math.log(0.5))
    assert start.loc["linear", "jacobian_rate_minus_log_radius"] == pytest.approx(0, abs=1e-12)
    assert start.loc["tanh", "jacobian_rate_minus_log_radius"] == pytest.approx(-0.2)
    assert start.loc["linear", "log_bound_rate"] == pytest.approx(0.1)
    assert math.isnan(start.loc["LSTM", "rho"])  # PyTorch's init sets no spectral radius
    forget = forget_products(gradflow, runs)
    assert len(forget) == 2 and forget["mean_forget_gate"].iloc[0] == pytest.approx(0.9)
    assert forget["sigmoid_forget_bias"].iloc[0] == pytest.approx(1 / (1 + math.exp(-1)))
    papers.analyse("gradflow", runs, pd.DataFrame(), gradflow, tmp_path)
    for rel in papers.outputs("gradflow"):
        assert (tmp_path / rel).stat().st_size > 200, rel


@pytest.mark.parametrize("rho", [0.5, 0.9, 1.1, 1.5])
def test_linear_rnn_decays_at_exactly_log_rho(rho):
    """dh_T/dh_{T-k} = W^k for the linear RNN; with W = rho x orthogonal (normal), its spectral
    norm is rho^k: the fitted rate of the run's profile is log rho, through rnnbench.run."""
    result = rnnbench.run({"task": "adding", "T": 40, "hidden": 8, "cell": "rnn",
                           "activation": "identity", "init": "orthogonal", "init_scale": rho,
                           "steps": 1, "eval_interval": 1, "eval_size": 16, "dtype": "float64",
                           "backend": "numba"})
    rates = run_decay_rates(result.gradflow, pd.DataFrame([result.summary]))
    start = rates[rates["phase"] == "start"].iloc[0]
    assert start["lags_fitted"] == 40
    assert start["rate_jacobian_norm"] == pytest.approx(math.log(rho), abs=1e-6)
    assert start["rate_grad_norm"] == pytest.approx(math.log(rho), abs=1e-6)
    assert start["log_spectral_radius"] == pytest.approx(math.log(rho), abs=1e-9)
    assert start["log_bound_rate"] == pytest.approx(math.log(rho), abs=1e-9)  # ||W||_2 = rho


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    values = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    lo, hi = common.bootstrap_ci(values)
    assert (lo, hi) == common.bootstrap_ci(values)
    assert lo < 2.5 < hi and lo >= 1 and hi <= 4
    assert common.bootstrap_ci([2.0]) == (2.0, 2.0)
    assert all(math.isnan(v) for v in common.bootstrap_ci([]))


# --- curation and `rnnbench paper` -------------------------------------------------------------
def test_thin_curves_keeps_evaluations_and_about_n_training_rows():
    steps = np.arange(5001)
    curves = pd.DataFrame({"run_id": "a", "step": steps, "train_loss": 1.0,
                           "eval_loss": np.where(steps % 250 == 0, 0.5, np.nan)})
    thin = thin_curves(curves, points=100)
    assert thin["eval_loss"].notna().sum() == 21 and 100 <= len(thin) <= 130
    assert thin["step"].iloc[-1] == 5000


@pytest.mark.parametrize("source", [
    FIXTURE, pytest.param(ROOT / "results" / "curated", marks=pytest.mark.slow)],
    ids=["fixture", "committed"])
def test_paper_regenerates_the_curated_tables_identically(tmp_path, capsys, source):
    """`make paper` (`rnnbench paper`) rebuilds, from the rows alone, tables identical to the
    ones beside them: for a small fixture, and for every study committed in results/curated."""
    curated = tmp_path / "curated"
    shutil.copytree(source, curated)
    studies = sorted(p.name for p in curated.iterdir() if (p / "meta.json").exists())
    assert studies, f"{source} holds curated studies"
    tables = [p for study in studies for p in (curated / study).rglob("tables/*")]
    before = {p.relative_to(curated): p.read_bytes() for p in tables}
    for p in tables:
        p.unlink()
    assert cli_main(["paper", "--curated", str(curated)]) == 0
    assert f"of {len(studies)} curated studies" in capsys.readouterr().out
    after = {p.relative_to(curated): p.read_bytes()
             for study in studies for p in (curated / study).rglob("tables/*")}
    assert after == before
    for study in studies:
        meta = json.loads((curated / study / "meta.json").read_text())
        for rel in papers.outputs(meta["paper"]):
            assert (curated / study / rel).exists(), rel


def test_curate_copies_thins_and_writes_the_analysis(tmp_path):
    source = tmp_path / "results" / "le2015"
    source.mkdir(parents=True)
    fixture = FIXTURE / "le2015"
    for rows in ("runs", "curves", "gradflow"):
        shutil.copy(fixture / f"{rows}.parquet", source / f"{rows}.parquet")
    dest = curate(source, tmp_path / "curated")
    assert json.loads((dest / "meta.json").read_text())["paper"] == "le2015"
    assert (dest / "tables" / "longest_T.md").exists()
    assert curated_bytes(tmp_path / "curated") < 2 * 2 ** 20
    with pytest.raises(ValueError, match="paper analysis"):
        curate(source.rename(tmp_path / "results" / "mystudy"), tmp_path / "curated")
    with pytest.raises(ValueError, match="runs.parquet"):
        curate(tmp_path / "results" / "nothing", tmp_path / "curated")


def test_unknown_paper_key_is_a_clear_error():
    data = tiny_study(STUDIES / "le2015.yaml")
    with pytest.raises(ValueError, match="'paper' must be one of"):
        load_study({**data, "paper": "le2016"})


def test_regenerate_names_a_missing_study(tmp_path):
    with pytest.raises(ValueError, match="not a curated study"):
        regenerate(["nope"], tmp_path)


def test_title_says_the_longest_length_solved_once_when_every_line_agrees():
    nan = float("nan")
    rows = [("a", "adding", nan), ("b", "adding", nan), ("a", "order", 20.0), ("b", "order", 20.0)]
    longest = pd.DataFrame(rows, columns=["method", "task", "longest_T_solved"])
    assert longest_solved_phrase(longest, ["method"], "task") == \
        "adding: none at any T; order: every line 20"
    longest.loc[3, "longest_T_solved"] = 50.0
    assert longest_solved_phrase(longest, ["method"], "task") == \
        "adding: none at any T; order: a 20, b 50"
