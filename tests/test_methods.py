"""The methods shipped as plug-ins (methods/indrnn.py, exprnn.py, lru.py), each against its
paper's definition: the forward pass equals the equations computed by hand, the initialisation
is the paper's, and the constraint each method is built on holds after training (IndRNN's
|u| <= 2^{1/T}, expRNN's orthogonal W_hh, the LRU's |λ| < 1). Also the plug-in hook they need
(`after_step`) and the derived recurrent matrix the suite reads (`weight_hh`)."""
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from rnnbench import models, plugins, tasks
from rnnbench.backends import TorchBackend
from rnnbench.init import build_initialised_model
from rnnbench.config import RunConfig
from rnnbench.study import load_study
from rnnbench.train import batch_seed

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(task="adding", T=8, hidden=6, batch_size=8, steps=10, eval_interval=5,
            eval_size=32, optimizer="adam", lr=0.01, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def shipped_methods():
    plugins.load_plugins([ROOT / "methods"], methods_dir=False, env=False, entry_points=False)


def cfg_of(**fields) -> RunConfig:
    return RunConfig.from_dict({**TINY, **fields})


def cell_of(cfg, input_size=3):
    """One instance of cfg.cell in cfg.dtype, drawn from a fixed seed."""
    torch.manual_seed(0)
    stack = models.PluginStack(models.get_cell(cfg.cell).builder, input_size, cfg.hidden, cfg=cfg)
    return stack.cells["l0"].to(models.DTYPES[cfg.dtype])


def train(cfg, steps: int, backend=None) -> TorchBackend:
    task = tasks.make(cfg.task, cfg.T, **cfg.task_options)
    backend = backend or TorchBackend(cfg, task)
    for step in range(steps):
        backend.step(task.sample(cfg.batch_size, batch_seed(cfg.seed, step)))
    return backend


def numpy_of(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


# --- IndRNN ----------------------------------------------------------------------------------
def test_indrnn_forward_is_the_formula():
    cfg = cfg_of(cell="indrnn", dtype="float64")
    cell = cell_of(cfg)
    with torch.no_grad():  # a non-zero bias and some negative u: every term of the formula counts
        cell.bias.normal_()
        cell.recurrent_weight.uniform_(-1, 1)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    W, u, b = numpy_of(cell.weight_ih), numpy_of(cell.recurrent_weight), numpy_of(cell.bias)
    h, expected = np.zeros((4, 6)), []
    for t in range(7):
        h = np.maximum(0.0, x[:, t].numpy() @ W.T + u * h + b)
        expected.append(h)
    np.testing.assert_allclose(numpy_of(cell(x)), np.stack(expected, axis=1), rtol=1e-12,
                               atol=1e-12)


def test_indrnn_initialisation_is_the_papers():
    cfg = cfg_of(cell="indrnn", hidden=4000, T=50)
    cell = cell_of(cfg, input_size=50)
    bound = 2 ** (1 / 50)
    u = numpy_of(cell.recurrent_weight)
    assert u.min() >= 0 and u.max() < bound and u.mean() == pytest.approx(bound / 2, rel=0.05)
    assert numpy_of(cell.weight_ih).std() == pytest.approx(0.001, rel=0.05)
    assert not numpy_of(cell.bias).any()
    # The init schemes touch weight_hh* parameters only: u keeps the paper's draw
    for scheme in ("orthogonal", "identity"):
        a = build_initialised_model(cfg_of(cell="indrnn"), tasks.make("adding", 8))
        b = build_initialised_model(cfg_of(cell="indrnn", init=scheme), tasks.make("adding", 8))
        torch.testing.assert_close(a.rnn.cells.l0.recurrent_weight,
                                   b.rnn.cells.l0.recurrent_weight)


def test_indrnn_recurrent_weights_stay_within_the_bound_after_training(monkeypatch):
    # A large learning rate pushes u past 2^{1/T} within a few steps; the after-step hook
    # clips every instance back (two layers, both directions).
    cfg = cfg_of(cell="indrnn", T=5, layers=2, bidirectional=True, lr=0.3)
    bound = 2 ** (1 / cfg.T)

    def max_abs_u(backend):
        return max(float(c.recurrent_weight.detach().abs().max()) for c in backend.model.rnn.cells.values())

    clipped = train(cfg, 20)
    assert max_abs_u(clipped) <= bound
    assert clipped.spectral_radius() == pytest.approx(
        float(clipped.model.rnn.cells.l0.recurrent_weight.detach().abs().max()))
    monkeypatch.setattr(models.PluginStack, "after_step", lambda self: None)
    assert max_abs_u(train(cfg, 20)) > bound  # without the hook the same run leaves the bound


# --- expRNN ----------------------------------------------------------------------------------
def test_exprnn_forward_is_the_formula():
    cfg = cfg_of(cell="exprnn", dtype="float64")
    cell = cell_of(cfg)
    with torch.no_grad():
        cell.log_recurrent.normal_()
        cell.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    S = np.zeros((6, 6))
    S[np.triu_indices(6, 1)] = numpy_of(cell.log_recurrent)
    W = scipy.linalg.expm(S - S.T)  # computed independently of torch.linalg.matrix_exp
    V, b = numpy_of(cell.weight_ih), numpy_of(cell.bias)
    h, expected = np.zeros((4, 6)), []
    for t in range(7):
        z = h @ W.T + x[:, t].numpy() @ V.T
        h = np.sign(z) * np.maximum(0.0, np.abs(z) + b)
        expected.append(h)
    np.testing.assert_allclose(numpy_of(cell(x)), np.stack(expected, axis=1), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(numpy_of(cell.weight_hh), W, atol=1e-12)


def test_exprnn_henaff_initialisation_is_block_rotations():
    cell = cell_of(cfg_of(cell="exprnn", hidden=7, dtype="float64"))
    W = numpy_of(cell.weight_hh)
    angles = []
    for i in range(3):
        block = W[2 * i:2 * i + 2, 2 * i:2 * i + 2]
        c, s = block[0, 0], block[0, 1]
        np.testing.assert_allclose(block, [[c, s], [-s, c]], atol=1e-12)  # a rotation
        angles.append(math.atan2(s, c))
        W[2 * i:2 * i + 2, 2 * i:2 * i + 2] = 0
    assert W[6, 6] == pytest.approx(1.0)  # odd size: the last unit is left alone
    W[6, 6] = 0
    assert np.abs(W).max() < 1e-12  # nothing outside the blocks
    assert len(set(np.round(angles, 6))) == 3  # drawn, not fixed


def test_exprnn_recurrent_matrix_stays_orthogonal_after_training():
    cfg = cfg_of(cell="exprnn", hidden=16, T=10, lr=0.05)
    backend = TorchBackend(cfg, tasks.make("adding", 10))
    cell = backend.model.rnn.cells.l0
    before = cell.log_recurrent.detach().clone()
    train(cfg, 10, backend)
    assert (cell.log_recurrent.detach() - before).abs().max() > 1e-3  # A moved
    W = cell.weight_hh.detach().double()
    torch.testing.assert_close(W.T @ W, torch.eye(16, dtype=torch.float64), atol=1e-5, rtol=0)
    assert backend.spectral_radius() == pytest.approx(1.0, abs=1e-5)


# --- LRU -------------------------------------------------------------------------------------
def test_lru_eigenvalues_lie_inside_the_unit_circle_for_any_parameters():
    cell = cell_of(cfg_of(cell="lru", hidden=2000, dtype="float64"))
    with torch.no_grad():
        cell.nu_log.copy_(torch.linspace(-30, 30, 2000, dtype=torch.float64))
        cell.theta_log.normal_(0, 5)
    modulus = cell.eigenvalues().abs()
    assert bool((modulus < 1).all()) and bool((modulus >= 0).all())
    cell32 = cell.float()
    with torch.no_grad():
        cell32.nu_log.copy_(torch.linspace(-100, 30, 2000))
    assert bool((cell32.eigenvalues().abs() <= 1).all())  # float32: 1 only once exp(ν) underflows


def test_lru_ring_initialisation_is_the_papers():
    lru = plugins.load_file(ROOT / "methods" / "lru.py")
    cell = cell_of(cfg_of(cell="lru", hidden=4000, dtype="float64"))
    lam = cell.eigenvalues().detach()
    r = lam.abs().numpy()
    assert r.min() >= lru.R_MIN - 1e-6 and r.max() <= lru.R_MAX + 1e-6
    # uniform by area: r^2 is uniform on [r_min^2, r_max^2]
    q = (r ** 2 - lru.R_MIN ** 2) / (lru.R_MAX ** 2 - lru.R_MIN ** 2)
    assert np.quantile(q, [0.25, 0.5, 0.75]) == pytest.approx([0.25, 0.5, 0.75], abs=0.03)
    phase = np.mod(np.angle(lam.numpy()), 2 * np.pi)
    assert phase.mean() == pytest.approx(lru.MAX_PHASE / 2, rel=0.05)
    gamma = torch.exp(cell.gamma_log).detach().numpy()
    np.testing.assert_allclose(gamma, np.sqrt(1 - r ** 2), rtol=1e-5)


def test_lru_recurrence_equals_its_unrolled_sum():
    cell = cell_of(cfg_of(cell="lru", hidden=5, dtype="float64"))
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    lam = cell.eigenvalues().detach().numpy()
    gamma = np.exp(numpy_of(cell.gamma_log))
    B = numpy_of(cell.B_re) + 1j * numpy_of(cell.B_im)
    C = numpy_of(cell.C_re) + 1j * numpy_of(cell.C_im)
    D = numpy_of(cell.D)
    u = x.numpy()
    expected = np.zeros((3, 6, 5))
    for t in range(6):  # x_t = sum_{k <= t} λ^{t-k} γ ⊙ (B u_k)
        state = sum(lam ** (t - k) * gamma * (u[:, k] @ B.T) for k in range(t + 1))
        expected[:, t] = (state @ C.T).real + u[:, t] @ D.T
    np.testing.assert_allclose(numpy_of(cell(x)), expected, rtol=1e-10, atol=1e-12)


def test_lru_spectral_radius_is_the_largest_eigenvalue_modulus():
    backend = TorchBackend(cfg_of(cell="lru"), tasks.make("adding", 8))
    lam = backend.model.rnn.cells.l0.eigenvalues().detach()
    assert backend.spectral_radius() == pytest.approx(float(lam.abs().max()), rel=1e-6)



def test_lru_gradient_flow_is_the_state_gradient_at_every_lag():
    """The LRU returns y_t = Re(C x_t) + D u_t read from its stacked states x_t: the profile is
    ‖∂L/∂x_{T-k}‖ = mean over the batch of ‖|λ|^k ⊙ C^H g‖, g = ∂L/∂y_T by autograd w.r.t. the
    cell's output (x_T = λ^k x_{T-k} + inputs, y_T = Re(C x_T) + D u_T)."""
    import copy

    from rnnbench.tasks.losses import torch_loss
    cfg = cfg_of(cell="lru", hidden=4, T=10)
    task = tasks.make(cfg.task, cfg.T)
    backend = train(cfg, 2)
    batch = task.sample(8, 1, split="test")
    flow = backend.gradflow(batch, "end", 2)["grad_norm"].to_numpy()
    assert len(flow) == cfg.T and np.isfinite(flow).all() and (flow > 0).all()

    probe = copy.deepcopy(backend.model).double()
    output, _, first = probe.rnn.run(torch.as_tensor(batch.x, dtype=torch.float64))
    loss = torch_loss(task.loss_kind, probe.readout(output), batch.y)
    grad_out = torch.autograd.grad(loss, first)[0]
    assert not torch.any(grad_out[:, :-1])  # y_{t-1} does not feed y_t: the states must serve
    cell = probe.rnn.cells.l0
    c = torch.complex(cell.C_re, cell.C_im).detach()
    delta_last = grad_out[:, -1].to(c.dtype) @ c.conj()  # C^H g per sequence
    modulus = cell.eigenvalues().detach().abs()
    expected = [float((modulus ** k * delta_last).abs().norm(dim=-1).mean()) for k in range(cfg.T)]
    np.testing.assert_allclose(flow, expected, rtol=1e-9)


@pytest.mark.parametrize("cell", ["indrnn", "exprnn", "lru"])
def test_gradient_flow_of_each_method_is_finite_at_every_lag(cell):
    cfg = cfg_of(cell=cell)
    task = tasks.make(cfg.task, cfg.T)
    flow = TorchBackend(cfg, task).gradflow(task.sample(16, 3, split="test"), "start", 0)
    assert len(flow) == cfg.T and np.isfinite(flow["grad_norm"]).all()
    assert flow["grad_norm"].iloc[0] > 0

# --- all three in a study --------------------------------------------------------------------
def test_a_study_of_the_three_methods_validates_and_trains():
    study = load_study({"study": "methods", "seeds": 1,
                        "fixed": {**TINY, "steps": 4, "eval_interval": 2},
                        "methods": {"IndRNN": {"cell": "indrnn"}, "expRNN": {"cell": "exprnn"},
                                    "LRU": {"cell": "lru"}}})
    import rnnbench
    for cfg in study.runs():
        s = rnnbench.run(cfg).summary
        assert s["backend_used"] == "torch" and s["steps_done"] == 4
        assert math.isfinite(s["final_eval_loss"]) and not s["diverged"]
