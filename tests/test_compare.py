"""Methods vs a baseline (rnnbench.compare): Newcombe intervals against published values, the
tests against scipy, Holm by hand, the bootstrap's reproducibility and coverage, the comparison
table's verdicts and columns, the leaderboard's ranking and ties, bad input, the study key
`compare`, and the forest plot."""
import math

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from rnnbench import compare, plots
from rnnbench.compare import (bootstrap_ratio_interval, comparison_table, holm, leaderboard,
                              median_ratio, newcombe_interval, write_comparison)
from rnnbench.records import write_parquet

REQUIRED_COLUMNS = ["method", "baseline", "task", "T", "n_runs", "success_rate",
                    "baseline_success_rate", "success_diff", "success_diff_lo",
                    "success_diff_hi", "loss_ratio", "loss_ratio_lo", "loss_ratio_hi", "p_value",
                    "p_adjusted", "verdict"]


def runs_frame(spec, task="adding", **fixed) -> pd.DataFrame:
    """spec: {(method, cell, T): [loss per seed]}; a loss < 0.01 is solved, inf/nan diverged.
    Extra keyword columns are constants; a 4th key element sets columns per key:
    {(method, cell, T, (("clip", "none"),)): [...]}."""
    rows = []
    for key, losses in spec.items():
        method, cell, T, *more = key
        extra = {**fixed, **dict(more[0] if more else ())}
        for seed, loss in enumerate(losses):
            rows.append({"method": method, "task": task, "T": T, "cell": cell, **extra,
                         "seed": seed, "solved": bool(loss < 0.01),
                         "final_eval_loss": loss, "diverged": not np.isfinite(loss)})
    return pd.DataFrame(rows)


# --- Newcombe --------------------------------------------------------------------------------
@pytest.mark.parametrize("counts, expected", [
    # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
])
def test_newcombe_published_values(counts, expected):
    assert newcombe_interval(*counts) == pytest.approx(expected, abs=6e-5)


def test_newcombe_hand_computed():
    # 3/5 vs 0/5: Wilson (0.230720, 0.882382) and (0, 3.8416/8.8416 = 0.434491); d = 0.6;
    # lo = 0.6 - sqrt(0.369280^2 + 0.434491^2) = 0.6 - 0.570220, hi = 0.6 + (0.882382 - 0.6)
    lo, hi = newcombe_interval(3, 5, 0, 5)
    assert lo == pytest.approx(0.029780, abs=2e-6)
    assert hi == pytest.approx(0.882382, abs=2e-6)
    assert newcombe_interval(0, 5, 3, 5) == pytest.approx((-hi, -lo))  # antisymmetric
    assert all(math.isnan(v) for v in newcombe_interval(1, 0, 1, 5))


# --- Holm ------------------------------------------------------------------------------------
def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.02, np.nan, 0.04])  # NaN stays NaN and does not count in m
    assert out[[0, 2]] == pytest.approx([0.04, 0.04]) and np.isnan(out[1])
    assert holm([]).shape == (0,)
    with pytest.raises(ValueError, match="p-values"):
        holm([0.2, 1.5])


def test_holm_matches_the_step_down_definition():
    """statsmodels' multipletests(method="holm"): p_(i) * (m - i + 1), running max, cap 1."""
    p = np.random.default_rng(3).uniform(0, 0.2, size=12)
    m = len(p)
    ranks = np.argsort(np.argsort(p))  # 0-based rank of each p
    expected = [min(1.0, max((m - ranks[j]) * p[j] for j in range(m) if p[j] <= p[i]))
                for i in range(m)]
    assert holm(p) == pytest.approx(expected)
    assert np.all(holm(p) >= p)


# --- bootstrap -------------------------------------------------------------------------------
def test_bootstrap_is_reproducible_and_contains_the_estimate():
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(-2, 0.5, 15), rng.lognormal(-1, 0.5, 12)
    first = bootstrap_ratio_interval(a, b)
    assert bootstrap_ratio_interval(a, b) == first  # the default seed is fixed
    assert bootstrap_ratio_interval(a, b, seed=1) != first
    assert first[0] <= median_ratio(a, b) <= first[1]
    assert first[1] < 1  # a is clearly lower
    wider = bootstrap_ratio_interval(a, b, confidence=0.99)
    assert wider[0] <= first[0] and wider[1] >= first[1]


