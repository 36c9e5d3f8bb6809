"""Aggregation of synthetic run folders: success counts, Wilson intervals, longest T, damaged
files, the written tables, and the figures (non-empty PNG/PDF, also from empty inputs; no text
outside the figure or over another panel)."""
import math
import os
import shutil
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pandas as pd
import pytest

from rnnbench import aggregate, cli, figures, plots, records
from rnnbench.aggregate import (aggregate_study, collect, longest_T_solved, success_table,
                                wilson_interval)
from rnnbench.config import RunConfig
from rnnbench.study import load_study

# (method, cell, T) -> outcome per seed: "s" solved, "f" failed, "d" diverged
OUTCOMES = {
    ("tanh-RNN", "rnn", 10): "sssff",
    ("tanh-RNN", "rnn", 50): "fffdd",
    ("LSTM", "lstm", 10): "sssss",
    ("LSTM", "lstm", 50): "ssfff",
}
BASELINE = 1 / 6


def fake_run(method, cell, T, seed, outcome, steps=200, task="adding", clip="norm"):
    """Summary, curve and gradflow tables with the DESIGN.md columns and made-up numbers."""
    cfg = RunConfig(task=task, T=T, cell=cell, method=method, seed=seed, hidden=8,
                    steps=steps, eval_interval=50, clip=clip)
    run_id = cfg.run_id()
    solved, diverged = outcome == "s", outcome == "d"
    final = 1e-3 if solved else (math.inf if diverged else 0.16 + 0.001 * seed)
    summary = {**cfg.record(), "run_id": run_id, "solved": solved,
               "steps_to_solve": 100.0 + 50 * seed if solved else math.nan,
               "final_eval_loss": final, "final_eval_error": 0.0 if solved else 0.9,
               "best_eval_loss": min(final, 0.2), "diverged": diverged,
               "diverged_step": 120.0 if diverged else math.nan, "steps_done": steps,
               "baseline_loss": BASELINE, "baseline_error": 0.9, "frac_clipped": 0.1}
    step = np.arange(steps + 1)
    evaluated = step % 50 == 0
    curve = pd.DataFrame({
        "run_id": run_id, "step": step, "train_loss": 0.2 * np.exp(-step / 100),
        "eval_loss": np.where(evaluated, 0.2 * np.exp(-step / (80 + seed)) + 1e-4, np.nan),
        "eval_error": np.where(evaluated, 0.5, np.nan),
        "grad_norm": 0.5 + np.abs(np.sin(step + seed)) * (5 if diverged else 1),
        "clipped": np.zeros(steps + 1, bool)})
    rows = []
    for phase, at in (("start", 0), ("end", steps)):
        for lag in range(T):
            rows.append({"run_id": run_id, "phase": phase, "step": at, "lag": lag,
                         "grad_norm": 0.3 * 0.9 ** lag, "jacobian_norm": 0.9 ** lag,
                         "bound": 0.95 ** lag, "forget_product": math.nan})
    return run_id, summary, curve, pd.DataFrame(rows)


@pytest.fixture
def study_dir(tmp_path):
    d = tmp_path / "results" / "demo"
    for (method, cell, T), outcomes in OUTCOMES.items():
        for seed, outcome in enumerate(outcomes):
            run_id, summary, curve, flow = fake_run(method, cell, T, seed, outcome)
            records.write_run(d / "runs" / run_id, summary, curve, flow)
    return d


# --- Wilson interval -------------------------------------------------------------------------
def test_wilson_interval_hand_computed():
    # k=3, n=5, z=1.96: p=0.6, z^2/n=0.76832, centre=(0.6+0.38416)/1.76832=0.556551,
    # half=(1.96/1.76832)*sqrt(0.048+0.038416)=0.325831 -> (0.230720, 0.882382)
    lo, hi = wilson_interval(3, 5)
    assert lo == pytest.approx(0.230720, abs=1e-6)
    assert hi == pytest.approx(0.882382, abs=1e-6)
    # k=0 and k=n: one end pinned, the other n/(n+z^2) from it
    assert wilson_interval(0, 5) == pytest.approx((0.0, 3.8416 / 8.8416))
    assert wilson_interval(5, 5) == pytest.approx((5 / 8.8416, 1.0))
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


