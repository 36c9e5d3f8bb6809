"""One run end to end: records, early stop, divergence, and the Numba backend against torch."""
import math

import numpy as np
import pandas as pd
import pytest

import rnnbench
from rnnbench import config, train
from rnnbench.cli import main as cli_main

TINY = dict(task="adding", T=8, hidden=8, batch_size=8, steps=30, eval_interval=10,
            eval_size=64, dtype="float64")


def curve_of(**fields):
    return rnnbench.run({**TINY, **fields}).curve


@pytest.mark.parametrize("cell,activation", [("rnn", "tanh"), ("rnn", "sigmoid"),
                                             ("lstm", "tanh"), ("gru", "tanh")])
@pytest.mark.parametrize("optimizer,clip", [("sgd", "norm"), ("momentum", "value"),
                                            ("adam", "none"), ("rmsprop", "norm")])
def test_numba_backend_learning_curve_equals_torch_float64(cell, activation, optimizer, clip):
    fields = dict(cell=cell, activation=activation, optimizer=optimizer, clip=clip, steps=100,
                  clip_threshold=0.05, lr=0.05 if optimizer in ("sgd", "momentum") else 0.01,
                  forget_bias=1.0 if cell == "lstm" else 0.0, eval_interval=20)
    a, b = curve_of(backend="torch", **fields), curve_of(backend="numba", **fields)
    assert len(a) == len(b) == 101
    for column in ("train_loss", "eval_loss", "eval_error", "grad_norm"):
        np.testing.assert_allclose(b[column], a[column], rtol=1e-8, atol=1e-12, err_msg=column)
    assert (a["clipped"] == b["clipped"]).all()
    if clip != "none":
        assert b["clipped"].any(), "threshold chosen so that clipping happens"


def test_copy_task_per_step_readout_matches_between_backends():
    fields = dict(task="copy", T=5, steps=10, eval_interval=5, optimizer="adam")
    a, b = curve_of(backend="torch", **fields), curve_of(backend="numba", **fields)
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-8)


def test_run_writes_complete_records(tmp_path):
    result = rnnbench.run({**TINY, "cell": "gru", "seed": 3}, out_dir=tmp_path)
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    curve = pd.read_parquet(tmp_path / "curve.parquet")
    gradflow = pd.read_parquet(tmp_path / "gradflow.parquet")
    assert len(summary) == 1
    row = summary.iloc[0]
    for name in config.field_names():
        assert name in summary.columns, name
    for name in ("prov_git_commit", "prov_torch", "prov_numba", "prov_device", "prov_host",
                 "spectral_radius_start", "spectral_radius_end", "frac_clipped", "wall_time_s"):
        assert name in summary.columns, name
    assert row["seed"] == 3 and row["cell"] == "gru" and row["run_id"] == result.summary["run_id"]
    assert row["baseline_loss"] == pytest.approx(1 / 6)
    assert list(curve["step"]) == list(range(31))
    assert curve["eval_loss"].notna().sum() == 4          # steps 0, 10, 20, 30
    assert set(gradflow["phase"]) == {"start", "end"}
    assert (gradflow.groupby("phase")["lag"].count() == 8).all()
    assert not list(tmp_path.glob("*.tmp")), "no temp files left behind"


def test_same_seed_same_result_different_seed_differs():
    a, b, c = curve_of(seed=1), curve_of(seed=1), curve_of(seed=2)
    pd.testing.assert_frame_equal(a.drop(columns="run_id"), b.drop(columns="run_id"))
    assert not np.allclose(a["train_loss"], c["train_loss"])


def test_divergence_is_a_result_not_a_crash():
    result = rnnbench.run({**TINY, "cell": "rnn", "activation": "identity", "init": "identity",
                           "init_scale": 3.0, "T": 30, "lr": 1.0, "clip": "none",
                           "optimizer": "sgd", "backend": "torch"})
    s = result.summary
    assert s["diverged"] is True
    assert 1 <= s["diverged_step"] <= TINY["steps"]
    assert s["steps_done"] == s["diverged_step"]
    assert not s["solved"]