def test_bootstrap_coverage_of_a_known_median_ratio():
    rng = np.random.default_rng(1)
    true = math.exp(-1.0) / math.exp(-0.5)  # lognormal medians
    hits = 0
    for _ in range(200):
        lo, hi = bootstrap_ratio_interval(rng.lognormal(-1.0, 1, 25), rng.lognormal(-0.5, 1, 25),
                                          n_boot=1000, seed=int(rng.integers(1 << 30)))
        hits += lo <= true <= hi
    assert 0.85 <= hits / 200 <= 0.995


def test_diverged_runs_are_the_worst_loss():
    finite = [0.1, 0.2, 0.3]
    assert median_ratio([np.inf, np.nan, 0.1], finite) == math.inf  # median of a is inf
    assert median_ratio(finite, [np.nan, np.nan, np.nan]) == 0.0
    assert median_ratio([np.inf] * 3, [np.nan] * 3) == 1.0  # both all diverged: a tie
    assert bootstrap_ratio_interval([np.inf] * 3, finite) == (math.inf, math.inf)
    assert bootstrap_ratio_interval(finite, [np.inf] * 2) == (0.0, 0.0)
    lo, hi = bootstrap_ratio_interval([0.1, 0.2, np.inf, np.inf], [0.2, 0.2, 0.3])
    assert lo < 1 and hi == math.inf  # half diverged: the interval reaches infinity
    assert bootstrap_ratio_interval([0.2], [0.4]) == (0.5, 0.5)  # one run each: no spread
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ratio_interval([], finite)


# --- the comparison table --------------------------------------------------------------------
GOOD = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]
BAD = [0.15, 0.16, 0.17, 0.18, 0.19, 0.2]


@pytest.fixture
def runs():
    return runs_frame({
        ("base", "rnn", 10): BAD,                             # 0/6
        ("base", "rnn", 20): GOOD,                            # 6/6
        ("better", "lstm", 10): GOOD,                         # 6/6 vs 0/6: Fisher, better
        ("better", "lstm", 20): [x * 1.01 for x in GOOD],     # 6/6 vs 6/6: MWU, no evidence
        ("worse", "gru", 10): [math.inf] * 5 + [math.nan],    # 0/6 vs 0/6: MWU on loss, worse
        ("worse", "gru", 20): BAD,                            # 0/6 vs 6/6: Fisher, worse
    })


def test_comparison_table_verdicts_each_way(runs):
    t = comparison_table(runs, "base").set_index(["method", "T"])
    assert list(t.index) == [("better", 10), ("better", 20), ("worse", 10), ("worse", 20)]
    assert t.loc[("better", 10), ["test", "verdict"]].tolist() == ["fisher", "better"]
    assert t.loc[("better", 20), ["test", "verdict"]].tolist() == ["mann-whitney", "no evidence"]
    assert t.loc[("worse", 10), ["test", "verdict"]].tolist() == ["mann-whitney", "worse"]
    assert t.loc[("worse", 20), ["test", "verdict"]].tolist() == ["fisher", "worse"]
    row = t.loc[("better", 10)]
    assert (row["n_runs"], row["baseline_n_runs"], row["success_rate"],
            row["baseline_success_rate"], row["success_diff"]) == (6, 6, 1.0, 0.0, 1.0)
    assert (row["success_diff_lo"], row["success_diff_hi"]) == pytest.approx(
        newcombe_interval(6, 6, 0, 6))
    assert row["loss_ratio"] == pytest.approx(np.median(GOOD) / np.median(BAD))
    assert row["loss_ratio_lo"] <= row["loss_ratio"] <= row["loss_ratio_hi"] < 1
    assert t.loc[("worse", 10), "loss_ratio"] == math.inf
    assert t.loc[("worse", 10), "prob_lower_loss"] == 0.0  # every diverged run loses
    assert t.loc[("better", 20), "loss_ratio"] == pytest.approx(1.01)
    assert set(t["baseline"]) == {"base"} and set(t["task"]) == {"adding"}


def test_comparison_p_values_are_scipy_tests_then_holm(runs):
    t = comparison_table(runs, "base").set_index(["method", "T"])
    fisher = stats.fisher_exact([[0, 6], [6, 0]], alternative="two-sided").pvalue
    assert t.loc[("worse", 20), "p_value"] == pytest.approx(fisher)
    mwu = stats.mannwhitneyu([math.inf] * 6, BAD, alternative="two-sided").pvalue
    assert t.loc[("worse", 10), "p_value"] == pytest.approx(mwu)
    mwu = stats.mannwhitneyu([x * 1.01 for x in GOOD], GOOD, alternative="two-sided").pvalue
    assert t.loc[("better", 20), "p_value"] == pytest.approx(mwu)
    for method in ("better", "worse"):  # Holm within each method's family of cells
        rows = t.loc[method]
        assert rows["p_adjusted"].to_numpy() == pytest.approx(holm(rows["p_value"]))


