"""Several runs per job: the packing plan, `rnnbench run-chunk`, and a chunk killed half-way.

A run's results must not depend on whether it trained alone or in a chunk, and a chunk killed
half-way keeps the runs it finished: a rerun trains only the others.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import rnnbench.train as train
from rnnbench.chunks import estimate_seconds, plan, steal_order
from rnnbench.cli import main as cli_main
from rnnbench.config import RunConfig
from rnnbench.study import load_study
from rnnbench.chunk_job import CLAIM_SUFFIX, FAILED_MARK, claimed, run_chunk
from rnnbench.train import CHECKPOINT
from support import (DEFAULT_PROFILE, TINY_FIXED, result_table, assert_same_summary,
                     env, snakemake_cmd, snakemake, tail, study_dict,
                     run_folders, wait_for, mtimes)

BASE = RunConfig.from_dict({**TINY_FIXED, "eval_size": 16})


def _runs():
    return [BASE.replace(cell=cell, T=T, seed=seed, steps=steps)
            for cell, T, steps in (("rnn", 10, 20), ("lstm", 30, 200), ("gru", 20, 60))
            for seed in range(3)]


# --- the plan -------------------------------------------------------------------------------
def test_cost_estimate_grows_with_the_work():
    assert estimate_seconds(BASE.replace(steps=40)) > estimate_seconds(BASE)
    assert estimate_seconds(BASE.replace(T=40)) > estimate_seconds(BASE)
    assert estimate_seconds(BASE.replace(hidden=64)) > estimate_seconds(BASE)
    assert estimate_seconds(BASE.replace(cell="lstm")) > estimate_seconds(BASE.replace(cell="gru")) \
        > estimate_seconds(BASE)
    assert estimate_seconds(BASE.replace(layers=2)) > 2 * estimate_seconds(BASE)  # torch path


def test_cost_estimate_prices_the_backend_the_run_will_use():
    """An rnn whose activation the kernels lack trains on torch (backends.resolve_backend), and
    the estimate prices it so: the planner and the selection read one rule (cell_table)."""
    from rnnbench.backends import resolve_backend
    tanh, softsign = BASE.replace(activation="tanh"), BASE.replace(activation="softsign")
    assert resolve_backend(tanh) == "numba" and resolve_backend(softsign) == "torch"
    assert estimate_seconds(softsign) > 2 * estimate_seconds(tanh)


@pytest.mark.parametrize("cores, per_core, expected", [(1, 2, 2), (2, 2, 4), (3, 1, 3), (8, 2, 9)])
def test_plan_covers_every_run_once_in_the_wanted_number_of_chunks(cores, per_core, expected):
    runs = _runs()
    chunks = plan(runs, cores, {"per_core": per_core})
    assert len(chunks) == expected  # per_core x cores, at most one chunk per run
    members = [cfg.run_id() for chunk in chunks for cfg in chunk.runs]
    assert sorted(members) == sorted(cfg.run_id() for cfg in runs)
    for chunk in chunks:  # the most expensive run of a chunk goes first
        costs = [estimate_seconds(cfg) for cfg in chunk.runs]
        assert costs == sorted(costs, reverse=True)
        assert chunk.seconds == pytest.approx(sum(costs))
    # longest-processing-time-first: no chunk exceeds the mean by more than one run's cost
    loads = [c.seconds for c in chunks]
    biggest = max(estimate_seconds(cfg) for cfg in runs)
    assert max(loads) <= sum(loads) / len(loads) + biggest
    assert plan(runs, cores, {"per_core": per_core}) == chunks, "deterministic"


def test_plan_splits_chunks_over_the_time_limit_and_can_be_disabled():
    runs = _runs()
    total = sum(estimate_seconds(cfg) for cfg in runs)
    limit_minutes = total / 60 / 4.5
    chunks = plan(runs, 1, {"per_core": 0, "max_minutes": limit_minutes})
    assert len(chunks) == 5
    single = plan(runs, 4, {"enabled": False})
    assert [len(c.runs) for c in single] == [1] * len(runs)
    assert plan([], 2) == []


def test_chunk_names_are_stable_and_readable():
    study = load_study({"study": "s", "seeds": 2, "fixed": {**TINY_FIXED},
                        "methods": {"RNN": {"cell": "rnn"}, "GRU": {"cell": "gru"}}})
    chunks, groups = study.jobs(cores=2)
    assert groups == {} and len(chunks) == 2 and all(c.startswith("chunk-") for c in chunks)
    assert study.jobs(cores=2) == (chunks, groups)
    folders = sorted(study.folders().values())
    alone, _ = study.jobs(cores=2, finished=folders[1:])  # one run left: a chunk named after it
    assert list(alone) == [folders[0]] and alone[folders[0]] == [folders[0]]
    assert study.jobs(cores=1, finished=folders) == ({}, {})





# --- run-chunk ------------------------------------------------------------------------------
def test_a_run_in_a_chunk_equals_the_run_alone(tmp_path):
    configs = [BASE.replace(cell="lstm", steps=30, diagnostics_every=10),
               BASE.replace(cell="rnn", activation="relu", seed=3),
               BASE.replace(cell="gru", backend="torch", dtype="float64")]
    alone = [train.run(cfg) for cfg in configs]
    chunk = [(cfg, tmp_path / f"run{i}") for i, cfg in enumerate(configs)]
    assert run_chunk(chunk) == []
    for (cfg, out), ref in zip(chunk, alone):
        summary = pd.read_parquet(out / "summary.parquet").iloc[0].to_dict()
        assert_same_summary(summary, pd.DataFrame([ref.summary]).iloc[0].to_dict())
        pd.testing.assert_frame_equal(result_table(out / "curve.parquet"), result_table(ref.curve))
        pd.testing.assert_frame_equal(result_table(out / "gradflow.parquet"),
                                      result_table(ref.gradflow))
    before = {i: mtimes(out) for i, (_, out) in enumerate(chunk)}
    assert run_chunk(chunk) == []  # every run done: nothing retrained
    assert {i: mtimes(out) for i, (_, out) in enumerate(chunk)} == before


def test_a_failing_run_does_not_stop_its_chunk(tmp_path, monkeypatch, capsys):
    configs = [BASE.replace(seed=s) for s in range(3)]
    real_run = train.run

    def run(cfg, **kwargs):
        if cfg.seed == 1:
            raise RuntimeError("boom")
        return real_run(cfg, **kwargs)

    monkeypatch.setattr(train, "run", run)
    chunk = [(cfg, tmp_path / f"s{cfg.seed}") for cfg in configs]
    assert run_chunk(chunk) == [configs[1].run_id()]
    assert (tmp_path / "s0" / "summary.parquet").exists()
    assert (tmp_path / "s2" / "summary.parquet").exists()
    assert not (tmp_path / "s1").exists()
    assert "boom" in capsys.readouterr().err

    spec = tmp_path / "chunk.json"
    spec.write_text(json.dumps({"runs": [{"config": cfg.to_dict(), "out_dir": str(out)}
                                         for cfg, out in chunk]}))
    assert cli_main(["run-chunk", str(spec)]) == 1  # the job fails; the others' files stay
    assert "1 of 3 runs failed" in capsys.readouterr().err


@pytest.mark.parametrize("spec, words", [
    ("not json", ["chunk spec"]),
    ({"runs": []}, ["at least one run"]),
    ({"runs": 5}, ["at least one run"]),
    ({"runs": [{"config": {}, "out_dir": "x"}], "others": 5}, ["'others' must be a list"]),
    ({"runs": [{"config": {"cell": "lstn"}, "out_dir": "x"}]}, ["run 0", "cell", "lstn"]),
    ({"runs": [{"config": {}, "out": "x"}]}, ["run 0", "out_dir"]),
])
def test_bad_chunk_spec_is_named_before_any_run(tmp_path, capsys, spec, words):
    path = tmp_path / "spec.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    assert cli_main(["run-chunk", str(path)]) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err


# --- jobs taking runs from each other ---------------------------------------------------------
def test_steal_order_takes_each_other_chunks_last_runs_first_in_turn():
    chunks = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"], "c": ["c1"]}
    assert steal_order(chunks, "a") == ["b2", "c1", "b1"]
    assert steal_order(chunks, "c") == ["a3", "b2", "a2", "b1", "a1"]
    assert steal_order({"a": ["a1"]}, "a") == []


def _held_elsewhere(out_dir):
    """Hold a run's claim as another chunk job would: a lock on a file descriptor of our own."""
    import fcntl
    fd = os.open(f"{out_dir}{CLAIM_SUFFIX}", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_job_trains_other_chunks_runs_except_claimed_ones_and_those_over_its_time(tmp_path):
    own, free, held = (BASE.replace(seed=s) for s in range(3))
    costly = BASE.replace(seed=3, steps=10 ** 7)  # estimated at hours: 3x that is over 600 s
    fd = _held_elsewhere(tmp_path / "held")
    try:
        others = [(free, str(tmp_path / "free")), (held, str(tmp_path / "held")),
                  (costly, str(tmp_path / "costly"))]
        assert run_chunk([(own, tmp_path / "own")], others=others, time_limit_s=600) == []
    finally:
        os.close(fd)
    assert (tmp_path / "own" / "summary.parquet").exists()
    assert (tmp_path / "free" / "summary.parquet").exists()  # taken from another chunk
    assert not (tmp_path / "held").exists()                  # another job is training it
    assert not (tmp_path / "costly").exists()                # 3 x its estimate over the limit
    assert not (tmp_path / f"free{CLAIM_SUFFIX}").exists()   # claims go once a run is finished
    alone = train.run(free)
    assert_same_summary(pd.read_parquet(tmp_path / "free" / "summary.parquet").iloc[0].to_dict(),
                        pd.DataFrame([alone.summary]).iloc[0].to_dict())


def test_a_job_waits_for_its_run_taken_by_another_and_trains_it_if_left_unfinished(tmp_path):
    import threading
    cfg, out = BASE.replace(seed=5), tmp_path / "run"
    fd = _held_elsewhere(out)
    released = []

    def release():  # the other job dies without finishing the run: its claim goes with it
        time.sleep(0.5)
        released.append(time.perf_counter())
        os.close(fd)

    threading.Thread(target=release).start()
    other = (BASE.replace(seed=4), tmp_path / "other")  # another chunk's run: claims are on
    assert run_chunk([(cfg, out)], others=[other]) == []
    assert released and (out / "summary.parquet").exists()
    with claimed(out, wait=False) as held:
        assert held is not None  # nobody holds a finished run's claim


def test_a_run_that_failed_in_its_owners_job_is_left_to_its_owner(tmp_path, monkeypatch):
    bad, first, second = (BASE.replace(seed=s) for s in (7, 8, 9))
    real_run, trained = train.run, []

    def run(cfg, **kwargs):
        trained.append(cfg.seed)
        if cfg.seed == 7:
            raise RuntimeError("boom")
        return real_run(cfg, **kwargs)

    monkeypatch.setattr(train, "run", run)
    bad_run = (bad, tmp_path / "bad")
    assert run_chunk([bad_run], others=[(first, tmp_path / "first")]) == [bad.run_id()]
    assert (tmp_path / f"bad{CLAIM_SUFFIX}").read_bytes() == FAILED_MARK
    assert run_chunk([(second, tmp_path / "second")], others=[bad_run]) == []  # not retried
    assert trained == [7, 8, 9]
    assert run_chunk([bad_run], others=[(first, tmp_path / "first")]) == [bad.run_id()]
    assert trained == [7, 8, 9, 7]  # its owner's job (a rerun) tries it again


def test_a_finished_chunk_job_exits_before_loading_plugins_or_torch(tmp_path):
    cfg, out = BASE.replace(seed=6), tmp_path / "run"
    assert run_chunk([(cfg, out)]) == []
    spec = tmp_path / "chunk.json"
    spec.write_text(json.dumps({"runs": [{"config": cfg.to_dict(), "out_dir": str(out)}]}))
    code = ("import sys; from rnnbench.cli import main; rc = main(['run-chunk', sys.argv[1]]); "
            "print('torch' in sys.modules, rc)")
    res = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True,
                         env=env())
    assert res.stdout.split()[-2:] == ["False", "0"], res.stdout + res.stderr
    assert "every run is finished" in res.stdout


