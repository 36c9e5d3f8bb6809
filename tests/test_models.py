"""Cells, activations, the registry and SequenceModel (CPU, small, float64 where it matters)."""

import pytest
import torch
from torch import nn

from rnnbench import models
from rnnbench.config import RunConfig
from rnnbench.models import LoopRNN
from support import fake_task as make_task, unvalidated_cfg as make_cfg


# --- registries ---------------------------------------------------------------------------

def test_registries():
    assert models.cells()[:3] == ["rnn", "lstm", "gru"]  # plug-ins (methods/) may follow
    assert {"tanh", "relu", "sigmoid", "identity", "softsign", "leaky_relu"} <= set(models.activations())
    assert models.derivative_bound("tanh") == 1.0
    assert models.derivative_bound("sigmoid") == 0.25
    assert models.derivative_bound("relu") == 1.0
    assert models.derivative_bound("identity") == 1.0
    with pytest.raises(ValueError, match="already registered"):
        models.register_cell("rnn", lambda *a: None)
    with pytest.raises(ValueError, match="already registered"):
        models.register_activation("tanh", torch.tanh, 1.0)


def test_register_user_cell_and_activation(isolated_registries):

    def build_loop(input_size, hidden_size, num_layers, bidirectional, cfg):
        return LoopRNN(input_size, hidden_size, num_layers, cfg.activation, bidirectional)

    models.register_cell("myrnn", build_loop, options=("activation",))
    models.register_activation("cube_tanh", lambda x: torch.tanh(x) ** 3, 1.0)
    assert "myrnn" in models.cells() and "cube_tanh" in models.activations()
    cfg = make_cfg(cell="myrnn", activation="cube_tanh", hidden=4)
    model = models.build(cfg, make_task())
    assert model(torch.randn(3, 5, 2)).shape == (3, 1)
    with pytest.raises(ValueError, match="unknown option"):
        models.register_cell("bad", build_loop, options=("dropout",))


# --- option checks ------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    dict(cell="lstm", activation="tanh", forget_bias=1.0),
    dict(cell="gru"),
    dict(cell="rnn", activation="sigmoid"),
    dict(cell="rnn", activation="leaky_relu"),
])
def test_check_options_accepts(changes):
    models.check_options(make_cfg(**changes))



# --- parameter layout -----------------------------------------------------------------------

def _layout(module):
    return [(name, tuple(p.shape)) for name, p in module.named_parameters()]


@pytest.mark.parametrize("cell, reference, gates", [
    ("rnn", nn.RNN, 1), ("lstm", nn.LSTM, 4), ("gru", nn.GRU, 3)])
def test_parameter_layout_matches_torch(cell, reference, gates):
    cfg = make_cfg(cell=cell, hidden=5, layers=2, bidirectional=True)
    model = models.build(cfg, make_task(input_dim=3))
    ref = reference(3, 5, 2, batch_first=True, bidirectional=True)
    assert _layout(model.rnn) == _layout(ref)
    assert model.rnn.gate_count == gates and model.rnn.hidden_size == 5
    assert model.rnn.num_layers == 2 and model.rnn.bidirectional
    assert [n for n, _ in _layout(model.rnn)][:5] == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse"]


@pytest.mark.parametrize("activation", ["sigmoid", "identity", "softsign"])
def test_loop_layout_matches_nn_rnn(activation):
    model = models.build(make_cfg(activation=activation, hidden=5, layers=2, bidirectional=True),
                         make_task(input_dim=3))
    assert isinstance(model.rnn, LoopRNN)
    assert _layout(model.rnn) == _layout(nn.RNN(3, 5, 2, batch_first=True, bidirectional=True))


def test_fused_choice():
    assert type(models.build(make_cfg(activation="relu"), make_task()).rnn) is nn.RNN
    assert isinstance(models.build(make_cfg(activation="relu"), make_task(), fused=False).rnn, LoopRNN)
    with pytest.raises(ValueError, match="'activation'"):
        models.build(make_cfg(activation="sigmoid"), make_task(), fused=True)


# --- the loop equals nn.RNN -----------------------------------------------------------------

