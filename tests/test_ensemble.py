"""The ensemble engine: G runs trained together reproduce the runs done one by one.

CPU tests compare, in float64, every member's learning curve (train_loss, eval_loss,
eval_error, grad_norm, clipped), summary and gradient-flow rows with `rnnbench.run(backend=
"torch")` of the same config. GPU tests (marker `gpu`) compare the stacked cells' gradients with
the Numba float64 reference and need a CUDA device.
"""
import json
import math
import runpy
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import rnnbench
from rnnbench import reference, tasks
from rnnbench.config import RunConfig
from rnnbench.ensemble import (StackedModel, StackedTrainer, can_ensemble, check_group, group_key,
                               group_runs, run_group, stacked_sequence)
from rnnbench.ensemble.__main__ import main as ensemble_main
from rnnbench.ensemble.stacked import Activations

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device: torch.cuda.is_available() is False")
BASE = dict(task="adding", T=8, hidden=8, batch_size=8, steps=30, eval_interval=10,
            eval_size=64, dtype="float64", backend="torch")
CURVE_COLUMNS = ("train_loss", "eval_loss", "eval_error", "grad_norm")
SUMMARY_SAME = ("run_id", "solved", "steps_to_solve", "final_eval_loss", "final_eval_error",
                "best_eval_loss", "diverged", "diverged_step", "steps_done",
                "spectral_radius_start", "spectral_radius_end", "frac_clipped", "n_params",
                "baseline_loss", "baseline_error", "seed", "lr", "optimizer", "clip")


pytestmark = pytest.mark.usefixtures("one_thread")


def members(cell):
    """Four members differing in seed, init, lr, clip mode, optimiser (and rnn activation)."""
    variants = [
        dict(seed=1, optimizer="sgd", clip="norm", clip_threshold=0.05, lr=0.05,
             diagnostics_every=10),
        dict(seed=2, optimizer="momentum", clip="value", clip_threshold=0.05, lr=0.05,
             init="orthogonal"),
        dict(seed=3, optimizer="adam", clip="none", lr=0.01, init="glorot"),
        dict(seed=4, optimizer="rmsprop", clip="norm", clip_threshold=0.05, lr=0.01,
             init="normal", init_scale=0.3),
    ]
    if cell == "rnn":
        variants[1]["activation"] = "relu"
        variants[3]["activation"] = "sigmoid"
    if cell == "lstm":
        variants[0]["forget_bias"] = 1.0
    return [{**BASE, "cell": cell, **v} for v in variants]


def assert_same_run(ens, single, rtol=1e-8):
    a, b = ens.curve, single.curve
    assert list(a["step"]) == list(b["step"])
    for column in CURVE_COLUMNS:
        np.testing.assert_allclose(a[column], b[column], rtol=rtol, atol=1e-12, err_msg=column)
    assert (a["clipped"] == b["clipped"]).all()
    for key in SUMMARY_SAME:
        x, y = ens.summary[key], single.summary[key]
        if isinstance(y, float) and not isinstance(y, bool):
            assert x == pytest.approx(y, rel=rtol, abs=1e-12, nan_ok=True), key
        else:
            assert x == y, key
    assert ens.summary["backend_used"] == "ensemble"
    ga, gb = ens.gradflow, single.gradflow
    assert list(ga["phase"]) == list(gb["phase"]) and list(ga["lag"]) == list(gb["lag"])
    for column in ("grad_norm", "jacobian_norm", "bound", "forget_product"):
        np.testing.assert_allclose(ga[column], gb[column], rtol=1e-7, atol=1e-14, err_msg=column)