def test_clipping_prevents_that_divergence():
    result = rnnbench.run({**TINY, "cell": "rnn", "activation": "identity", "init": "identity",
                           "init_scale": 3.0, "T": 30, "lr": 1.0, "clip": "norm",
                           "clip_threshold": 1.0, "optimizer": "sgd", "backend": "torch",
                           "divergence_factor": 1e6})
    assert result.summary["frac_clipped"] > 0.5


def test_early_stop_when_solved(monkeypatch):
    from rnnbench import tasks
    original = tasks.make

    def make_easy(*args, **kwargs):
        task = original(*args, **kwargs)
        task.solved = lambda loss, error: True       # solved at the first evaluation after 0
        return task
    monkeypatch.setattr(tasks, "make", make_easy)
    s = rnnbench.run({**TINY, "steps": 100}).summary
    assert s["solved"] and s["steps_to_solve"] == 0 and s["steps_done"] == 0
    s = rnnbench.run({**TINY, "steps": 30, "early_stop": False}).summary
    assert s["solved"] and s["steps_to_solve"] == 0 and s["steps_done"] == 30


def test_auto_backend_uses_numba_on_cpu_where_it_applies():
    assert rnnbench.run({**TINY, "steps": 1}).summary["backend_used"] == "numba"
    assert rnnbench.run({**TINY, "steps": 1, "layers": 2}).summary["backend_used"] == "torch"
    s = rnnbench.run({**TINY, "steps": 1, "activation": "softsign"}).summary
    assert s["backend_used"] == "torch"


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    fields = {**TINY, "steps": 40, "checkpoint_every": 10, "optimizer": "adam"}
    for backend in ("torch", "numba"):
        full = rnnbench.run({**fields, "backend": backend})
        out = tmp_path / backend
        assert train.run({**fields, "backend": backend}, out_dir=out, stop_after=25) is None
        assert (out / train.CHECKPOINT).exists() and not (out / "summary.parquet").exists()
        resumed = train.run({**fields, "backend": backend}, out_dir=out)
        pd.testing.assert_frame_equal(resumed.curve, full.curve)
        assert not (out / train.CHECKPOINT).exists()


def test_cli_run_writes_summary(tmp_path, capsys):
    code = cli_main(["run", "task=adding", "T=6", "steps=5", "eval_interval=5", "eval_size=16",
                     "hidden=4", "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "summary.parquet").exists()
    assert "solved=" in capsys.readouterr().out
    assert cli_main(["run", "cell=foo"]) == 2
    assert "'cell'" in capsys.readouterr().err


def test_cli_overrides_read_exponent_numbers_as_numbers():
    from rnnbench.cli import _parse_overrides

    values = _parse_overrides(["lr=1e-3", "clip_threshold=2.5E+1", "T=50", "cell=lstm",
                               "task=adding", "init=1e3x"])
    assert values == {"lr": 0.001, "clip_threshold": 25.0, "T": 50, "cell": "lstm",
                      "task": "adding", "init": "1e3x"}
    assert config.RunConfig.from_dict({**TINY, "lr": values["lr"]}).lr == 0.001


def test_batch_seeds_are_distinct_streams():
    seeds = {train.batch_seed(s, i) for s in range(5) for i in range(1000)}
    assert len(seeds) == 5000
    assert not math.isnan(train.batch_seed(0, 0))


def test_gradflow_covers_single_layer_reference_cells_only():
    bidir = rnnbench.run({**TINY, "steps": 2, "bidirectional": True}).gradflow
    assert set(bidir["phase"]) == {"start", "end"} and (bidir["lag"].max() == TINY["T"] - 1)
    deep = rnnbench.run({**TINY, "steps": 2, "layers": 2}).gradflow
    assert deep.empty and "grad_norm" in deep.columns
    lstm = rnnbench.run({**TINY, "steps": 2, "cell": "lstm", "diagnostics_every": 1}).gradflow
    assert set(lstm["phase"]) == {"start", "step 1", "end"}
    assert lstm["forget_product"].notna().all() and lstm["bound"].isna().all()


def test_progress_bar_on_request_and_never_in_logs(capfd):
    rnnbench.run({**TINY, "steps": 3})                  # stderr is not a terminal under pytest
    assert "it/s" not in capfd.readouterr().err
    rnnbench.run({**TINY, "steps": 3}, progress=True)
    assert "/3 [" in capfd.readouterr().err           # the bar was drawn
