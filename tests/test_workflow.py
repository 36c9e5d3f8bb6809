"""The Snakemake layer: lint, dry run, config errors before any job, and a tiny end-to-end study.

Each test copies Snakefile, workflow/, config/ and profiles/default into a temporary folder and
runs snakemake there, so nothing is written into the checkout.
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from support import REPO as ROOT, env, make_workdir

TINY = {
    "study": "tiny",
    "description": "two methods, one length, one seed",
    "seeds": 1,
    "fixed": {"task": "adding", "T": 5, "hidden": 8, "optimizer": "adam", "lr": 0.01,
              "batch_size": 8, "steps": 20, "eval_interval": 10, "eval_size": 50,
              "clip": "norm", "clip_threshold": 1.0},
    "methods": {"tanh-RNN": {"cell": "rnn", "activation": "tanh"}, "LSTM": {"cell": "lstm"}},
}


def workdir(tmp_path, study=None) -> Path:
    """A copy of the workflow in tmp_path; `study` (a dict) replaces config/config.yaml."""
    return make_workdir(tmp_path, study, "config/config.yaml", extra=("config", "profiles/default"))


def snakemake(cwd, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def test_lint_is_clean(tmp_path):
    res = snakemake(workdir(tmp_path), "--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "good condition" in res.stdout + res.stderr


def test_dry_run_plans_every_run(tmp_path):
    res = snakemake(workdir(tmp_path), "-n", "--quiet", "rules", "--cores", "1")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    counts = dict(line.split()[:2] for line in out.splitlines()
                  if line.split()[:1] and line.split()[0] in (
                      "train_chunk", "aggregate", "figures", "total"))
    from rnnbench.study import load_study
    study = load_study(ROOT / "config" / "config.yaml")
    chunks, _ = study.jobs(cores=1)
    assert sorted(r for members in chunks.values() for r in members) == sorted(study.folders().values())
    assert len(chunks) == 1 and counts["train_chunk"] == "1"  # every run in one job per core
    from rnnbench.figures import FIGURES, figures_for
    assert counts["aggregate"] == "1" and counts["figures"] == "1"  # one job draws them all
    assert len(figures_for(study)) == len(FIGURES) - 1  # every figure but the comparison


def test_study_file_replaces_default_config(tmp_path):
    wd = workdir(tmp_path)
    (wd / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    res = snakemake(wd, "-n", "--quiet", "rules", "--configfile", "tiny.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert any(line.split()[:2] == ["train_chunk", "2"] for line in out.splitlines()), out


def test_figures_rule_draws_the_study_formats(tmp_path):
    """`figure_formats` reaches the figures' command; by default PNG and PDF."""
    for study, formats in ((TINY, "png,pdf"), (dict(TINY, figure_formats=["png", "svg"]),
                                               "png,svg")):
        wd = workdir(tmp_path / formats, study)
        res = snakemake(wd, "-n", "-p", "--cores", "2", "results/tiny/figures")
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        assert f"--formats {formats} " in out, out


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("rnnbench.train") is None,
                    reason="needs the training loop (rnnbench.train) behind `rnnbench run`")