# --- collecting and tables -------------------------------------------------------------------
def test_collect_reads_every_run(study_dir):
    runs, curves, flow = collect(study_dir)
    assert len(runs) == 20 and runs["run_id"].is_unique
    assert len(curves) == 20 * 201
    assert set(flow["phase"]) == {"start", "end"}


def test_collect_equals_pandas_reading_each_file(study_dir):
    """One conversion of the concatenated files gives what pandas gives file by file, with a
    column only some runs have and an int column in one run and a float one in another."""
    folders = sorted((study_dir / "runs").iterdir())
    summary = pd.read_parquet(folders[0] / "summary.parquet").assign(ensemble_size=4,
                                                                      steps_to_solve=150)
    records.write_parquet(summary, folders[0] / "summary.parquet")
    got = collect(study_dir)
    for table, name in zip(got, ("summary", "curve", "gradflow")):
        expected = pd.concat([pd.read_parquet(f / f"{name}.parquet") for f in folders],
                             ignore_index=True)
        pd.testing.assert_frame_equal(table, expected)
    assert got[0]["ensemble_size"].isna().sum() == len(folders) - 1
    assert got[0]["steps_to_solve"].dtype == np.float64


def test_collect_gives_a_column_empty_in_some_runs_the_others_type(study_dir):
    """A column of nulls in one run, or a run without gradient-flow rows, takes the type the
    other runs have (pandas file by file would give an object column); text in one run and
    numbers in another give pandas' object column instead of an error."""
    folders = sorted((study_dir / "runs").iterdir())
    summary = pd.read_parquet(folders[0] / "summary.parquet").assign(steps_to_solve=None)
    records.write_parquet(summary, folders[0] / "summary.parquet")
    records.write_parquet(pd.DataFrame(columns=["run_id", "phase", "step", "lag", "grad_norm"]),
                          folders[1] / "gradflow.parquet")
    runs, _, flow = collect(study_dir)
    assert runs["steps_to_solve"].dtype == np.float64 and np.isnan(runs["steps_to_solve"][0])
    assert flow["grad_norm"].dtype == np.float64 and flow["lag"].dtype == np.int64
    assert flow["run_id"].nunique() == len(folders) - 1
    summary = summary.assign(frac_clipped="n/a")
    records.write_parquet(summary, folders[0] / "summary.parquet")
    runs, _, _ = collect(study_dir)
    assert runs["frac_clipped"].dtype == object
    assert list(runs["frac_clipped"][:2]) == ["n/a", 0.1]


def test_success_table_counts_and_intervals(study_dir):
    runs, _, _ = collect(study_dir)
    table = success_table(runs)
    assert list(table[["method", "T"]].itertuples(index=False, name=None)) == [
        ("tanh-RNN", 10), ("tanh-RNN", 50), ("LSTM", 10), ("LSTM", 50)]  # study order
    assert "cell" in table.columns and "seed" not in table.columns
    row = table[(table["method"] == "tanh-RNN") & (table["T"] == 10)].iloc[0]
    assert (row["n_runs"], row["n_solved"]) == (5, 3)
    assert row["success_rate"] == pytest.approx(0.6)
    assert (row["wilson_lo"], row["wilson_hi"]) == pytest.approx((0.230720, 0.882382), abs=1e-6)
    assert row["median_steps_to_solve"] == 150.0   # seeds 0,1,2 solved at 100, 150, 200
    assert row["divergence_rate"] == 0.0
    assert row["baseline_loss"] == pytest.approx(BASELINE)
    bad = table[(table["method"] == "tanh-RNN") & (table["T"] == 50)].iloc[0]
    assert bad["n_solved"] == 0 and bad["divergence_rate"] == pytest.approx(0.4)
    assert math.isnan(bad["median_steps_to_solve"])
    assert bad["median_final_eval_loss"] == pytest.approx(0.161)  # inf of diverged runs dropped


