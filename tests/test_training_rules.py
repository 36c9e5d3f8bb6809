"""The training rules are defined once (rnnbench.optim) and applied alike by the three engines.

The same gradients go through the torch backend's rules (rnnbench.clip + torch.optim), the Numba
backend's (numpy) and the ensemble engine's (stacked per-member tensors); a disagreement names
the engine, the optimiser and the clip mode.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from rnnbench import clip, config, optim
from rnnbench.ensemble.engine import StackedTrainer

SHAPES = {"weight_hh": (6, 3), "bias_hh": (6,)}
CASES = list(itertools.product(optim.OPTIMIZERS, optim.CLIP_MODES))
STEPS = 6


def _settings(name, mode):
    return SimpleNamespace(optimizer=name, clip=mode, lr=0.05, momentum=0.8, clip_threshold=0.7)


def _gradients(seed):
    """STEPS gradient sets, some far above the clip threshold, one with a huge element."""
    rng = np.random.default_rng(seed)
    steps = []
    for step in range(STEPS):
        scale = 3.0 if step % 2 else 0.05
        g = {k: rng.normal(0, scale, shape) for k, shape in SHAPES.items()}
        if step == 3:
            g["bias_hh"][0] = 25.0
        steps.append(g)
    return steps


def _start(seed):
    rng = np.random.default_rng(seed + 100)
    return {k: rng.normal(0, 1, shape) for k, shape in SHAPES.items()}


def _torch_engine(s, start, grads):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    opt = optim.torch_optimizer(s, list(params.values()))
    out = []
    for g in grads:
        for k, p in params.items():
            p.grad = torch.tensor(g[k])
        norm, clipped = clip.clip_(list(params.values()), s)
        opt.step()
        out.append((norm, clipped))
    return {k: p.detach().numpy() for k, p in params.items()}, out


def _numpy_engine(s, start, grads):
    params = {k: v.copy() for k, v in start.items()}
    opt = optim.NumpyOptimizer(s, params)
    out = []
    for g in grads:
        g = {k: v.copy() for k, v in g.items()}
        norm, clipped = optim.numpy_clip(g, s)
        opt.update(params, g)
        out.append((norm, clipped))
    return params, out


def _ensemble_engine(settings, starts, grads_per_member):
    """All cases at once: member i runs case i, as the engine trains a group."""
    G = len(settings)
    params = {k: torch.tensor(np.stack([st[k] for st in starts])) for k in SHAPES}
    model = SimpleNamespace(params=params, members=G)
    trainer = StackedTrainer(model, settings, "mse")
    out = []
    for step in range(STEPS):
        grads = [torch.tensor(np.stack([gm[step][k] for gm in grads_per_member])) for k in SHAPES]
        with torch.no_grad():
            norm, clipped, grads = trainer._clip(grads)
            trainer._update(list(params.values()), grads, torch.isfinite(norm))
        out.append((norm.numpy(), clipped.numpy()))
    final = [{k: params[k][i].numpy() for k in SHAPES} for i in range(G)]
    return final, [[(n[i], c[i]) for n, c in out] for i in range(G)]


def test_three_engines_apply_the_same_rules():
    settings = [_settings(name, mode) for name, mode in CASES]
    starts = [_start(i) for i in range(len(CASES))]
    grads = [_gradients(i) for i in range(len(CASES))]
    ensemble_params, ensemble_log = _ensemble_engine(settings, starts, grads)
    problems = []
    for i, (name, mode) in enumerate(CASES):
        reference, ref_log = _torch_engine(settings[i], starts[i], grads[i])
        others = {"numba (numpy)": _numpy_engine(settings[i], starts[i], grads[i]),
                  "ensemble": (ensemble_params[i], ensemble_log[i])}
        for engine, (params, log) in others.items():
            for k in SHAPES:
                if not np.allclose(params[k], reference[k], rtol=1e-12, atol=1e-14):
                    problems.append(f"{engine}: optimizer={name} clip={mode}: {k} differs from "
                                    f"torch by {np.abs(params[k] - reference[k]).max():.3g}")
            for step, ((n, c), (rn, rc)) in enumerate(zip(log, ref_log)):
                if not (np.isclose(n, rn, rtol=1e-12) and bool(c) == bool(rc)):
                    problems.append(f"{engine}: optimizer={name} clip={mode}: step {step} norm/"
                                    f"clipped {n:.6g}/{bool(c)} vs torch {rn:.6g}/{bool(rc)}")
    assert not problems, "\n".join(problems)


def test_clipping_happened_in_every_mode_that_clips():
    s = _settings("sgd", "norm")
    _, log = _torch_engine(s, _start(0), _gradients(0))
    assert any(c for _, c in log) and not all(c for _, c in log)
    s = _settings("sgd", "value")
    _, log = _torch_engine(s, _start(0), _gradients(0))
    assert any(c for _, c in log)


def test_config_and_schema_read_the_tables():
    assert config.OPTIMIZERS == tuple(optim.OPTIMIZERS)
    assert config.CLIPS == tuple(optim.CLIP_MODES) == clip.MODES
    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas"
                             / "config.schema.yaml").read_text())
    fields = schema["$defs"]["run_fields"]["properties"]
    assert fields["optimizer"]["enum"] == list(optim.OPTIMIZERS)
    assert fields["clip"]["enum"] == list(optim.CLIP_MODES)
    with pytest.raises(ValueError, match="optimizer"):
        optim.torch_optimizer(_settings("adagrad", "none"), [torch.zeros(1, requires_grad=True)])