def test_comparison_columns_in_order(runs):
    t = comparison_table(runs, "base")
    assert list(t.columns[:16]) == REQUIRED_COLUMNS
    assert list(t.columns) == compare.COLUMNS + compare.EXTRA_COLUMNS
    assert set(t["verdict"]) <= set(compare.VERDICTS)
    empty = comparison_table(runs.iloc[:0], "base")
    assert empty.empty and list(empty.columns[:16]) == REQUIRED_COLUMNS


def test_alpha_decides_the_verdict(runs):
    # 6/6 vs 0/6: Fisher p = 2/924 = 0.00216; Holm x2 (the smaller of the method's two) = 0.00433
    t = comparison_table(runs, "base", alpha=0.004).set_index(["method", "T"])
    assert t.loc[("better", 10), "verdict"] == "no evidence"
    t = comparison_table(runs, "base", alpha=0.005).set_index(["method", "T"])
    assert t.loc[("better", 10), "verdict"] == "better"
    with pytest.raises(ValueError, match="alpha"):
        comparison_table(runs, "base", alpha=1.5)


def test_other_axes_are_keys_not_pooled():
    spec = {}
    for clip, base_loss, new_loss in (("none", BAD, GOOD), ("norm", GOOD, BAD)):
        spec[("base", "rnn", 10, (("clip", clip),))] = base_loss
        spec[("new", "lstm", 10, (("clip", clip),))] = new_loss
    runs = runs_frame(spec, hidden=8)
    t = comparison_table(runs, "base")
    assert list(t.columns[-1:]) == ["clip"]  # an extra key; `cell` (per method) is not one
    assert t.set_index("clip")["verdict"].to_dict() == {"none": "better", "norm": "worse"}
    board = leaderboard(runs)
    assert (board["cells"] == 2).all() and (board["cells_solved"] == 1).all()


def test_bad_input_is_named():
    runs = runs_frame({("base", "rnn", 10): BAD, ("new", "lstm", 10): GOOD,
                       ("new", "lstm", 20): GOOD})
    with pytest.raises(ValueError, match=r"'nope'.*\['base', 'new'\]"):
        comparison_table(runs, "nope")
    with pytest.raises(ValueError, match="no runs in cell task=adding, T=20"):
        comparison_table(runs, "base")
    with pytest.raises(ValueError, match="nothing to compare"):
        comparison_table(runs[runs["method"] == "base"], "base")
    with pytest.raises(ValueError, match="final_eval_loss"):
        comparison_table(runs.drop(columns="final_eval_loss"), "base")
    with pytest.raises(ValueError, match="baseline"):
        write_comparison("nowhere", None)


# --- leaderboard -----------------------------------------------------------------------------
def test_leaderboard_ranks_and_ties():
    half = [0.001, 0.001, 0.2, 0.2]     # 2/4 solved: a cell solved at threshold 0.5
    quarter = [0.001, 0.2, 0.2, 0.2]    # 1/4
    runs = runs_frame({
        ("A", "rnn", 10): GOOD[:4], ("A", "rnn", 20): quarter,      # 1 cell, mean 0.625
        ("B", "lstm", 10): GOOD[:4], ("B", "lstm", 20): GOOD[:4],   # 2 cells
        ("C", "gru", 10): half, ("C", "gru", 20): quarter,          # 1 cell, mean 0.375
        ("D", "gru", 10): quarter, ("D", "gru", 20): half,          # 1 cell, mean 0.375, tie
        ("E", "rnn", 10): quarter, ("E", "rnn", 20): [math.inf] * 4,  # 0 cells
    })
    board = leaderboard(runs)
    assert list(board.columns) == compare.LEADERBOARD_COLUMNS
    assert list(board["method"]) == ["B", "A", "C", "D", "E"]
    assert list(board["rank"]) == [1, 2, 3, 3, 5]  # C and D equal on all three criteria
    assert list(board["cells_solved"]) == [2, 1, 1, 1, 0]
    assert board.set_index("method").loc["A", "mean_success_rate"] == pytest.approx(0.625)
    assert board.set_index("method").loc["E", "median_relative_loss"] == math.inf
    assert (board["cells"] == 2).all() and (board["n_runs"] == 8).all()
    # the loss breaks a tie in cells and success rate: D's losses halved
    runs.loc[runs["method"] == "D", "final_eval_loss"] /= 2
    board = leaderboard(runs)
    assert list(board["method"][2:4]) == ["D", "C"] and list(board["rank"]) == [1, 2, 3, 4, 5]
    assert list(leaderboard(runs, threshold=0.25)["method"][:1]) == ["B"]
    assert leaderboard(runs.iloc[:0]).empty
    with pytest.raises(ValueError, match="threshold"):
        leaderboard(runs, threshold=0)


