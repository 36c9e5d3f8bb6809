"""Fault tests on real runs: killed jobs, checkpoint/resume, divergence, damaged result files,
bad configurations, determinism.

Every run here is tiny (T=10, a handful of hidden units, few steps) and on the CPU; the Snakemake
tests run the repository's workflow (Snakefile + workflow/) in a temporary copy.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

import rnnbench.train
from rnnbench.aggregate import collect
from rnnbench.train import CHECKPOINT
from support import (RNNBENCH, DEFAULT_PROFILE, TINY_FIXED, result_table,
                     assert_same_summary, env, make_workdir, snakemake_cmd, snakemake,
                     tail, study_dict, run_folders, find_training_process, wait_for,
                     mtimes, numba_available, BACKENDS)

# Exploding gradients on purpose: relu RNN, identity recurrence scaled by 3, lr 1, no clipping.
EXPLODING = {"cell": "rnn", "activation": "relu", "init": "identity", "init_scale": 3.0,
             "optimizer": "sgd", "lr": 1.0, "clip": "none"}


# --- a finished study shared by several tests ------------------------------------------------
FAULTS_STUDY = study_dict("faults", {
    "tanh-RNN": {"cell": "rnn", "activation": "tanh"},
    "GRU": {"cell": "gru"},
    "exploding": EXPLODING,
})


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """The faults study (two ordinary runs, one that diverges) run with the default profile."""
    workdir = make_workdir(tmp_path_factory.mktemp("faults-a"), FAULTS_STUDY)
    proc = snakemake(workdir, "faults", "--profile", str(DEFAULT_PROFILE), "--cores", "2")
    assert proc.returncode == 0, f"snakemake failed:\n{tail(proc.stdout)}"
    return workdir


@pytest.mark.slow
def test_diverging_run_is_recorded_and_study_completes(finished_study):
    runs = pd.read_parquet(finished_study / "results" / "faults" / "runs.parquet")
    assert sorted(runs["method"]) == ["GRU", "exploding", "tanh-RNN"]
    by_method = runs.set_index("method")
    bad = by_method.loc["exploding"]
    assert bool(bad["diverged"]) is True
    assert 1 <= bad["diverged_step"] <= FAULTS_STUDY["fixed"]["steps"]
    assert bad["diverged_step"] == int(bad["diverged_step"])
    assert bad["steps_done"] == bad["diverged_step"]
    assert not bool(bad["solved"])
    for ok in ("tanh-RNN", "GRU"):
        assert bool(by_method.loc[ok, "diverged"]) is False
        assert pd.isna(by_method.loc[ok, "diverged_step"])
        assert by_method.loc[ok, "steps_done"] == FAULTS_STUDY["fixed"]["steps"]
    # The diverged run's curve ends at its divergence step.
    curves = pd.read_parquet(finished_study / "results" / "faults" / "curves.parquet")
    bad_curve = curves[curves["run_id"] == bad["run_id"]]
    assert bad_curve["step"].max() == bad["diverged_step"]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_detected_in_process(backend, tmp_path):
    cfg = {**TINY_FIXED, **EXPLODING, "backend": backend}
    result = rnnbench.train.run(cfg, out_dir=tmp_path)
    assert bool(result.summary["diverged"]) is True
    assert 1 <= result.summary["diverged_step"] <= cfg["steps"]
    on_disk = pd.read_parquet(tmp_path / "summary.parquet")
    assert bool(on_disk["diverged"].iloc[0])
    assert on_disk["diverged_step"].iloc[0] == result.summary["diverged_step"]


@pytest.mark.slow
def test_same_study_twice_gives_identical_tables(finished_study, workflow_copy):
    again = workflow_copy(FAULTS_STUDY)
    proc = snakemake(again, "faults", "--profile", str(DEFAULT_PROFILE), "--cores", "2")
    assert proc.returncode == 0, f"snakemake failed:\n{tail(proc.stdout)}"
    for table in ("runs", "curves", "gradflow"):
        a = result_table(finished_study / "results" / "faults" / f"{table}.parquet")
        b = result_table(again / "results" / "faults" / f"{table}.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{table}.parquet")


# --- damaged result files --------------------------------------------------------------------
def _truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path):
    path.write_bytes(b"this is not a parquet file\n" * 10)


def _empty(path: Path):
    path.write_bytes(b"")


def _flip_footer(path: Path):
    data = bytearray(path.read_bytes())
    data[-4:] = b"XXXX"   # parquet files end with the magic bytes PAR1
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_truncate, _garbage, _empty, _flip_footer],
                         ids=["truncated", "garbage", "empty", "bad-magic"])
@pytest.mark.parametrize("name", ["summary.parquet", "curve.parquet"])
def test_collect_names_a_damaged_file(finished_study, tmp_path, damage, name):
    study_dir = tmp_path / "faults"
    shutil.copytree(finished_study / "results" / "faults", study_dir)
    victim = sorted((study_dir / "runs").glob(f"*/{name}"))[1]
    damage(victim)
    with pytest.raises(ValueError) as excinfo:
        collect(study_dir)
    assert str(victim) in str(excinfo.value), f"message does not name {victim}: {excinfo.value}"


@pytest.mark.slow
def test_aggregate_rule_fails_naming_the_damaged_summary(finished_study, tmp_path):
    workdir = tmp_path / "work"
    shutil.copytree(finished_study, workdir, symlinks=True)
    victim = sorted((workdir / "results" / "faults" / "runs").glob("*/summary.parquet"))[0]
    _truncate(victim)
    rel = victim.relative_to(workdir)
    proc = snakemake(workdir, "faults", "--cores", "1", "--forcerun", "aggregate",
                     "--show-failed-logs")
    assert proc.returncode != 0, f"aggregation accepted a truncated summary:\n{tail(proc.stdout)}"
    assert "rule aggregate" in proc.stdout, tail(proc.stdout)
    assert "Error in rule aggregate" in proc.stdout, tail(proc.stdout)
    assert str(rel) in proc.stdout or str(victim) in proc.stdout, (
        f"snakemake output does not name {rel}:\n{tail(proc.stdout, 80)}")
    # Nothing was retrained: the damaged file's run was not silently redone.
    assert "rule train_chunk" not in proc.stdout, tail(proc.stdout)


# --- a job killed with SIGKILL in the middle of a study ---------------------------------------
KILL_STUDY = study_dict("killed", {
    "quick-RNN": {"cell": "rnn"},
    "quick-GRU": {"cell": "gru"},
    # Long enough to be killed half-way (~6 s of training), with checkpoints to resume from.
    "slow": {"cell": "gru", "steps": 6000, "eval_interval": 500, "early_stop": False,
             "checkpoint_every": 200},
}, chunks={"per_core": 2, "steal": False})  # the slow run alone in a job of its own


@pytest.mark.slow
def test_sigkilled_job_leaves_no_summary_and_rerun_redoes_only_it(tmp_path, workflow_copy):
    ids = run_folders(KILL_STUDY)
    workdir = workflow_copy(KILL_STUDY)
    runs_dir = workdir / "results" / "killed" / "runs"
    slow_dir = runs_dir / ids["slow"]
    cmd = snakemake_cmd("killed", "--profile", str(DEFAULT_PROFILE), "--cores", "1")
    log = tmp_path / "first.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            # Progress: the slow run has written a checkpoint.
            wait_for(lambda: (slow_dir / CHECKPOINT).exists(), 240,
                     "the slow run's first checkpoint", alive=lambda: proc.poll() is None)
            pid = wait_for(lambda: find_training_process(ids["slow"]), 30,
                           "the slow run's training process")
            os.kill(pid, signal.SIGKILL)
            rc = proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    first = log.read_text()
    assert rc != 0, f"snakemake did not report the killed job:\n{tail(first)}"
    # The killed run left nothing that looks finished; the others finished (keep-going).
    assert not (slow_dir / "summary.parquet").exists(), sorted(os.listdir(slow_dir))
    leftovers = sorted(p.name for p in slow_dir.glob("*.parquet")) if slow_dir.exists() else []
    assert leftovers == [], f"killed run left result files: {leftovers}"
    for method in ("quick-RNN", "quick-GRU"):
        assert (runs_dir / ids[method] / "summary.parquet").exists(), tail(first)
    assert not (workdir / "results" / "killed" / "runs.parquet").exists()
    before = {m: mtimes(runs_dir / ids[m]) for m in ("quick-RNN", "quick-GRU")}

    time.sleep(1.1)  # a rewritten file would get a visibly different mtime
    proc2 = snakemake(workdir, "killed", "--profile", str(DEFAULT_PROFILE), "--cores", "1")
    assert proc2.returncode == 0, f"rerun failed:\n{tail(proc2.stdout)}"
    jobs = re.findall(r"^(?:local)?rule (\w+):", proc2.stdout, flags=re.M)
    assert jobs.count("train_chunk") == 1, f"rerun had {jobs.count('train_chunk')} jobs:\n" + \
        tail(proc2.stdout)
    for method, files in before.items():
        assert mtimes(runs_dir / ids[method]) == files, f"{method} was redone"
    assert (slow_dir / "summary.parquet").exists()
    assert not (slow_dir / CHECKPOINT).exists(), "checkpoint left behind after the run finished"
    runs = pd.read_parquet(workdir / "results" / "killed" / "runs.parquet")
    assert sorted(runs["method"]) == ["quick-GRU", "quick-RNN", "slow"]
    slow = runs.set_index("method").loc["slow"]
    assert slow["steps_done"] == 6000 and not bool(slow["diverged"])


# --- checkpoint / resume ---------------------------------------------------------------------
def _resume_config(backend: str, cell: str) -> dict:
    return {**TINY_FIXED, "cell": cell, "backend": backend, "dtype": "float64", "steps": 30,
            "eval_interval": 4, "checkpoint_every": 5, "early_stop": False,
            "diagnostics_every": 8}


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_from_checkpoint_equals_uninterrupted_run(backend, cell, tmp_path):
    cfg = _resume_config(backend, cell)
    whole = rnnbench.train.run(cfg, out_dir=tmp_path / "whole")

    out = tmp_path / "interrupted"
    # Stop between two checkpoints: steps 11-13 are done twice, the second time after resuming.
    assert rnnbench.train.run(cfg, out_dir=out, stop_after=13) is None
    assert (out / CHECKPOINT).exists()
    assert not (out / "summary.parquet").exists()
    resumed = rnnbench.train.run(cfg, out_dir=out)
    assert resumed is not None

    assert_same_summary(resumed.summary, whole.summary)
    pd.testing.assert_frame_equal(resumed.curve, whole.curve, check_exact=True)
    pd.testing.assert_frame_equal(resumed.gradflow, whole.gradflow, check_exact=True)
    for table in ("summary", "curve", "gradflow"):
        pd.testing.assert_frame_equal(result_table(out / f"{table}.parquet"),
                                      result_table(tmp_path / "whole" / f"{table}.parquet"),
                                      check_exact=True, obj=table)
    assert not (out / CHECKPOINT).exists()


@pytest.mark.slow
def test_sigkill_then_resume_via_cli_equals_uninterrupted_run(tmp_path):
    # The fastest CPU backend: a few seconds of training, killed after its first checkpoint.
    backend, steps = ("numba", 4000) if numba_available() else ("torch", 200)
    cfg = {**TINY_FIXED, "cell": "gru", "backend": backend, "dtype": "float64", "steps": steps,
           "eval_interval": steps // 8, "checkpoint_every": steps // 20, "early_stop": False}
    out = tmp_path / "run"
    cmd = [str(RNNBENCH), "run", "--json", json.dumps(cfg), "--out", str(out)]
    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(cmd, env=env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: (out / CHECKPOINT).exists(), 120, "the first checkpoint",
                     alive=lambda: proc.poll() is None)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.parquet").exists()
    resumed = subprocess.run(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout
    assert (out / "summary.parquet").exists() and not (out / CHECKPOINT).exists()

    whole = rnnbench.train.run(cfg, out_dir=tmp_path / "whole")
    pd.testing.assert_frame_equal(result_table(out / "summary.parquet"),
                                  result_table(pd.DataFrame([whole.summary])),
                                  check_exact=True, check_dtype=False, obj="summary")
    pd.testing.assert_frame_equal(result_table(out / "curve.parquet"), result_table(whole.curve),
                                  check_exact=True, obj="curve")