def check_group_matches(cfgs, **kwargs):
    results = run_group(cfgs, **kwargs)
    assert len(results) == len(cfgs)
    for cfg, ens in zip(cfgs, results):
        assert ens.summary["ensemble_size"] == len(cfgs)
        assert_same_run(ens, rnnbench.run(cfg))
    return results


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_group_equals_runs_one_by_one(cell):
    results = check_group_matches(members(cell))
    clipped = [r.curve["clipped"].any() for r in results]
    assert clipped == [True, True, False, True], "thresholds chosen so that clipping happens"
    assert list(dict.fromkeys(results[0].gradflow["phase"])) == ["start", "step 10", "step 20", "end"]
    assert list(dict.fromkeys(results[1].gradflow["phase"])) == ["start", "end"]


def test_pascanu_task_with_different_lengths_per_member():
    # adding_pascanu draws one length per batch in [T, 1.1T): at T=20 a member's batch has 20
    # or 21 steps (at T=10 the range holds only 10), so members get left-padded and masked.
    cfgs = [{**c, "task": "adding_pascanu", "T": 20} for c in members("lstm")]
    task = tasks.make("adding_pascanu", 20)
    from rnnbench.train import batch_seed
    lengths = np.array([[task.sample(8, batch_seed(c["seed"], s)).x.shape[1] for c in cfgs]
                        for s in range(BASE["steps"])])
    assert (lengths.min(axis=1) != lengths.max(axis=1)).sum() >= 5, "lengths must differ"
    check_group_matches(cfgs)
    # static shapes (as with CUDA graphs): every batch padded to the task's maximum length
    check_group_matches(cfgs[:2], pad_to_max=True)


def test_variable_length_classification_task():
    cfgs = [{**c, "task": "temporal_order", "T": 20, "eval_size": 32} for c in members("gru")]
    check_group_matches(cfgs[:2])


def test_per_step_copy_task():
    cfgs = [{**c, "task": "copy", "T": 5, "steps": 12, "eval_interval": 6} for c in members("rnn")]
    check_group_matches(cfgs[::2])


@pytest.mark.parametrize("compact_at", [None, 0.0])
def test_diverged_member_is_frozen_others_go_on(compact_at):
    # compact_at=0: the diverged member (non-finite weights) stays in the stack, masked out of
    # every update, as it does between compactions with CUDA graphs
    common = {**BASE, "cell": "rnn", "T": 30, "optimizer": "sgd", "clip": "none"}
    cfgs = [
        {**common, "activation": "identity", "init": "identity", "init_scale": 3.0, "lr": 1.0},
        {**common, "seed": 5, "lr": 0.05},
        {**common, "seed": 6, "lr": 0.02, "clip": "norm", "clip_threshold": 0.5},
    ]
    results = check_group_matches(cfgs, compact_at=compact_at)
    bad, good = results[0].summary, results[1].summary
    assert bad["diverged"] and 1 <= bad["diverged_step"] < BASE["steps"]
    assert bad["steps_done"] == bad["diverged_step"]
    assert not good["diverged"] and good["steps_done"] == BASE["steps"]


@pytest.mark.parametrize("compact_at", [None, 0.0])
def test_early_stopped_members(compact_at):
    common = {**BASE, "cell": "gru", "optimizer": "adam", "lr": 0.05, "steps": 60,
              "task_options": {"solve_threshold": 0.14}}
    cfgs = [{**common, "seed": 0}, {**common, "seed": 2}, {**common, "seed": 3},
            {**common, "seed": 0, "early_stop": False}]
    results = check_group_matches(cfgs, compact_at=compact_at)
    s = [r.summary for r in results]
    assert [x["steps_to_solve"] for x in s[:2]] == [20, 40]
    assert [x["steps_done"] for x in s] == [20, 40, 60, 60]
    assert not s[2]["solved"] and s[3]["solved"] and s[3]["steps_to_solve"] == 20