@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_loop_rnn_equals_nn_rnn_float64(nonlinearity):
    torch.manual_seed(0)
    ref = nn.RNN(3, 4, 2, nonlinearity=nonlinearity, batch_first=True, bidirectional=True).double()
    loop = LoopRNN(3, 4, 2, nonlinearity=nonlinearity, bidirectional=True, dtype=torch.float64)
    loop.load_state_dict(ref.state_dict())  # same names and shapes, or this raises
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    h0 = torch.randn(4, 5, 4, dtype=torch.float64)
    w_out = torch.randn(5, 7, 8, dtype=torch.float64)
    w_h = torch.randn(4, 5, 4, dtype=torch.float64)
    results = []
    for module in (ref, loop):
        xi = x.clone().requires_grad_()
        out, h_n = module(xi, h0)
        ((out * w_out).sum() + (h_n * w_h).sum()).backward()
        results.append((out, h_n, xi.grad, {n: p.grad for n, p in module.named_parameters()}))
    (o1, h1, gx1, g1), (o2, h2, gx2, g2) = results
    assert o1.shape == o2.shape == (5, 7, 8) and h1.shape == h2.shape == (4, 5, 4)
    torch.testing.assert_close(o2, o1, rtol=0, atol=1e-10)
    torch.testing.assert_close(h2, h1, rtol=0, atol=1e-10)
    torch.testing.assert_close(gx2, gx1, rtol=0, atol=1e-10)
    assert g1.keys() == g2.keys() and len(g1) == 16
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=0, atol=1e-10, msg=name)


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "identity"])
def test_loop_rnn_gradcheck(nonlinearity):
    torch.manual_seed(1)
    loop = LoopRNN(2, 3, 2, nonlinearity=nonlinearity, bidirectional=True, dtype=torch.float64)
    names = [n for n, _ in loop.named_parameters()]
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in loop.parameters()]

    def f(x, *params):
        out, h_n = torch.func.functional_call(loop, dict(zip(names, params)), (x,))
        return out, h_n

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-7)


def test_loop_rnn_semantics_by_hand():
    """One layer, forward direction: s_t = f(W_ih x_t + b_ih + W_hh s_{t-1} + b_hh)."""
    torch.manual_seed(2)
    loop = LoopRNN(2, 3, 1, nonlinearity="sigmoid", dtype=torch.float64)
    x = torch.randn(1, 4, 2, dtype=torch.float64)
    s = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        out, h_n = loop(x)
        for t in range(4):
            s = torch.sigmoid(loop.weight_ih_l0 @ x[0, t] + loop.bias_ih_l0
                              + loop.weight_hh_l0 @ s + loop.bias_hh_l0)
            torch.testing.assert_close(out[0, t], s)
    torch.testing.assert_close(h_n[0, 0], s)


# --- SequenceModel ---------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_build_shapes(cell, bidirectional):
    cfg = make_cfg(cell=cell, hidden=6, layers=2, bidirectional=bidirectional, dtype="float64")
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    last = models.build(cfg, make_task(input_dim=3, output_dim=1))
    seq = models.build(cfg, make_task(input_dim=3, output_dim=10, per_step=True))
    dirs = 2 if bidirectional else 1
    assert last.head.in_features == 6 * dirs
    assert last(x).shape == (4, 1)
    assert seq(x).shape == (4, 9, 10)
    assert all(p.dtype == torch.float64 for p in last.parameters())
    assert len(last.recurrent_matrices()) == 2 * dirs
    assert all(w.shape == (6 * last.rnn.gate_count, 6) for w in last.recurrent_matrices())
    # last-step readout = head on the last step of the per-step output
    out, _ = last.rnn(x)
    torch.testing.assert_close(last(x), last.head(out[:, -1]))


def test_build_float32_default():
    model = models.build(make_cfg(activation="identity"), make_task())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model(torch.randn(2, 3, 2)).dtype == torch.float32


def test_spectral_radius_definition():
    rnn_model = models.build(make_cfg(hidden=4, dtype="float64"), make_task())
    with torch.no_grad():
        rnn_model.rnn.weight_hh_l0.copy_(torch.diag(torch.tensor([0.5, -2.0, 1.0, 0.1])))
    assert models.spectral_radius(rnn_model) == pytest.approx(2.0)
    lstm_model = models.build(make_cfg(cell="lstm", hidden=3, dtype="float64"), make_task())
    with torch.no_grad():
        w = lstm_model.rnn.weight_hh_l0
        w.zero_()
        for gate, radius in enumerate([0.3, 1.7, 0.2, 0.9]):
            w[gate * 3:(gate + 1) * 3] = radius * torch.eye(3)
    # max over gate blocks, not the radius of the (4H x H) matrix (which has none)
    assert models.spectral_radius(lstm_model) == pytest.approx(1.7)
    assert models.spectral_radius(lstm_model.rnn) == pytest.approx(1.7)