def test_success_table_splits_by_other_swept_fields(study_dir):
    runs, _, _ = collect(study_dir)
    runs = runs.copy()
    runs.loc[runs["seed"] >= 3, "clip"] = "none"
    table = success_table(runs)
    assert "clip" in table.columns and len(table) == 8
    assert table["n_runs"].sum() == 20


def test_longest_T_solved(study_dir):
    runs, _, _ = collect(study_dir)
    longest = longest_T_solved(runs).set_index("method")
    assert longest.loc["LSTM", "longest_T_solved"] == 10   # 2/5 at T=50 is below one half
    assert longest.loc["tanh-RNN", "longest_T_solved"] == 10
    assert longest.loc["LSTM", "max_T_tested"] == 50
    assert longest.loc["LSTM", "T_tested"] == "10,50"
    runs.loc[(runs["method"] == "LSTM") & (runs["T"] == 50), "solved"] = True
    runs.loc[(runs["method"] == "tanh-RNN"), "solved"] = False
    longest = longest_T_solved(runs).set_index("method")
    assert longest.loc["LSTM", "longest_T_solved"] == 50
    assert math.isnan(longest.loc["tanh-RNN", "longest_T_solved"])
    # the success table given (as aggregate_study passes it) gives the same table
    pd.testing.assert_frame_equal(longest_T_solved(runs, success=success_table(runs)),
                                  longest_T_solved(runs))


def test_markdown_without_tabulate():
    md = aggregate.to_markdown(pd.DataFrame({"method": ["a|b"], "x": [0.123456], "y": [np.nan]}))
    lines = md.splitlines()
    assert lines[0] == "| method | x | y |"
    assert lines[1] == "|---|---:|---:|"
    assert lines[2] == "| a\\|b | 0.1235 | — |"


# --- damaged and missing runs ----------------------------------------------------------------
def test_truncated_file_is_named(study_dir):
    victim = sorted((study_dir / "runs").iterdir())[3] / "curve.parquet"
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt or truncated") as err:
        collect(study_dir)
    assert str(victim) in str(err.value)


def test_unfinished_run_is_named_unless_allowed(study_dir):
    unfinished = study_dir / "runs" / "0123456789ab"
    unfinished.mkdir()
    (unfinished / "curve.parquet").write_bytes(b"")
    with pytest.raises(ValueError) as err:
        collect(study_dir)
    assert str(unfinished) in str(err.value) and "summary.parquet" in str(err.value)
    runs, _, _ = collect(study_dir, allow_missing=True)
    assert len(runs) == 20


# --- writing the study's outputs -------------------------------------------------------------
def test_aggregate_study_writes_everything(study_dir):
    out = aggregate_study(study_dir)
    for name in ("runs.parquet", "curves.parquet", "gradflow.parquet", "tables/success.csv",
                 "tables/success.md", "tables/longest_T.csv", "tables/longest_T.md"):
        assert (study_dir / name).stat().st_size > 0, name
    assert set(out) >= {"runs", "curves", "gradflow", "success", "longest_T"}
    assert len(pd.read_csv(study_dir / "tables" / "success.csv")) == 4
    assert (study_dir / "tables" / "success.md").read_text().startswith("| method | task | T |")
    assert not list(study_dir.rglob("*.tmp"))


def test_aggregate_study_with_study_keeps_its_runs_and_labels(tmp_path):
    s = load_study({"study": "demo", "seeds": 2, "methods": {"LSTM": {"cell": "lstm"}},
                    "fixed": {"task": "adding", "hidden": 8, "steps": 200, "eval_interval": 50,
                              "clip": "norm"},
                    "axes": {"T": [10]}})
    d = tmp_path / "demo"
    for cfg in s.runs():
        run_id, summary, curve, flow = fake_run("LSTM", "lstm", 10, cfg.seed, "s")
        assert run_id == cfg.run_id()
        assert s.folder(cfg) == f"LSTM_T=10_seed={cfg.seed}--{run_id}"  # readable, then the id
        records.write_run(d / "runs" / s.folder(cfg), summary, curve, flow)
    stale = fake_run("old", "rnn", 10, 0, "f")  # a folder of an older configuration
    records.write_run(d / "runs" / stale[0], *stale[1:])
    aggregate_study(d, s)
    runs = pd.read_parquet(d / "runs.parquet")
    assert list(runs["label"]) == ["LSTM/T=10/seed=0", "LSTM/T=10/seed=1"]
    with pytest.raises(ValueError, match="no summary"):
        aggregate_study(d, load_study({**{"study": "demo"}, "fixed": {"T": 12}}))


