"""The standing benchmark: choosing the learning rate on validation seeds only
(rnnbench.compare.select_tuned, study key compare.tune), the protocol check of committed runs
(rnnbench.benchmark.check_protocol), config/benchmark.yaml itself, and `rnnbench compare` end
to end on a tiny benchmark (two Snakemake runs: the committed baseline, then the method)."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rnnbench import benchmark
from rnnbench.cli import main as cli_main
from rnnbench.compare import comparison_table, select_tuned
from rnnbench.study import load_study

ROOT = Path(__file__).resolve().parents[1]
TEST_EVAL, VALIDATION_EVAL = 2000000011, 1000000007


# --- choosing on validation seeds ------------------------------------------------------------
def tuned_frame(losses: dict) -> pd.DataFrame:
    """losses: {(method, lr): {seed: final loss}}; seeds >= 100 are validation seeds (their
    own eval_seed); a loss < 0.01 is solved, NaN diverged."""
    rows = []
    for (method, lr), by_seed in losses.items():
        for seed, loss in by_seed.items():
            rows.append({"method": method, "task": "adding", "T": 50, "cell": method.lower(),
                         "lr": lr, "seed": seed,
                         "eval_seed": VALIDATION_EVAL if seed >= 100 else TEST_EVAL,
                         "final_eval_loss": loss, "solved": bool(loss < 0.01),
                         "diverged": bool(np.isnan(loss))})
    return pd.DataFrame(rows)


TEST_GOOD = {0: 0.001, 1: 0.002, 2: 0.003}
TEST_BAD = {0: 0.15, 1: 0.16, 2: 0.17}


def test_the_choice_looks_at_validation_runs_only():
    # B's validation runs prefer lr 0.01, though its test runs at 0.001 would look far better:
    # the choice must not see them. The baseline's 0.01 has a diverged validation run (worst).
    runs = tuned_frame({
        ("Base", 0.001): {100: 0.20, 101: 0.21, **TEST_BAD},
        ("Base", 0.01): {100: np.nan, 101: 0.01, **TEST_GOOD},
        ("B", 0.001): {100: 0.5, 101: 0.6, **TEST_GOOD},
        ("B", 0.01): {100: 0.1, 101: 0.2, **TEST_BAD},
    })
    test, choices = select_tuned(runs, "lr", [100, 101])
    assert choices.set_index("method")["lr"].to_dict() == {"Base": 0.001, "B": 0.01}
    assert choices.set_index("method")["validation_median_loss"].to_dict() == pytest.approx(
        {"Base": 0.205, "B": 0.15})
    assert (choices["validation_runs"] == 2).all()
    assert set(test["seed"]) == {0, 1, 2} and len(test) == 6  # test seeds, chosen lr only
    assert "lr" not in test.columns
    assert test.groupby("method")["tuned_lr"].first().to_dict() == {"Base": 0.001, "B": 0.01}
    assert sorted(test["final_eval_loss"]) == sorted([*TEST_BAD.values()] * 2)
    # each method at its own lr still forms one cell with the baseline
    table = comparison_table(test, "Base")
    assert table[["method", "n_runs", "baseline_n_runs"]].values.tolist() == [["B", 3, 3]]


def test_ties_go_to_the_smaller_value_and_other_axes_are_separate_choices():
    runs = tuned_frame({("A", 0.01): {100: 0.3, **TEST_GOOD}, ("A", 0.001): {100: 0.3, **TEST_BAD}})
    assert select_tuned(runs, "lr", [100])[1]["lr"].tolist() == [0.001]
    clipped = pd.concat([runs.assign(clip="norm"),
                         runs.assign(clip="none", final_eval_loss=np.where(
                             runs["lr"] == 0.01, 0.1, 0.2))], ignore_index=True)
    test, choices = select_tuned(clipped, "lr", [100])
    assert choices.set_index("clip")["lr"].to_dict() == {"norm": 0.001, "none": 0.01}
    assert len(test) == 6


def test_a_choice_without_validation_or_test_runs_is_refused():
    runs = tuned_frame({("A", 0.01): {100: 0.3, **TEST_GOOD}, ("B", 0.01): TEST_GOOD})
    with pytest.raises(ValueError, match=r"no validation runs \(seeds \[100\]\) for method=B"):
        select_tuned(runs, "lr", [100])
    runs = tuned_frame({("A", 0.01): {100: 0.3, **TEST_GOOD}, ("A", 0.001): {100: 0.1}})
    with pytest.raises(ValueError, match="chosen on the validation runs has no test runs"):
        select_tuned(runs, "lr", [100])
    with pytest.raises(ValueError, match="no validation runs"):
        select_tuned(tuned_frame({("A", 0.01): TEST_GOOD}), "lr", [100])


def test_write_comparison_tunes_when_the_study_says_so(tmp_path):
    from rnnbench.compare import compared_runs, write_comparison
    from rnnbench.records import write_parquet
    runs = tuned_frame({
        ("Base", 0.001): {100: 0.20, **TEST_BAD}, ("Base", 0.01): {100: 0.3, **TEST_GOOD},
        ("B", 0.001): {100: 0.5, **TEST_GOOD}, ("B", 0.01): {100: 0.1, **TEST_GOOD}})
    write_parquet(runs, tmp_path / "runs.parquet")
    out = write_comparison(tmp_path, "Base", "lr", [100])
    table = pd.read_csv(out["comparison"])
    assert table[["method", "n_solved", "baseline_n_solved"]].values.tolist() == [["B", 3, 0]]
    assert pd.read_csv(out["tuning"]).set_index("method")["lr"].to_dict() == {
        "Base": 0.001, "B": 0.01}
    assert out["tuning_md"].read_text().startswith("| method | task | T | lr |")
    settings = {"baseline": "Base", "tune": "lr", "validation_seeds": [100]}
    assert len(compared_runs(runs, settings)) == 6 and compared_runs(runs, {}) is runs


# --- the study key compare.tune --------------------------------------------------------------
TINY_FIXED = {"task": "adding", "T": 5, "hidden": 4, "batch_size": 8, "steps": 10,
              "eval_interval": 5, "eval_size": 16, "optimizer": "adam", "device": "cpu"}


def tiny_benchmark(name="tinybench", **changes) -> dict:
    """Two methods, lr {0.01, 0.03}, test seeds 0 and 1, validation seed 10 (own eval_seed)."""
    study = {"study": name, "seeds": [0, 1, 10], "fixed": dict(TINY_FIXED),
             "methods": {"tanh-RNN": {"cell": "rnn"}, "LSTM": {"cell": "lstm"}},
             "axes": {"lr": [0.01, 0.03], "eval_seed": [TEST_EVAL, VALIDATION_EVAL]},
             "exclude": [{"eval_seed": VALIDATION_EVAL, "seed": 0},
                         {"eval_seed": VALIDATION_EVAL, "seed": 1},
                         {"eval_seed": TEST_EVAL, "seed": 10}],
             "chunks": {"per_core": 0},  # one chunk job: fewer process starts
             "compare": {"baseline": "tanh-RNN", "tune": "lr", "validation_seeds": [10]}}
    study.update(changes)
    return study


def test_study_compare_tune_settings():
    assert load_study(tiny_benchmark()).compare == {
        "baseline": "tanh-RNN", "tune": "lr", "validation_seeds": [10]}


@pytest.mark.parametrize("compare, words", [
    ({"baseline": "tanh-RNN", "tune": "lr"}, ["go together"]),
    ({"baseline": "tanh-RNN", "tune": "clip", "validation_seeds": [10]},
     ["'tune' must name an axis", "'clip'"]),
    ({"baseline": "tanh-RNN", "tune": "lr", "validation_seeds": [10, 0, 1]},
     ["leaving at least one test seed"]),
    ({"baseline": "tanh-RNN", "tune": "lr", "validation_seeds": [7]}, ["some of the study's seeds"]),
    ({"baseline": "tanh-RNN", "tune": "lr", "validation_seeds": [1]},
     ["test runs' held-out sequences", "eval_seed"]),
])
def test_study_compare_tune_errors(compare, words):
    with pytest.raises(ValueError) as err:
        load_study(tiny_benchmark(compare=compare))
    for w in words:
        assert w in str(err.value)


@pytest.mark.slow
def test_the_benchmark_file_expands_as_its_header_says():
    study = load_study(ROOT / "config" / "benchmark.yaml")
    table = study.table()
    assert list(study.methods) == ["tanh-RNN", "IRNN", "LSTM", "GRU", "IndRNN", "expRNN", "LRU"]
    assert len(table) == 882 and (table.groupby("method").size() == 126).all()
    cells = set(map(tuple, table[["task", "T"]].drop_duplicates().values.tolist()))
    assert cells == {("adding", 50), ("adding", 200), ("copy", 50), ("copy", 100),
                     ("temporal_order", 50), ("temporal_order", 100)}
    assert study.compare == {"baseline": "tanh-RNN", "tune": "lr", "validation_seeds": [100, 101]}
    validation = table["seed"].isin([100, 101])
    assert set(table.loc[validation, "eval_seed"]) == {VALIDATION_EVAL}
    assert set(table.loc[~validation, "eval_seed"]) == {TEST_EVAL}
    assert sorted(table.loc[~validation, "seed"].unique()) == [0, 1, 2, 3, 4]
    per_cell = table.groupby(["method", "task", "T", "lr"]).size()
    assert (per_cell == 7).all() and set(table["lr"]) == {0.001, 0.003, 0.01}
    shared = ["optimizer", "clip", "clip_threshold", "batch_size", "steps", "match_params"]
    assert (table[shared].nunique() == 1).all()  # one protocol for every method


# --- the protocol check ----------------------------------------------------------------------
def committed_like(study) -> pd.DataFrame:
    """What a runs.parquet holds for the study's runs (config columns and a result)."""
    return study.table().assign(final_eval_loss=0.1, solved=False)


