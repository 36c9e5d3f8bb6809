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
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import rnnbench.train
from rnnbench.aggregate import collect
from rnnbench.study import load_study
from rnnbench.train import CHECKPOINT

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = VENV_BIN / "snakemake"
RNNBENCH = VENV_BIN / "rnnbench"
DEFAULT_PROFILE = REPO / "profiles" / "default"

TINY_FIXED = {"task": "adding", "T": 10, "hidden": 8, "optimizer": "adam", "lr": 0.01,
              "batch_size": 8, "steps": 20, "eval_interval": 10, "eval_size": 32,
              "device": "cpu"}
# Exploding gradients on purpose: relu RNN, identity recurrence scaled by 3, lr 1, no clipping.
EXPLODING = {"cell": "rnn", "activation": "relu", "init": "identity", "init_scale": 3.0,
             "optimizer": "sgd", "lr": 1.0, "clip": "none"}


# --- helpers ---------------------------------------------------------------------------------
def _is_provenance(column: str) -> bool:
    return column.startswith("prov_") or column == "wall_time_s" or "host" in column


def result_table(df_or_path) -> pd.DataFrame:
    """A result table without provenance/time columns, rows in a canonical order."""
    df = pd.read_parquet(df_or_path) if isinstance(df_or_path, (str, Path)) else df_or_path
    df = df[[c for c in df.columns if not _is_provenance(c)]]
    keys = [c for c in ("run_id", "step", "phase", "lag") if c in df.columns]
    return df.sort_values(keys).reset_index(drop=True) if keys else df.reset_index(drop=True)


def summary_without_provenance(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if not _is_provenance(k)}


def assert_same_summary(a: dict, b: dict):
    a, b = summary_without_provenance(a), summary_without_provenance(b)
    assert a.keys() == b.keys()
    different = {k: (a[k], b[k]) for k in a if not _same_value(a[k], b[k])}
    assert not different, f"summaries differ: {different}"


def _same_value(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float) and x != x and y != y:
        return True  # both NaN
    return x == y


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e.get('PATH', '')}"
    e["RNNBENCH_NO_PROGRESS"] = "1"
    e.pop("SNAKEMAKE_PROFILE", None)
    return e


