"""Initialisation schemes and gradient clipping."""
import math

import pytest
import torch

from rnnbench import clip, init, models
from support import fake_task, unvalidated_cfg as make_cfg

TASK = fake_task(input_dim=3, output_dim=2)


def initialised(seed=0, **changes):
    cfg = make_cfg(**{"dtype": "float64", **changes})
    model = models.build(cfg, TASK)
    return init.apply(model, cfg, torch.Generator().manual_seed(seed))


def hh_blocks(model):
    """(name, block) for every H x H gate block of every weight_hh."""
    rnn = model.rnn
    return [(name, block) for name, w in rnn.named_parameters() if name.startswith("weight_hh")
            for block in models.gate_blocks(w.detach(), rnn.gate_count)]


def radius(block):
    return float(torch.linalg.eigvals(block).abs().max())


def test_schemes():
    assert init.schemes() == ["default", "glorot", "orthogonal", "identity", "normal",
                              "spectral", "smart"]
    with pytest.raises(ValueError, match="'init'"):
        initialised(init="xavier")


@pytest.mark.parametrize("scheme", init.SCHEMES)
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_same_seed_same_weights(scheme, cell):
    kw = dict(cell=cell, init=scheme, hidden=6, layers=2, bidirectional=True)
    a, b, c = initialised(0, **kw), initialised(0, **kw), initialised(1, **kw)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        fixed = ("bias" in name and scheme not in ("default", "spectral")) or (
            "weight_hh" in name and scheme == "identity")  # zeros / scale * I: no draw
        assert torch.equal(pa, pc) == fixed, name


def test_float32_gets_the_same_numbers():
    a = initialised(3, init="smart", hidden=8)
    b = initialised(3, init="smart", hidden=8, dtype="float32")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert pb.dtype == torch.float32
        torch.testing.assert_close(pb.double(), pa, rtol=1e-6, atol=1e-7)


def test_default_bounds():
    model = initialised(init="default", cell="gru", hidden=16)
    bound = 1 / math.sqrt(16)
    for name, p in model.rnn.named_parameters():
        assert p.abs().max() <= bound, name
        assert p.abs().max() > 0.8 * bound, name  # actually spread over the interval
    assert model.head.weight.abs().max() <= 1 / math.sqrt(16)


@pytest.mark.parametrize("scale", [None, 0.5])
def test_identity(scale):
    model = initialised(init="identity", init_scale=scale, cell="lstm", hidden=5, layers=2)
    expected = (scale or 1.0) * torch.eye(5, dtype=torch.float64)
    for name, block in hh_blocks(model):
        assert torch.equal(block, expected), name
    for name, p in model.rnn.named_parameters():
        if name.startswith("bias"):
            assert torch.count_nonzero(p) == 0
        if name.startswith("weight_ih"):
            assert 0 < p.abs().max() < 0.01  # N(0, 0.001^2)
    assert torch.count_nonzero(model.head.bias) == 0


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_orthogonal(cell):
    model = initialised(init="orthogonal", cell=cell, hidden=7, layers=2, bidirectional=True)
    eye = torch.eye(7, dtype=torch.float64)
    for name, q in hh_blocks(model):
        torch.testing.assert_close(q @ q.T, eye, rtol=0, atol=1e-12, msg=name)
    gain = initialised(init="orthogonal", init_scale=2.0, cell=cell, hidden=7)
    for name, q in hh_blocks(gain):
        torch.testing.assert_close(q @ q.T, 4 * eye, rtol=0, atol=1e-12, msg=name)


def test_glorot_bounds():
    model = initialised(init="glorot", cell="lstm", hidden=10)
    for name, p in model.rnn.named_parameters():
        if name.startswith("bias"):
            assert torch.count_nonzero(p) == 0
        else:
            bound = math.sqrt(6 / (p.shape[1] + 10))  # per gate block: fan_out = H
            assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound, name


@pytest.mark.parametrize("scheme, rho", [("spectral", None), ("spectral", 0.8),
                                         ("smart", None), ("smart", 1.3)])
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_spectral_radius_schemes(scheme, rho, cell):
    model = initialised(init=scheme, init_scale=rho, cell=cell, hidden=20, layers=2)
    target = rho if rho is not None else init.DEFAULT_SCALE[scheme]
    for name, block in hh_blocks(model):
        assert radius(block) == pytest.approx(target, abs=1e-6), name
    assert models.spectral_radius(model) == pytest.approx(target, abs=1e-6)


def test_spectral_keeps_the_default_draw():
    default, spectral = initialised(5, init="default"), initialised(5, init="spectral", init_scale=0.7)
    for (name, a), b in zip(default.named_parameters(), spectral.parameters()):
        if "weight_hh" in name:
            torch.testing.assert_close(b, a * (0.7 / radius(a.detach())))
        else:
            assert torch.equal(a, b), name


def test_smart_sparsity():
    model = initialised(init="smart", hidden=40, layers=2)
    for name, block in hh_blocks(model):
        assert ((block != 0).sum(dim=1) == init.SMART_NONZERO).all(), name  # 15 incoming per unit
    small = initialised(init="smart", hidden=6)
    for name, block in hh_blocks(small):
        assert ((block != 0).sum(dim=1) == 6).all(), name  # fewer units than 15: dense
    assert 0 < model.rnn.weight_ih_l0.abs().max() < 0.1  # N(0, 0.01^2)
    assert torch.count_nonzero(model.rnn.bias_ih_l0) == 0