# --- figures ---------------------------------------------------------------------------------
def _check_files(paths):
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    for p in paths:
        assert p.stat().st_size > 1000, p
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"


def test_plots_write_png_and_pdf(study_dir, tmp_path):
    runs, curves, flow = collect(study_dir)
    figs = tmp_path / "figures"
    _check_files(plots.success_vs_T(runs, figs / "success_vs_T"))
    _check_files(plots.learning_curves(curves, runs, figs / "learning_curves"))
    _check_files(plots.grad_norms(curves, runs, figs / "grad_norms"))
    _check_files(plots.gradflow_vs_lag(flow, runs, figs / "gradflow_vs_lag"))
    assert not list(figs.glob(".*"))  # no temp files left


def test_plots_of_empty_inputs_draw_a_note(study_dir, tmp_path):
    runs, curves, _ = collect(study_dir)
    empty = pd.DataFrame()
    _check_files(plots.gradflow_vs_lag(empty, runs, tmp_path / "g"))
    _check_files(plots.success_vs_T(empty, tmp_path / "s"))
    _check_files(plots.learning_curves(curves.iloc[:0], runs, tmp_path / "l"))
    _check_files(plots.grad_norms(empty, empty, tmp_path / "n"))


STUDY_FIGURES = {"success_vs_T": None, "learning_curves": None, "grad_norms": None,
                 "gradflow_vs_lag": None}


def test_figures_drawn_in_forked_workers_are_those_drawn_in_one_process(study_dir, tmp_path):
    """`render_all` with two workers writes the same PNGs, byte for byte, as drawing one figure
    after another, and lists the paths in the order it was given."""
    aggregate_study(study_dir)
    serial = figures.render_all(study_dir, STUDY_FIGURES, jobs=1)
    drawn = {p.name: p.read_bytes() for p in serial}
    shutil.rmtree(study_dir / "figures")
    forked = figures.render_all(study_dir, STUDY_FIGURES, jobs=2)
    assert forked == serial == [study_dir / "figures" / f"{name}.{ext}"
                                for name in STUDY_FIGURES for ext in ("png", "pdf")]
    for path in forked:
        assert path.stat().st_size > 1000, path
        if path.suffix == ".png":
            assert path.read_bytes() == drawn[path.name], path.name


def test_workers_take_the_costliest_figures_first(study_dir):
    """The figure of two panels per (task, T) first, those of one next, the larger input
    first among equals, the one-panel figure last."""
    aggregate_study(study_dir)
    inputs = {name: figures.check(name, study_dir) for name in STUDY_FIGURES}
    assert figures.drawing_order(inputs) == ["gradflow_vs_lag", "learning_curves", "grad_norms",
                                             "success_vs_T"]
    larger = dict(inputs, grad_norms=inputs["grad_norms"] + [study_dir / "gradflow.parquet"])
    assert figures.drawing_order(larger)[:2] == ["gradflow_vs_lag", "grad_norms"]


def test_figures_in_the_study_formats_only(study_dir):
    """`figure_formats`: each figure in those formats, PNG always; an unknown format or one
    without PNG is refused before anything is drawn."""
    aggregate_study(study_dir)
    paths = figures.render_all(study_dir, STUDY_FIGURES, jobs=2, formats=["png", "svg"])
    assert paths == [study_dir / "figures" / f"{name}.{ext}"
                     for name in STUDY_FIGURES for ext in ("png", "svg")]
    assert b"<svg" in paths[1].read_bytes()[:400]
    assert not list((study_dir / "figures").glob("*.pdf"))
    for formats, word in ((["pdf"], "png"), (["png", "jpeg"], "jpeg"), ("png", "list")):
        with pytest.raises(ValueError, match=word):
            figures.render_all(study_dir, {"success_vs_T": None}, formats=formats)
    assert cli.main(["figures", str(study_dir), "success_vs_T", "--formats", "png"]) == 0
    assert cli.main(["figures", str(study_dir), "success_vs_T", "--formats", "png,gif"]) == 2