def make_workdir(root: Path, study: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", root / "Snakefile")
    shutil.copytree(REPO / "workflow", root / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
    (root / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return root


def snakemake_cmd(study_name: str | None, *args: str, limit: int = 300) -> list[str]:
    target = [f"results/{study_name}/runs.parquet"] if study_name else []
    return ["timeout", "-k", "10", str(limit), str(SNAKEMAKE), *target, *args,
            "--configfile", "study.yaml"]


def snakemake(workdir: Path, study_name: str | None, *args: str, limit: int = 300):
    return subprocess.run(snakemake_cmd(study_name, *args, limit=limit), cwd=workdir, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def study_dict(name: str, methods: dict, fixed=None, **extra) -> dict:
    return {"study": name, "seeds": 1, "fixed": dict(fixed or TINY_FIXED), "methods": methods,
            **extra}


def run_folders(study: dict) -> dict[str, str]:
    """method -> the run's folder name under results/<study>/runs/ (one run per method here)."""
    loaded = load_study(copy.deepcopy(study))
    folder = getattr(loaded, "folder", lambda cfg: cfg.run_id())
    return {cfg.method: folder(cfg) for cfg in loaded.runs()}


def find_training_process(run_folder: str) -> int | None:
    """PID of the `rnnbench run-chunk .../chunks/<run_folder>.json` process training that run
    alone (a chunk of one run is named after the run's folder), if it runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        # `rnnbench run ...` (console script) or `python -m rnnbench run ...`
        if (any(Path(a).name == "rnnbench" for a in args[:3]) and "run-chunk" in args
                and any(Path(a).name == f"{run_folder}.json" for a in args)):
            return int(entry.name)
    return None


def wait_for(predicate, timeout: float, what: str, alive=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if alive is not None and not alive():
            pytest.fail(f"the process ended before {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file()}


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
        from rnnbench.backends import numba_backend  # noqa: F401
    except Exception:
        return False
    return True


BACKENDS = ["torch", pytest.param("numba", marks=pytest.mark.skipif(
    not numba_available(), reason="numba backend not importable"))]


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
def test_same_study_twice_gives_identical_tables(finished_study, tmp_path):
    again = make_workdir(tmp_path / "faults-b", FAULTS_STUDY)
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
})


@pytest.mark.slow
def test_sigkilled_job_leaves_no_summary_and_rerun_redoes_only_it(tmp_path):
    ids = run_folders(KILL_STUDY)
    workdir = make_workdir(tmp_path / "killed", KILL_STUDY)
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


# --- bad configurations are rejected before anything runs ------------------------------------
def _set(path: str, value):
    """A change to the valid fuzz study: set `path` (dotted) to `value`."""
    def change(study):
        *parents, last = path.split(".")
        node = study
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return change


def _delete(path: str):
    def change(study):
        *parents, last = path.split(".")
        node = study
        for p in parents:
            node = node[p]
        del node[last]
    return change


FUZZ_BASE = {"study": "fuzz", "seeds": 1, "fixed": dict(TINY_FIXED),
             "methods": {"m": {"cell": "rnn"}}, "axes": {"eval_size": [32, 64]}}

# (id, change, the field the message must name)
BAD_CONFIGS = [
    # unknown keys at every level
    ("top-unknown", _set("studyy", "x"), "studyy"),
    ("fixed-unknown", _set("fixed.hiddn", 8), "hiddn"),
    ("method-unknown", _set("methods.m.lrate", 0.1), "lrate"),
    ("axes-unknown", _set("axes.lenght", [10]), "lenght"),
    ("exclude-unknown", _set("exclude", [{"cel": "rnn"}]), "cel"),
    ("task-option-unknown", _set("fixed.task_options", {"no_such_option": 1}), "no_such_option"),
    # wrong types
    ("hidden-str", _set("fixed.hidden", "eight"), "hidden"),
    ("T-float", _set("fixed.T", 10.5), "T"),
    ("lr-str", _set("fixed.lr", "fast"), "lr"),
    ("steps-bool", _set("fixed.steps", True), "steps"),
    ("bidirectional-str", _set("methods.m.bidirectional", "yes"), "bidirectional"),
    ("early_stop-int", _set("fixed.early_stop", 1), "early_stop"),
    ("task_options-list", _set("fixed.task_options", [1, 2]), "task_options"),
    ("clip_threshold-str", _set("fixed.clip_threshold", "1.0"), "clip_threshold"),
    ("axis-not-list", _set("axes.T", 10), "T"),
    ("axis-value-type", _set("axes.T", [10, "long"]), "T"),
    ("fixed-not-mapping", _set("fixed", [1, 2]), "fixed"),
    # impossible values
    ("T-zero", _set("fixed.T", 0), "T"),
    ("T-negative-axis", _set("axes.T", [10, -5]), "T"),
    ("hidden-zero", _set("fixed.hidden", 0), "hidden"),
    ("batch_size-zero", _set("fixed.batch_size", 0), "batch_size"),
    ("steps-zero", _set("fixed.steps", 0), "steps"),
    ("eval_interval-zero", _set("fixed.eval_interval", 0), "eval_interval"),
    ("lr-zero", _set("fixed.lr", 0), "lr"),
    ("lr-negative", _set("methods.m.lr", -0.1), "lr"),
    ("momentum-one", _set("fixed.momentum", 1.0), "momentum"),
    ("clip_threshold-zero", _set("fixed.clip_threshold", 0), "clip_threshold"),
    ("clip_threshold-negative", _set("methods.m.clip_threshold", -1.0), "clip_threshold"),
    ("init_scale-negative", _set("fixed.init_scale", -1.0), "init_scale"),
    ("divergence_factor-low", _set("fixed.divergence_factor", 0.5), "divergence_factor"),
    ("checkpoint_every-negative", _set("fixed.checkpoint_every", -1), "checkpoint_every"),
    # unknown names
    ("task-unknown", _set("fixed.task", "no_such_task"), "task"),
    ("cell-unknown", _set("methods.m.cell", "transformer"), "cell"),
    ("init-unknown", _set("fixed.init", "no_such_init"), "init"),
    ("activation-unknown", _set("fixed.activation", "swishy"), "activation"),
    ("optimizer-unknown", _set("fixed.optimizer", "adamw2"), "optimizer"),
    ("clip-unknown", _set("fixed.clip", "clamp"), "clip"),
    ("dtype-unknown", _set("fixed.dtype", "float16"), "dtype"),
    ("device-unknown", _set("fixed.device", "tpu"), "device"),
    ("backend-unknown", _set("fixed.backend", "jax"), "backend"),
    ("task-axis-unknown", _set("axes.task", ["adding", "no_such_task"]), "task"),
    # study shape
    ("axes-empty-list", _set("axes.T", []), "T"),
    ("methods-empty", _set("methods", {}), "methods"),
    ("seeds-zero", _set("seeds", 0), "seeds"),
    ("seeds-negative", _set("seeds", -2), "seeds"),
    ("seeds-empty-list", _set("seeds", []), "seeds"),
    ("seeds-duplicate", _set("seeds", [0, 0]), "seeds"),
    ("seeds-str", _set("seeds", "three"), "seeds"),
    ("seed-in-fixed", _set("fixed.seed", 3), "seed"),
    ("study-missing", _delete("study"), "study"),
    ("study-slash", _set("study", "a/b"), "study"),
]


def _bad_study(change) -> dict:
    study = copy.deepcopy(FUZZ_BASE)
    change(study)
    return study


def _names_field(message: str, name: str) -> bool:
    """The message names the field: quoted ('T' or "T"), or as the prefix `T: ...`."""
    return (f"'{name}'" in message or f'"{name}"' in message
            or re.search(rf"(^|\s){re.escape(name)}: ", message) is not None)


def test_fuzz_base_study_is_valid():
    assert len(load_study(copy.deepcopy(FUZZ_BASE)).runs()) == 2


@pytest.mark.parametrize("change,name", [(c, n) for _, c, n in BAD_CONFIGS],
                         ids=[i for i, _, _ in BAD_CONFIGS])
def test_bad_config_rejected_naming_the_field(change, name):
    with pytest.raises(ValueError) as excinfo:
        load_study(_bad_study(change)).runs()
    assert _names_field(str(excinfo.value), name), (
        f"message does not name '{name}': {excinfo.value}")


# A few of them through the Snakemake command line: rejected before any job starts.
CLI_BAD = ["fixed-unknown", "clip_threshold-zero", "seeds-zero", "cell-unknown"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CLI_BAD)
def test_bad_config_rejected_by_snakemake(case, tmp_path):
    _, change, name = next(c for c in BAD_CONFIGS if c[0] == case)
    workdir = make_workdir(tmp_path / case, _bad_study(change))
    # Not a dry run for the first case: nothing may start, not even a results folder.
    dry = ["-n"] if case != CLI_BAD[0] else []
    proc = snakemake(workdir, None, *dry, "--cores", "1", limit=120)
    assert proc.returncode != 0, f"snakemake accepted a bad config:\n{tail(proc.stdout)}"
    assert _names_field(proc.stdout, name), (
        f"snakemake's output does not name '{name}':\n{tail(proc.stdout, 40)}")
    assert "rule train_chunk" not in proc.stdout
    assert not (workdir / "results").exists()