def test_tiny_study_end_to_end(tmp_path):
    wd = workdir(tmp_path, TINY)
    res = snakemake(wd, "--cores", "2")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    study = wd / "results" / "tiny"
    runs = pd.read_parquet(study / "runs.parquet")
    assert sorted(runs["label"]) == ["LSTM/seed=0", "tanh-RNN/seed=0"]
    assert runs["run_id"].str.fullmatch(r"[0-9a-f]{12}").all()
    folders = sorted(p.name for p in (study / "runs").iterdir())
    assert [f.split("--")[0] for f in folders] == ["LSTM_seed=0", "tanh-RNN_seed=0"]  # readable
    assert len(pd.read_parquet(study / "curves.parquet")) > 0
    success = pd.read_csv(study / "tables" / "success.csv")
    assert list(success["method"]) == ["tanh-RNN", "LSTM"] and (success["n_runs"] == 1).all()
    assert (study / "tables" / "longest_T.md").read_text().startswith("| method |")
    for name in ("success_vs_T", "learning_curves", "grad_norms", "gradflow_vs_lag"):
        for ext in ("png", "pdf"):
            assert (study / "figures" / f"{name}.{ext}").stat().st_size > 1000
    logs = [log.read_text() for log in (study / "logs" / "train_chunk").iterdir()]
    assert len(logs) == 2  # two chunks; each job may take the other's run (chunks.steal)
    trained = sorted(re.findall(r"^run ([0-9a-f]{12}): solved=", "".join(logs), flags=re.M))
    assert trained == sorted(runs["run_id"]), logs  # the CLI's summary line: each run once
    assert not list((study / "runs").glob("*.claim"))
    again = snakemake(wd, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    report = snakemake(wd, "--report", "report.html")
    assert report.returncode == 0, report.stdout + report.stderr
    html = (wd / "report.html").read_text(errors="replace")
    from rnnbench.figures import FIGURES
    for name in ("success_vs_T", "learning_curves", "grad_norms", "gradflow_vs_lag"):
        first_words = " ".join(FIGURES[name].caption.split()[:5])
        assert f"{name}.png" in html and first_words in html, name  # each with its caption


@pytest.mark.slow
def test_ensemble_jobs_give_the_rows_of_single_runs(tmp_path):
    """`ensemble.enabled` groups compatible runs into one job each; results equal solo runs."""
    import rnnbench
    from rnnbench.study import load_study

    study = {**TINY, "seeds": 2, "ensemble": {"enabled": True, "members_per_job": 8},
             "fixed": {**TINY["fixed"], "dtype": "float64", "backend": "torch"}}
    wd = workdir(tmp_path, study)
    plan = snakemake(wd, "-n", "--quiet", "rules")
    assert any(line.split()[:2] == ["train_ensemble", "2"] for line in plan.stdout.splitlines()), \
        plan.stdout + plan.stderr  # one group per cell, both seeds in it
    res = snakemake(wd, "--cores", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    group = pd.read_parquet(wd / "results/tiny/runs.parquet").set_index("run_id")
    assert set(group["backend_used"]) == {"ensemble"} and len(group) == 4
    assert len(list((wd / "results/tiny/ensembles").glob("*.done"))) == 2
    for cfg in load_study(study).runs():
        solo = rnnbench.run(cfg).summary
        row = group.loc[solo["run_id"]]
        for column in ("final_eval_loss", "best_eval_loss", "spectral_radius_end", "frac_clipped"):
            assert row[column] == pytest.approx(solo[column], rel=1e-7), column


COMPARED = {**TINY, "seeds": 2, "compare": {"baseline": "tanh-RNN"}}


def test_compare_key_plans_the_comparison(tmp_path):
    res = snakemake(workdir(tmp_path, COMPARED), "-n", "--quiet", "rules", "--cores", "2")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    counts = dict(line.split()[:2] for line in out.splitlines() if line.split()[:1]
                  and line.split()[0] in ("compare", "figures", "train_chunk"))
    assert counts == {"compare": "1", "figures": "1", "train_chunk": "2"}, out  # a job per core
    for caption in ("comparison_table", "leaderboard_table", "figure"):
        assert (ROOT / "workflow" / "report" / f"{caption}.rst").is_file()


@pytest.mark.slow
def test_compare_tiny_study_end_to_end(tmp_path):
    """Two methods, two seeds, `compare: {baseline: tanh-RNN}`: the comparison tables and figure
    (only those targets, to keep it short: the other outputs are tested above)."""
    wd = workdir(tmp_path, COMPARED)
    study = wd / "results" / "tiny"
    targets = [f"results/tiny/{f}" for f in ("tables/comparison.csv", "tables/leaderboard.csv",
                                             "figures")]
    res = snakemake(wd, "--cores", "2", *targets)
    assert res.returncode == 0, res.stdout + res.stderr
    table = pd.read_csv(study / "tables" / "comparison.csv")
    assert list(table.columns[:16]) == [
        "method", "baseline", "task", "T", "n_runs", "success_rate", "baseline_success_rate",
        "success_diff", "success_diff_lo", "success_diff_hi", "loss_ratio", "loss_ratio_lo",
        "loss_ratio_hi", "p_value", "p_adjusted", "verdict"]
    assert table[["method", "baseline", "n_runs", "baseline_n_runs"]].values.tolist() == [
        ["LSTM", "tanh-RNN", 2, 2]]
    assert table["verdict"].isin(["better", "worse", "no evidence"]).all()
    board = pd.read_csv(study / "tables" / "leaderboard.csv")
    assert sorted(board["method"]) == ["LSTM", "tanh-RNN"] and (board["cells"] == 1).all()
    assert (study / "tables" / "comparison.md").read_text().startswith("| method | baseline |")
    for ext in ("png", "pdf"):
        assert (study / "figures" / f"comparison.{ext}").stat().st_size > 1000
PLUGIN_CELL = (ROOT / "methods" / "template_cell.py").read_text().replace(
    '"template_elman"', '"outside_elman"')


@pytest.mark.slow
def test_plugin_cell_from_outside_the_package_runs_through_snakemake(tmp_path):
    """A study's `plugins:` names a file outside the package: the Snakemake process and every
    job load it (a job that did not would stop at the unknown cell)."""
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "my_cells.py").write_text(PLUGIN_CELL)
    (tmp_path / "wd").mkdir()
    study = {**TINY, "plugins": ["../../ext/my_cells.py"],  # relative to config/config.yaml
             "methods": {"Elman": {"cell": "outside_elman", "init": "orthogonal"},
                         "LSTM": {"cell": "lstm", "match_params": 300}}}
    wd = workdir(tmp_path / "wd", study)
    # the runs and the tables (the figures' jobs cost a minute; the figure is drawn below)
    res = snakemake(wd, "--cores", "2", "results/tiny/tables/success.md")
    assert res.returncode == 0, res.stdout + res.stderr
    runs = pd.read_parquet(wd / "results/tiny/runs.parquet").set_index("method")
    elman = runs.loc["Elman"]
    assert elman["cell"] == "outside_elman" and elman["backend_used"] == "torch"
    assert elman["spectral_radius_start"] == pytest.approx(1.0, abs=1e-5)  # orthogonal weight_hh
    assert elman["n_params"] == 8 * 8 + 8 * 2 + 8 + 8 + 1
    lstm_hidden = runs.loc["LSTM", "hidden"]  # match_params: 4(8H + H^2 + 2H)... closest to 300
    counts = {h: 4 * (2 * h + h * h + 2 * h) + h + 1 for h in range(1, 20)}
    assert lstm_hidden == min(counts, key=lambda h: (abs(counts[h] - 300), h))
    assert runs.loc["LSTM", "n_params"] == counts[lstm_hidden]
    flow = pd.read_parquet(wd / "results/tiny/gradflow.parquet")
    flow = flow[flow["run_id"] == elman["run_id"]]
    assert len(flow) == 2 * TINY["fixed"]["T"] and np.isfinite(flow["grad_norm"]).all()
    assert "Elman" in (wd / "results/tiny/tables/success.md").read_text()
    from rnnbench import plots
    figure = plots.gradflow_vs_lag(pd.read_parquet(wd / "results/tiny/gradflow.parquet"),
                                   runs.reset_index(), tmp_path / "gradflow_vs_lag")
    assert all(Path(f).stat().st_size > 1000 for f in figure)


def test_broken_plugin_stops_the_workflow_before_any_job(tmp_path):
    wd = workdir(tmp_path, {**TINY, "plugins": ["broken.py"]})  # beside config/config.yaml
    (wd / "config" / "broken.py").write_text("import torch\nraise ImportError('no such helper')\n")
    res = snakemake(wd, "--cores", "1")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert str((wd / "config" / "broken.py").resolve()) in out and "no such helper" in out, out
    assert "train_chunk" not in out and not (wd / "results").exists()


def test_figure_table_drives_the_figures_rule(tmp_path):
    """Figures are data: a new entry of rnnbench.figures.FIGURES is drawn by the one `figures` rule,
    with its caption in the report, and nothing else in the workflow names it."""
    from rnnbench import figures

    for name, spec in figures.FIGURES.items():
        assert set(spec.inputs) <= set(figures.TABLES) and spec.caption.strip(), name
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    for name in figures.FIGURES:
        for named in (f"figures/{name}", f"plot_{name}", f"report/{name}.rst"):
            assert named not in rules, f"figure {name!r} is named in the rules: it should be data"
    with pytest.raises(ValueError, match="unknown figure"):
        figures.render("no_such_figure", tmp_path)