def test_out_dirs_and_command_line(tmp_path, capsys):
    cfgs = members("gru")[:2]
    dirs = [tmp_path / "a", tmp_path / "b"]
    code = ensemble_main(["--json-list", json.dumps(cfgs), "--out-dirs", *map(str, dirs)])
    assert code == 0, capsys.readouterr().err
    assert "ensemble_size=2" in capsys.readouterr().out
    for cfg, d in zip(cfgs, dirs):
        summary = pd.read_parquet(d / "summary.parquet")
        curve = pd.read_parquet(d / "curve.parquet")
        gradflow = pd.read_parquet(d / "gradflow.parquet")
        single = rnnbench.run(cfg, out_dir=tmp_path / "single" / d.name)
        ref = pd.read_parquet(tmp_path / "single" / d.name / "summary.parquet")
        assert summary.loc[0, "backend_used"] == "ensemble" and summary.loc[0, "ensemble_size"] == 2
        assert set(ref.columns) | {"ensemble_size"} == set(summary.columns)
        assert summary.loc[0, "run_id"] == RunConfig.from_dict(cfg).run_id()
        assert list(curve.columns) == list(single.curve.columns)
        assert list(gradflow.columns) == list(single.gradflow.columns)
        assert not list(d.glob("*.tmp"))
    bad = [cfgs[0], {**cfgs[1], "hidden": 9}]
    assert ensemble_main(["--json-list", json.dumps(bad)]) == 2
    assert "['hidden']" in capsys.readouterr().err


def test_grouping_keys_and_jobs():
    a = RunConfig.from_dict({**BASE, "cell": "lstm"})
    same = [a.replace(seed=7), a.replace(lr=0.3, optimizer="adam"), a.replace(clip="norm"),
            a.replace(init="orthogonal", init_scale=2.0), a.replace(forget_bias=1.0),
            a.replace(method="other", early_stop=False, backend="ensemble")]
    for b in same:
        assert group_key(b) == group_key(a)
    for change in (dict(T=9), dict(hidden=9), dict(batch_size=9), dict(cell="gru"),
                   dict(dtype="float32"), dict(steps=31), dict(task_options={"solve_threshold": 0.5}),
                   dict(eval_interval=5), dict(device="cpu")):
        assert group_key(a.replace(**change)) != group_key(a), change
    rnn = RunConfig.from_dict({**BASE, "cell": "rnn"})
    assert group_key(rnn.replace(activation="relu")) == group_key(rnn)
    assert group_key(a) == group_key(a.to_dict())

    assert can_ensemble(a) and can_ensemble({**BASE, "cell": "rnn", "activation": "softsign"})
    assert not can_ensemble(a.replace(layers=2))
    assert not can_ensemble(a.replace(bidirectional=True))
    assert not can_ensemble(a.replace(precision="bf16"))

    runs = [a.replace(seed=s) for s in range(5)] + [a.replace(T=9, seed=s) for s in range(3)]
    runs.insert(2, a.replace(T=9, seed=99))
    jobs = group_runs(runs, members_per_job=2)
    assert [len(j) for j in jobs] == [2, 2, 1, 2, 2]
    assert [c.seed for c in jobs[0] + jobs[1] + jobs[2]] == [0, 1, 2, 3, 4]
    assert [c.seed for c in jobs[3] + jobs[4]] == [99, 0, 1, 2]
    assert group_runs(runs, 2) == jobs, "deterministic"
    assert [len(j) for j in group_runs(runs, 4)] == [3, 2, 4]
    assert [len(j) for j in group_runs(runs, 100)] == [5, 4]
    with pytest.raises(ValueError, match="layers"):
        group_runs([a, a.replace(layers=2)], 4)
    with pytest.raises(ValueError, match="members_per_job"):
        group_runs([a], 0)
    with pytest.raises(ValueError, match=r"\['T'\]"):
        check_group([a, a.replace(T=9)])
    with pytest.raises(ValueError, match="differ"):
        run_group([a, a.replace(hidden=9)])