def test_write_comparison_writes_both_tables(tmp_path, runs):
    write_parquet(runs, tmp_path / "runs.parquet")
    out = write_comparison(tmp_path, "base")
    assert sorted(out) == ["comparison", "comparison_md", "leaderboard", "leaderboard_md",
                           "tuning", "tuning_md"]
    assert pd.read_csv(out["tuning"]).empty  # nothing tuned without compare.tune
    back = pd.read_csv(out["comparison"])
    assert list(back.columns[:16]) == REQUIRED_COLUMNS
    assert np.isinf(back["loss_ratio"]).any()  # inf survives the CSV
    assert out["leaderboard_md"].read_text().startswith("| rank | method |")


# --- the study key `compare` -----------------------------------------------------------------
STUDY = {
    "study": "cmp", "seeds": 2,
    "fixed": {"task": "adding", "hidden": 8, "steps": 20, "eval_interval": 10},
    "methods": {"tanh-RNN": {"cell": "rnn"}, "LSTM": {"cell": "lstm"}},
    "axes": {"T": [10, 20]},
    "compare": {"baseline": "tanh-RNN"},
}


def test_study_compare_key():
    from rnnbench.study import load_study
    assert load_study(STUDY).compare == {"baseline": "tanh-RNN"}
    assert load_study({k: v for k, v in STUDY.items() if k != "compare"}).compare == {}


@pytest.mark.parametrize("change, words", [
    ({"compare": {"baseline": "GRU"}}, ["compare.baseline", "GRU", "tanh-RNN", "LSTM"]),
    ({"compare": {"baseline": "tanh-RNN", "alpha": 0.1}}, ["alpha", "compare"]),
    ({"compare": "tanh-RNN"}, ["'compare' must be a mapping"]),
    ({"compare": {}}, ["compare.baseline", "None"]),
    ({"methods": {"tanh-RNN": {"cell": "rnn"}}}, ["nothing to compare"]),
    ({"exclude": [{"method": "tanh-RNN", "T": 20}]}, ["no runs in cell", "T=20"]),
])
def test_study_compare_key_errors(change, words):
    from rnnbench.study import load_study
    with pytest.raises(ValueError) as err:
        load_study({**STUDY, **change})
    for w in words:
        assert w in str(err.value)


def test_schema_knows_the_compare_key():
    from pathlib import Path
    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas" /
                             "config.schema.yaml").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(STUDY)
    for bad in ({"baseline": 3}, {"baseline": "x", "alpha": 0.1}, {}):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**STUDY, "compare": bad})


# --- the figure ------------------------------------------------------------------------------
def test_comparison_figure_writes_png_and_pdf(tmp_path, runs):
    table = comparison_table(runs, "base")
    assert np.isinf(table["loss_ratio"]).any()  # the figure must cope with inf
    table.loc[0, ["loss_ratio_lo"]] = 0.0
    table.loc[1, ["loss_ratio", "loss_ratio_lo", "loss_ratio_hi"]] = np.nan
    paths = plots.comparison(table, tmp_path / "comparison")
    assert [p.name for p in paths] == ["comparison.png", "comparison.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    two_tasks = pd.concat([table, table.assign(task="copy")], ignore_index=True)
    assert all(p.stat().st_size > 1000 for p in plots.comparison(two_tasks, tmp_path / "two"))
    empty = plots.comparison(comparison_table(runs.iloc[:0], "base"), tmp_path / "empty")
    assert all(p.stat().st_size > 1000 for p in empty)


def test_a_methods_verdict_does_not_depend_on_the_other_methods(runs):
    """Holm's family is one method's cells: adding a method leaves the others' rows alone."""
    alone = comparison_table(runs[runs["method"].isin(["base", "better"])], "base")
    other = runs[runs["method"] == "better"].assign(method="another")
    both = comparison_table(pd.concat([runs[runs["method"].isin(["base", "better"])], other]),
                            "base")
    pd.testing.assert_frame_equal(both[both["method"] == "better"].reset_index(drop=True),
                                  alone.reset_index(drop=True))