def test_check_protocol_accepts_the_studys_own_runs_and_names_a_differing_field():
    study = load_study(tiny_benchmark())
    runs = committed_like(study)
    benchmark.check_protocol(runs, study)
    benchmark.check_protocol(runs[runs["method"] == "tanh-RNN"], study)  # a subset of methods
    changed = runs.copy()
    changed.loc[3, "steps"] = 11
    with pytest.raises(ValueError, match=r"run tanh-RNN/lr=0.03/eval_seed=2000000011/seed=0 was made "
                                         r"with steps=11; the benchmark has steps=10 \(field "
                                         r"'steps' differs"):
        benchmark.check_protocol(changed, study, "curated.parquet")
    # a field the committed table predates passes while the benchmark leaves it at its default
    benchmark.check_protocol(runs.drop(columns=["checkpoint_every"]), study)
    with pytest.raises(ValueError, match=r"batch_size='\(not recorded\)'"):
        benchmark.check_protocol(runs.drop(columns=["batch_size"]), study)


@pytest.mark.parametrize("edit, words", [
    (lambda r: r.drop(index=0), ["lacks 1 of the benchmark's runs", "tanh-RNN"]),
    (lambda r: r.assign(method=np.where(r.index == 0, "GRU", r["method"])),
     ["method 'GRU', which the benchmark does not define"]),
    (lambda r: r.assign(lr=np.where(r.index == 0, 0.02, r["lr"])),
     ["field 'lr' = 0.02 is not among its values [0.01, 0.03]"]),
    (lambda r: pd.concat([r, r.iloc[[0]]]), ["appears twice"]),
])
def test_check_protocol_refuses_foreign_or_missing_runs(edit, words):
    study = load_study(tiny_benchmark())
    with pytest.raises(ValueError) as err:
        benchmark.check_protocol(edit(committed_like(study).reset_index(drop=True)), study)
    for w in words:
        assert w in str(err.value)