# --- a chunk job killed half-way -------------------------------------------------------------
TWO_SLOW = study_dict("chunked", {
    # One chunk (per_core 1, one core), the costlier run first: killed while the second trains.
    "first": {"cell": "gru", "steps": 8000, "eval_interval": 500, "early_stop": False},
    "second": {"cell": "gru", "steps": 6000, "eval_interval": 500, "early_stop": False,
               "checkpoint_every": 200},
}, chunks={"per_core": 1})


def _jobs(log: str) -> list[str]:
    return re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M)


def _chunk_process(workdir) -> int | None:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if "run-chunk" in args and cwd == str(workdir):
            return int(entry.name)
    return None


@pytest.mark.slow
def test_killed_chunk_keeps_its_finished_runs_and_rerun_trains_only_the_rest(tmp_path, workflow_copy):
    ids = run_folders(TWO_SLOW)
    workdir = workflow_copy(TWO_SLOW)
    runs_dir = workdir / "results" / "chunked" / "runs"
    cmd = snakemake_cmd("chunked", "--profile", str(DEFAULT_PROFILE), "--cores", "1")
    log = tmp_path / "first.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: (runs_dir / ids["second"] / CHECKPOINT).exists(), 240,
                     "the second run's first checkpoint", alive=lambda: proc.poll() is None)
            os.kill(wait_for(lambda: _chunk_process(workdir), 30, "the chunk job"), signal.SIGKILL)
            rc = proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    first = log.read_text()
    assert rc != 0, tail(first)
    assert _jobs(first).count("train_chunk") == 1, "both runs were meant to share one job"
    assert (runs_dir / ids["first"] / "summary.parquet").exists(), tail(first)
    assert not (runs_dir / ids["second"] / "summary.parquet").exists()
    kept = mtimes(runs_dir / ids["first"])

    time.sleep(1.1)
    again = snakemake(workdir, "chunked", "--profile", str(DEFAULT_PROFILE), "--cores", "1")
    assert again.returncode == 0, tail(again.stdout)
    assert _jobs(again.stdout).count("train_chunk") == 1, tail(again.stdout)
    assert mtimes(runs_dir / ids["first"]) == kept, "the finished run was trained again"
    spec = next((workdir / "results" / "chunked" / "chunks").glob(f"{ids['second']}.json"))
    assert [r["out_dir"].rsplit("/", 1)[-1] for r in json.loads(spec.read_text())["runs"]] == \
        [ids["second"]]
    runs = pd.read_parquet(workdir / "results" / "chunked" / "runs.parquet")
    assert sorted(runs["method"]) == ["first", "second"]
    assert set(runs["steps_done"]) == {8000, 6000}