def test_figures_of_unknown_name_stop_before_drawing(study_dir):
    aggregate_study(study_dir)
    with pytest.raises(ValueError, match=r"unknown figure\(s\) \['no_such_figure'\]"):
        figures.render_all(study_dir, {"success_vs_T": None, "no_such_figure": None}, jobs=2)
    assert not (study_dir / "figures").exists()


def test_figures_check_their_inputs_before_drawing(study_dir):
    aggregate_study(study_dir)
    (study_dir / "gradflow.parquet").unlink()
    with pytest.raises(ValueError, match=r"figure 'gradflow_vs_lag': no aggregated table "
                                         r"\[.*gradflow.parquet'\]"):
        figures.render_all(study_dir, STUDY_FIGURES, jobs=2)
    with pytest.raises(ValueError, match="figure 'comparison' needs the value of the study "
                                         "key 'compare'"):
        figures.render_all(study_dir, {"success_vs_T": None, "comparison": None}, jobs=2)
    assert not (study_dir / "figures").exists()


def test_a_worker_error_names_its_figure(study_dir):
    aggregate_study(study_dir)
    (study_dir / "gradflow.parquet").write_bytes(b"not parquet")  # fails only when read
    with pytest.raises(Exception, match="Parquet") as info:
        figures.render_all(study_dir, STUDY_FIGURES, jobs=2)
    assert any("figure 'gradflow_vs_lag'" in note for note in info.value.__notes__)


def test_a_worker_that_dies_breaks_the_figures_job(study_dir, monkeypatch):
    """Not a wait for ever: the pool reports the lost worker."""
    aggregate_study(study_dir)
    monkeypatch.setattr(figures, "render", lambda *args: os._exit(3))  # inherited by the fork
    with pytest.raises(BrokenProcessPool):
        figures.render_all(study_dir, STUDY_FIGURES, jobs=2)


def test_figures_command_checks_its_arguments(study_dir, capsys):
    aggregate_study(study_dir)
    for args, message in ((["--jobs", "0"], "--jobs: expected at least 1, got 0"),
                          (["--settings", "[1]"], "--settings: expected a JSON object"),
                          (["--settings", "{x"], "--settings is not JSON"),
                          (["nope"], "unknown figure(s) ['nope']")):
        assert cli.main(["figures", str(study_dir), *args]) == 2
        assert message in capsys.readouterr().err, args
    assert not (study_dir / "figures").exists()
    assert cli.main(["figures", str(study_dir), "success_vs_T", "--jobs", "2"]) == 0
    assert capsys.readouterr().out.split() == [str(study_dir / "figures" / f"success_vs_T.{e}")
                                               for e in ("png", "pdf")]


def test_curve_panels_draw_the_median_over_seeds_and_the_min_max_band(monkeypatch, tmp_path):
    import numpy as np
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, stem, formats: drawn.append(fig) or [])
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "method": ["m"] * 3, "task": ["adding"] * 3,
                         "T": [10] * 3, "seed": [0, 1, 2], "baseline_loss": [0.17] * 3})
    losses = {"a": [1.0, 0.5, 0.2], "b": [2.0, 0.4, 0.1], "c": [4.0, 0.3, 0.4]}
    curves = pd.DataFrame([{"run_id": r, "step": 100 * i, "eval_loss": v, "grad_norm": 1.0}
                           for r, vs in losses.items() for i, v in enumerate(vs)])
    plots.learning_curves(curves, runs, tmp_path / "l")
    (ax,) = [a for a in drawn[0].axes if a.get_visible()]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "m"]
    assert list(line.get_xdata()) == [0, 100, 200]
    np.testing.assert_allclose(line.get_ydata(), [2.0, 0.4, 0.2])  # the median of the seeds
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(band.min(), 0.1) and np.isclose(band.max(), 4.0)  # min-max over seeds
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["m", "baseline"]