@pytest.mark.parametrize("sigma", [None, 0.01])
def test_normal_std(sigma):
    model = initialised(init="normal", init_scale=sigma, hidden=200)
    target = sigma or 0.1
    w = model.rnn.weight_hh_l0
    assert w.std().item() == pytest.approx(target, rel=0.03)
    assert abs(w.mean().item()) < 0.05 * target
    assert model.rnn.weight_ih_l0.std().item() == pytest.approx(target, rel=0.2)
    assert torch.count_nonzero(model.rnn.bias_hh_l0) == 0


def test_forget_bias():
    model = initialised(init="glorot", cell="lstm", hidden=4, layers=2, bidirectional=True,
                        forget_bias=1.0)
    ih_biases = [n for n, _ in model.rnn.named_parameters() if n.startswith("bias_ih")]
    assert len(ih_biases) == 4
    for name, p in model.rnn.named_parameters():
        if name.startswith("bias_ih"):
            expected = torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 8, dtype=torch.float64)
            assert torch.equal(p, expected), name
        elif name.startswith("bias_hh"):
            assert torch.count_nonzero(p) == 0
    plain = initialised(2, init="default", cell="lstm", hidden=4)
    opened = initialised(2, init="default", cell="lstm", hidden=4, forget_bias=1.0)
    diff = opened.rnn.bias_ih_l0 - plain.rnn.bias_ih_l0
    torch.testing.assert_close(diff, torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 8, dtype=torch.float64))


def test_forget_bias_needs_a_forget_gate():
    cfg = make_cfg(cell="gru", dtype="float64")
    model = models.build(cfg, TASK)
    with pytest.raises(ValueError, match="'forget_bias'"):
        init.apply(model, make_cfg(cell="gru", forget_bias=1.0), torch.Generator().manual_seed(0))


def test_head_init():
    model = initialised(init="orthogonal", hidden=10)
    bound = math.sqrt(6 / (10 + 2))
    assert model.head.weight.abs().max() <= bound
    assert torch.count_nonzero(model.head.bias) == 0


# --- clipping ------------------------------------------------------------------------------

def params_with_grads(*grads):
    params = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        params.append(p)
    return params


def total_norm(params):
    return math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params))


def test_clip_norm_above_threshold():
    params = params_with_grads(torch.tensor([3.0, 0.0], dtype=torch.float64),
                               torch.tensor([[4.0]], dtype=torch.float64))
    norm, clipped = clip.clip_(params, make_cfg(clip="norm", clip_threshold=1.0))
    assert norm == pytest.approx(5.0) and clipped
    assert total_norm(params) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(params[0].grad, torch.tensor([0.6, 0.0], dtype=torch.float64))


def test_clip_norm_below_threshold_and_float32():
    params = params_with_grads(torch.randn(10, 10), torch.randn(10))
    before = [p.grad.clone() for p in params]
    norm, clipped = clip.clip_(params, make_cfg(clip="norm", clip_threshold=100.0))
    assert not clipped and norm == pytest.approx(total_norm(params), rel=1e-6)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before))
    norm, clipped = clip.clip_(params, make_cfg(clip="norm", clip_threshold=0.5))
    assert clipped and total_norm(params) == pytest.approx(0.5, rel=1e-5)


def test_clip_value():
    params = params_with_grads(torch.tensor([-3.0, 0.2, 0.7]), torch.tensor([1.5]))
    norm, clipped = clip.clip_(params, make_cfg(clip="value", clip_threshold=0.5))
    assert clipped and norm == pytest.approx(math.sqrt(9 + 0.04 + 0.49 + 2.25), rel=1e-6)
    assert torch.equal(params[0].grad, torch.tensor([-0.5, 0.2, 0.5]))
    assert torch.equal(params[1].grad, torch.tensor([0.5]))
    norm, clipped = clip.clip_(params, make_cfg(clip="value", clip_threshold=0.5))
    assert not clipped  # nothing beyond the threshold any more


def test_clip_none_and_missing_grads():
    params = params_with_grads(torch.tensor([30.0, 40.0]))
    params.append(torch.nn.Parameter(torch.ones(3)))  # no grad: skipped
    norm, clipped = clip.clip_(iter(params), make_cfg(clip="none"))
    assert norm == pytest.approx(50.0) and not clipped
    assert torch.equal(params[0].grad, torch.tensor([30.0, 40.0]))
    assert clip.clip_([], make_cfg(clip="norm")) == (0.0, False)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clip_non_finite_leaves_grads(bad, mode):
    params = params_with_grads(torch.tensor([bad, 2.0]), torch.tensor([5.0]))
    norm, clipped = clip.clip_(params, make_cfg(clip=mode, clip_threshold=1.0))
    assert not math.isfinite(norm) and not clipped
    assert params[0].grad[1] == 2.0 and params[1].grad[0] == 5.0


def test_clip_norm_does_not_overflow_float32():
    params = params_with_grads(torch.full((4,), 1e30))  # sum of squares overflows float32
    norm, clipped = clip.clip_(params, make_cfg(clip="norm", clip_threshold=1.0))
    assert norm == pytest.approx(2e30, rel=1e-6) and clipped
    assert total_norm(params) == pytest.approx(1.0, rel=1e-5)


def test_clip_bad_mode():
    with pytest.raises(ValueError, match="'clip'"):
        clip.clip_([], make_cfg(clip="global"))


def test_clip_on_a_model():
    model = initialised(init="normal", init_scale=1.0, hidden=8)
    x = torch.randn(4, 30, 3, dtype=torch.float64)
    model(x).pow(2).sum().mul(1e3).backward()
    norm, clipped = clip.clip_(model.parameters(), make_cfg(clip="norm", clip_threshold=1.0))
    assert clipped and norm > 1.0
    assert clip.grad_norm(model.parameters()) == pytest.approx(1.0, abs=1e-12)