# --- rnnbench compare, end to end ------------------------------------------------------------
@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A tiny benchmark file and its committed baseline runs (tanh-RNN only), made by a tiny
    Snakemake run of the benchmark restricted to the baseline."""
    root = tmp_path_factory.mktemp("bench")
    bench = root / "bench.yaml"
    bench.write_text(yaml.safe_dump(tiny_benchmark(), sort_keys=False))
    study = load_study(bench)
    base = benchmark.derived_study(study, "tanh-RNN", study.methods["tanh-RNN"],
                                   str(root / "made"))
    (root / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    target = root / "made" / base["study"] / "runs.parquet"
    old = Path.cwd()
    try:
        import os
        os.chdir(root)
        rc = benchmark.run_snakemake(root / "base.yaml", target, 2, root / "base.log", False)
    finally:
        os.chdir(old)
    assert rc == 0, (root / "base.log").read_text()[-3000:]
    curated = root / "curated" / "runs.parquet"
    curated.parent.mkdir()
    shutil.copy(target, curated)
    return root, bench, curated


def compare_args(root, bench, curated, *more):
    return ["compare", "gru", "--benchmark", str(bench), "--baseline-runs", str(curated),
            "--results", str(root / "results"), "--cores", "2", *more]


@pytest.mark.slow
def test_compare_refuses_a_baseline_made_under_another_protocol(committed, monkeypatch, capsys):
    root, bench, curated = committed
    monkeypatch.chdir(root)
    runs = pd.read_parquet(curated)
    runs.loc[0, "clip_threshold"] = 5.0
    other = root / "other.parquet"
    runs.to_parquet(other)
    assert cli_main(compare_args(root, bench, other)) == 2
    err = capsys.readouterr().err
    assert "field 'clip_threshold' differs" in err and str(other) in err
    assert not (root / "results" / "compare-gru").exists()  # refused before anything trained
    assert cli_main(compare_args(root, bench, root / "missing.parquet")) == 2
    assert "no committed baseline runs" in capsys.readouterr().err
    assert cli_main(["compare", "tanh-RNN", "--benchmark", str(bench),
                     "--baseline-runs", str(curated)]) == 2
    assert "is the baseline" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_trains_the_method_and_writes_the_verdict(committed, monkeypatch, capsys):
    root, bench, curated = committed
    monkeypatch.chdir(root)
    monkeypatch.setenv("RNNBENCH_NO_PROGRESS", "1")
    assert cli_main(compare_args(root, bench, curated)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "gru vs tanh-RNN:" in out and "leaderboard: gru ranks" in out
    folder = root / "results" / "compare-gru"
    derived = yaml.safe_load((folder / "study.yaml").read_text())
    assert derived["methods"] == {"gru": {"cell": "gru"}}  # a cell name: cell: gru
    table = pd.read_csv(folder / "comparison.csv")
    assert table[["method", "baseline", "task", "T", "n_runs", "baseline_n_runs"]].values.tolist() \
        == [["gru", "tanh-RNN", "adding", 5, 2, 2]]
    assert table["verdict"].isin(["better", "worse", "no evidence"]).all()
    assert sorted(pd.read_csv(folder / "leaderboard.csv")["method"]) == ["gru", "tanh-RNN"]
    # the chosen lr per method is the one its validation run (seed 10) scored best with
    runs = pd.concat([pd.read_parquet(curated), pd.read_parquet(folder / "runs.parquet")],
                     ignore_index=True)
    validation = runs[runs["seed"] == 10]
    best = validation.loc[validation.groupby("method")["final_eval_loss"].idxmin()]
    tuning = pd.read_csv(folder / "tuning.csv").set_index("method")["lr"]
    assert tuning.to_dict() == best.set_index("method")["lr"].to_dict()
    for name in ("comparison.md", "leaderboard.md", "tuning.md", "comparison.png",
                 "comparison.pdf", "snakemake.log"):
        assert (folder / name).stat().st_size > 0, name


COMMITTED = ROOT / "results" / "curated" / "benchmark" / "runs.parquet"


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed benchmark runs")
def test_committed_benchmark_runs_follow_the_protocol():
    """What `rnnbench compare` reads: every committed run is one of config/benchmark.yaml's,
    made with exactly its fields, each method complete, the baseline among them."""
    runs = pd.read_parquet(COMMITTED)
    study = load_study(ROOT / "config" / "benchmark.yaml")
    benchmark.check_protocol(runs, study)
    assert study.compare["baseline"] in set(runs["method"])