def test_log_axes_label_like_matplotlib_without_mathtext():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = {}
    for limits in ((0.005, 0.5), (0.02, 0.08)):
        fig = Figure()
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        plots.log_axis(ax, "y")
        ax.set_ylim(*limits)
        fig.canvas.draw()
        labels[limits] = [t.get_text() for minor in (False, True)
                          for t in ax.get_yticklabels(minor=minor) if t.get_text()]
    assert labels[(0.005, 0.5)] == ["10⁻³", "10⁻²", "10⁻¹", "10⁰"]
    assert "2×10⁻²" in labels[(0.02, 0.08)]  # minor labels where the axis spans little
    assert not any("$" in text for texts in labels.values() for text in texts)


# --- layout: no text outside the figure or over a neighbouring panel ------------------------
def _drawn_texts(ax):
    """The texts of a panel that a draw shows: title, axis labels, legend, the tick labels
    within the axis limits."""
    texts = [ax.title, ax.xaxis.label, ax.yaxis.label]
    if ax.get_legend() is not None:
        texts += [ax.get_legend().get_title(), *ax.get_legend().get_texts()]
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        texts += [tick.label1 for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                  if lo <= tick.get_loc() <= hi]
    return [t for t in texts if t.get_visible() and t.get_text()]


def _assert_laid_out(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox.padded(1)  # a pixel of rounding
    panels = [ax for ax in fig.axes if ax.get_visible()]
    for ax in panels:
        for text in _drawn_texts(ax):
            box = text.get_window_extent(renderer)
            assert page.containsx(box.x0) and page.containsx(box.x1), text.get_text()
            assert page.containsy(box.y0) and page.containsy(box.y1), text.get_text()
    boxes = {ax: [t.get_window_extent(renderer) for t in _drawn_texts(ax)] for ax in panels}
    for ax in panels:
        decorations = ax.get_tightbbox(renderer)
        for other in panels:
            if other is ax:
                continue
            assert not decorations.overlaps(other.bbox), (ax.get_title(), other.get_title())
            # nor into the neighbour's own text: its tick labels, axis labels, title, legend
            assert not any(mine.overlaps(theirs) for mine in boxes[ax]
                           for theirs in boxes[other]), (ax.get_title(), other.get_title())


def test_study_figures_with_long_names_keep_their_text_inside_the_figure(monkeypatch, tmp_path):
    # two tasks x two T (four panels, eight for gradflow), two long method names each also with
    # clipping off (two legend entries per method); gradient-flow axes spanning 45 decades,
    # gradient-norm axes less than one (labels between decades)
    rows = [fake_run(method, "rnn", T, seed, outcome, task=task, clip=clip)
            for method in ("smart-tanh+Omega-orthogonal", "LSTM-chrono-forget-bias")
            for task in ("adding", "temporal_order") for T in (10, 1000)
            for clip in ("norm", "none") for seed, outcome in enumerate("sf")]
    runs = pd.DataFrame([r[1] for r in rows])
    curves = pd.concat([r[2] for r in rows], ignore_index=True)
    flow = pd.concat([r[3] for r in rows], ignore_index=True)
    figures, engines, save = [], [], plots.save

    def recording_save(fig, stem, formats):
        figures.append(fig)
        engines.append(fig.get_layout_engine())  # before `save` drops it
        return save(fig, stem, formats)

    monkeypatch.setattr(plots, "save", recording_save)
    plots.success_vs_T(runs, tmp_path / "s")
    plots.learning_curves(curves, runs, tmp_path / "l")
    plots.grad_norms(curves, runs, tmp_path / "n")
    plots.gradflow_vs_lag(flow, runs, tmp_path / "g")

    assert [len([a for a in f.axes if a.get_visible()]) for f in figures] == [2, 4, 4, 8]
    legend = [t.get_text() for t in figures[1].axes[0].get_legend().get_texts()]
    assert "smart-tanh+Omega-orthogonal, clip=none" in legend
    minor = [t.get_text() for t in figures[2].axes[0].get_yticklabels(minor=True)]
    assert any("×" in text for text in minor)
    assert engines == [None] * 4  # the fixed grid, not constrained layout
    for fig in figures:
        _assert_laid_out(fig)