def test_stacked_cells_match_torch_modules_and_masking():
    torch.manual_seed(0)
    G, B, L, I, H = 3, 4, 7, 2, 5
    for cell, module in (("rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        nets = [module(I, H, batch_first=True).double() for _ in range(G)]
        params = {k: torch.stack([getattr(n, f"{k}_l0").detach() for n in nets])
                  for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        x = torch.randn(G, B, L, I, dtype=torch.float64)
        want = torch.stack([n(x[g])[0] for g, n in enumerate(nets)])
        for precompute in (True, False):
            got = stacked_sequence(cell, params, x, return_sequence=True, precompute=precompute)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        shared = stacked_sequence(cell, params, x[0], return_sequence=True)
        torch.testing.assert_close(shared, torch.stack([n(x[0])[0] for n in nets]))
        # member 1 with only its last 4 steps real (left padding): same as running those 4
        mask = torch.ones(G, L, dtype=torch.bool)
        mask[1, :3] = False
        padded = x.clone()
        padded[1, :, :3] = 123.0                           # padding values must not matter
        last = stacked_sequence(cell, params, padded, mask=mask)
        torch.testing.assert_close(last[1], nets[1](x[1, :, 3:])[0][:, -1], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(last[0], want[0, :, -1])


def test_mixed_activations_select_per_member():
    pre = torch.linspace(-2, 2, 12, dtype=torch.float64).view(3, 2, 2)
    act = Activations(["relu", "tanh", "relu"])
    out = act(pre)
    torch.testing.assert_close(out[0], torch.relu(pre[0]))
    torch.testing.assert_close(out[1], torch.tanh(pre[1]))
    torch.testing.assert_close(act.select([1])(pre[1:2]), torch.tanh(pre[1:2]))


def test_benchmark_quick_mode_runs(capsys):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ensemble.py"
    bench = runpy.run_path(str(script))
    rows = bench["main"](["--quick", "--cells", "gru", "--members", "1,2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "| gru | nn.GRU | 1 |" in out and "| gru | ensemble eager | 2 |" in out
    assert all(math.isfinite(r["rate"]) and r["rate"] > 0 for r in rows)


@pytest.mark.slow  # first compile: ~40 s on 2 cores
@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile on the CPU needs a C++ compiler; none on PATH")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_compiled_elementwise_step_equals_eager_on_cpu(cell):
    """`fused=True` (torch.compile of the cell's elementwise step, fullgraph) gives the eager
    values and gradients, also after the number of members changes (dynamic shapes). run_group
    uses it on CUDA only; compiling for the CPU here checks the graph itself without a GPU."""
    gen = torch.Generator().manual_seed(0)
    gH = {"lstm": 4, "gru": 3}[cell] * 5
    for G in (3, 2):
        params = {k: (torch.rand(G, *shape, generator=gen, dtype=torch.float64) - 0.5)
                  .requires_grad_() for k, shape in [("weight_ih", (gH, 2)), ("weight_hh", (gH, 5)),
                                                     ("bias_ih", (gH,)), ("bias_hh", (gH,))]}
        x = torch.randn(G, 4, 6, 2, generator=gen, dtype=torch.float64)
        results = []
        for fused in (False, True):
            h = stacked_sequence(cell, params, x, return_sequence=True, fused=fused)
            results.append((h, torch.autograd.grad(h.square().sum(), list(params.values()))))
        (h_eager, g_eager), (h_fused, g_fused) = results
        torch.testing.assert_close(h_fused, h_eager, rtol=1e-12, atol=1e-14)
        for a, b in zip(g_fused, g_eager):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


# --- GPU ------------------------------------------------------------------------------------

def _reference_case(cell, G=3, B=4, L=12, I=2, H=16, seed=0):
    """Random float64 weights, inputs and output gradients for G members."""
    rng = np.random.default_rng(seed)
    gH = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * H
    params = [{"weight_ih": rng.uniform(-0.4, 0.4, (gH, I)), "weight_hh": rng.uniform(-0.4, 0.4, (gH, H)),
               "bias_ih": rng.uniform(-0.4, 0.4, gH), "bias_hh": rng.uniform(-0.4, 0.4, gH)}
              for _ in range(G)]
    x = rng.standard_normal((G, L, B, I))
    grad_h = rng.standard_normal((G, L, B, H)) / (L * B)
    return params, x, grad_h


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_gpu_stacked_gradients_match_numba_reference(cell, precision):
    allow = precision == "tf32"
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        params, x, grad_h = _reference_case(cell)
        G = len(params)
        h0 = np.zeros((x.shape[2], params[0]["weight_hh"].shape[1]))
        c0 = h0.copy() if cell == "lstm" else None
        want = [reference.forward_backward(cell, p, x[g], h0, grad_h[g], c0=c0) for g, p in enumerate(params)]
        dev = torch.device("cuda")
        stacked = {k: torch.tensor(np.stack([p[k] for p in params]), dtype=torch.float32,
                                   device=dev, requires_grad=True) for k in params[0]}
        xt = torch.tensor(x.transpose(0, 2, 1, 3), dtype=torch.float32, device=dev)  # (G, B, L, I)
        hs = stacked_sequence(cell, stacked, xt, return_sequence=True)          # (G, B, L, H)
        gh = torch.tensor(grad_h.transpose(0, 2, 1, 3), dtype=torch.float32, device=dev)
        grads = torch.autograd.grad(hs, list(stacked.values()), grad_outputs=gh)
        tol = dict(rtol=5e-3, atol=5e-4) if allow else dict(rtol=1e-4, atol=1e-5)
        for g in range(G):
            h = hs[g].detach().transpose(0, 1).double().cpu().numpy()
            np.testing.assert_allclose(h, want[g][0], **tol)
            for k, grad in zip(stacked, grads):
                np.testing.assert_allclose(grad[g].double().cpu().numpy(), want[g][1][k], err_msg=k, **tol)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cuda_graph,fused", [(False, False), (True, False), (False, True),
                                              (True, True)])
def test_gpu_group_float64_equals_cpu_runs(cuda_graph, fused):
    cfgs = [{**c, "task": "adding_pascanu", "T": 20, "device": "cuda"} for c in members("lstm")]
    results = run_group(cfgs, cuda_graph=cuda_graph, fused=fused)
    for cfg, ens in zip(cfgs, results):
        single = rnnbench.run({**cfg, "device": "cpu"})
        for column in CURVE_COLUMNS:
            np.testing.assert_allclose(ens.curve[column], single.curve[column], rtol=1e-6,
                                       atol=1e-10, err_msg=column)
        assert ens.summary["device_used"].startswith("cuda")


@pytest.mark.gpu
@needs_cuda
def test_gpu_trainer_graph_replay_equals_eager():
    from types import SimpleNamespace
    torch.manual_seed(0)
    G, B, L, I, H = 8, 16, 30, 2, 32
    dev = torch.device("cuda")
    shapes = {"weight_ih": (G, 4 * H, I), "weight_hh": (G, 4 * H, H), "bias_ih": (G, 4 * H),
              "bias_hh": (G, 4 * H), "head_weight": (G, 1, H), "head_bias": (G, 1)}
    init = {k: 0.2 * torch.randn(s, device=dev) for k, s in shapes.items()}
    settings = [SimpleNamespace(optimizer=o, lr=0.01, momentum=0.9, clip=c, clip_threshold=0.1)
                for o, c in zip(["sgd", "momentum", "adam", "rmsprop"] * 2, ["none", "norm", "value"] * 3)]
    data = [(torch.randn(G, B, L, I, device=dev), torch.randn(G, B, device=dev)) for _ in range(5)]
    outs = []
    for graph in (False, True):
        params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
        trainer = StackedTrainer(StackedModel("lstm", params, per_step=False), settings, "mse",
                                 cuda_graph=graph)
        stats = [trainer.step(x, y).clone() for x, y in data]
        outs.append((torch.stack(stats), {k: v.detach().clone() for k, v in params.items()}))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-6)
    for k in init:
        torch.testing.assert_close(outs[1][1][k], outs[0][1][k], rtol=1e-5, atol=1e-6)
