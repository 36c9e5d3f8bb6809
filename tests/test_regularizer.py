"""Pascanu 2013's regulariser Omega (rnnbench.regularizer): its value against a hand BPTT in
numpy, its gradient against finite differences, the training step that adds alpha * Omega on
both backends (the Numba backend's written-out gradient against torch's autograd and the hand
computation), and the configurations it refuses."""
import numpy as np
import pytest
import torch

import rnnbench
from rnnbench import tasks
from rnnbench.backends import TorchBackend, resolve_backend
from rnnbench.init import build_initialised_model
from rnnbench.config import RunConfig
from rnnbench.ensemble import can_ensemble
from rnnbench.backends.numba_backend import NumbaBackend
from rnnbench.regularizer import loss_and_omega, omega, omega_and_grad
from rnnbench.tasks.losses import loss_grad, numpy_loss

SLOPE = {"tanh": lambda h, net: 1.0 - h * h, "relu": lambda h, net: (net > 0) * 1.0,
         "identity": lambda h, net: np.ones_like(h)}
ACT = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0), "identity": lambda z: z}


def tiny(task="adding", T=6, activation="tanh", **fields):
    cfg = RunConfig(**{"task": task, "T": T, "hidden": 4, "activation": activation,
                       "dtype": "float64", "batch_size": 3, "backend": "torch",
                       "regularizer": 2.0, "init": "normal", "init_scale": 0.6, **fields})
    return cfg, tasks.make(task, T)


def hand_omega(cfg, task, batch):
    """E, Omega and dOmega/dW_hh by hand: forward, BPTT and eq. 9's ratios in numpy."""
    model = build_initialised_model(cfg, task)
    p = {k: v.detach().numpy() for k, v in model.named_parameters()}
    w_ih, w_hh = p["rnn.weight_ih_l0"], p["rnn.weight_hh_l0"]
    b = p["rnn.bias_ih_l0"] + p["rnn.bias_hh_l0"]
    head_w, head_b = p["head.weight"], p["head.bias"]
    x = batch.x.astype(np.float64)
    B, L, _ = x.shape
    f = ACT[cfg.activation]
    h, hs, nets = np.zeros((B, w_hh.shape[0])), [], []
    for t in range(L):
        net = x[:, t] @ w_ih.T + h @ w_hh.T + b
        h = f(net)
        hs.append(h)
        nets.append(net)
    hs, nets = np.stack(hs, 1), np.stack(nets, 1)
    out = hs @ head_w.T + head_b if task.per_step else hs[:, -1] @ head_w.T + head_b
    loss = numpy_loss(task.loss_kind, out, batch.y)
    d_out = np.asarray(loss_grad(task.loss_kind, out, batch.y)).reshape(out.shape)
    direct = np.zeros_like(hs)                      # dE/dh_t through the readout alone
    if task.per_step:
        direct[:] = d_out @ head_w
    else:
        direct[:, -1] = d_out @ head_w
    slope = SLOPE[cfg.activation](hs, nets)
    g = np.zeros_like(hs)
    carried = np.zeros((B, hs.shape[2]))
    for t in range(L - 1, -1, -1):                  # g_t = direct_t + (g_{t+1} f'_{t+1}) W_hh
        g[:, t] = direct[:, t] + carried
        carried = (g[:, t] * slope[:, t]) @ w_hh
    u = g * slope
    v = u @ w_hh
    norm_g, norm_v = np.linalg.norm(g, axis=2), np.linalg.norm(v, axis=2)
    valid = norm_g ** 2 >= 1e-20                    # steps with no error are left out (0/0)
    r = norm_v[valid] / norm_g[valid]
    value = np.mean((r - 1.0) ** 2)
    # dOmega/dW = mean over valid (b, t) of 2 (r - 1) / ||g|| * outer(u, v / ||v||)
    coef = np.zeros_like(norm_g)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef[valid] = np.where(norm_v[valid] > 0,
                               2.0 * (r - 1.0) / norm_g[valid] / norm_v[valid], 0.0) / r.size
    grad_w = np.einsum("bt,bti,btj->ij", coef, u, v)
    return loss, value, grad_w


@pytest.mark.parametrize("task,T,activation", [("adding", 6, "tanh"), ("temporal_order", 10, "relu"),
                                               ("copy", 2, "identity")])
def test_omega_equals_hand_computation(task, T, activation):
    cfg, t = tiny(task, T, activation)
    batch = t.sample(cfg.batch_size, 7)
    model = build_initialised_model(cfg, t)
    y = torch.as_tensor(batch.y, dtype=torch.float64 if t.loss_kind == "mse" else torch.long)
    loss, value = loss_and_omega(model, torch.as_tensor(batch.x, dtype=torch.float64), y,
                                 t.loss_kind)
    want_loss, want_omega, _ = hand_omega(cfg, t, batch)
    assert loss.item() == pytest.approx(want_loss, rel=1e-12)
    assert value.item() == pytest.approx(want_omega, rel=1e-10)
    assert value.item() > 1e-3  # a case where Omega is not trivially zero


def test_omega_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)
    g[0, 2] = 0.0                                    # a step with no error is left out
    slope = torch.rand(3, 5, 4, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: omega(g, slope, w), (w,), eps=1e-6, atol=1e-8)
    # the left-out step contributes nothing: Omega equals the mean over the other 14 terms
    r = torch.linalg.vector_norm((g * slope) @ w, dim=-1) / torch.linalg.vector_norm(g, dim=-1)
    keep = torch.ones(3, 5, dtype=torch.bool)
    keep[0, 2] = False
    assert omega(g, slope, w).item() == pytest.approx(((r[keep] - 1) ** 2).mean().item())


def test_numpy_omega_and_gradient_equal_torchs_autograd():
    """omega_and_grad (the Numba backend's) against `omega` and its autograd gradient, with a
    step whose error is zero (left out) and one whose vector-Jacobian product is zero."""
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)
    g[0, 2] = 0.0
    slope = torch.rand(3, 5, 4, generator=gen, dtype=torch.float64)
    slope[1, 3] = 0.0                                # |v| = 0: norm's gradient is taken as 0
    w = torch.randn(4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    value = omega(g, slope, w)
    grad_w, = torch.autograd.grad(value, w)
    want_value, want_grad = value.item(), grad_w.numpy()
    for layout in (lambda a: a, lambda a: a.transpose(1, 0, 2).copy()):  # (B, L) or (L, B)
        got_value, got_grad = omega_and_grad(layout(g.numpy()), layout(slope.numpy()),
                                             w.detach().numpy())
        assert got_value == pytest.approx(want_value, rel=1e-13)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-12, atol=1e-15)


def test_numpy_omega_in_float32_equals_float64_to_rounding():
    """The Numba backend's float32 Omega and gradient, with a vanishing error (|g| about 1e-9,
    still a term) and a product whose norm underflows (left out of the gradient, as in torch):
    float64's to float32 rounding, in float32, finite."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((2, 3, 4))
    g[0, 1] *= 1e-9
    slope = rng.random((2, 3, 4))
    slope[0, 1] *= 1e-26
    w = rng.standard_normal((4, 4))
    want_value, want_grad = omega_and_grad(g, slope, w)
    value, grad = omega_and_grad(g.astype(np.float32), slope.astype(np.float32),
                                 w.astype(np.float32))
    assert grad.dtype == np.float32 and np.isfinite(grad).all()
    assert value == pytest.approx(want_value, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6 * np.abs(want_grad).max())


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("task,T", [("adding", 6), ("copy", 2)])   # error at the last / every step
def test_step_descends_loss_plus_alpha_omega(backend, task, T):
    """One SGD step (lr 1, float64): W_hh moves by dE/dW + alpha dOmega/dW (Omega's gradient
    by hand), every other parameter by dE alone (Omega depends on W_hh only)."""
    cfg, t = tiny(task, T, optimizer="sgd", lr=1.0, clip="none", backend=backend)
    batch = t.sample(cfg.batch_size, 3)
    make = TorchBackend if backend == "torch" else NumbaBackend
    plain = make(cfg.replace(regularizer=0.0), t)
    regularised = make(cfg, t)
    before = _weights(regularised)
    plain.step(batch)
    loss, _, _ = regularised.step(batch)
    after_plain, after = _weights(plain), _weights(regularised)
    _, _, grad_w = hand_omega(cfg, t, batch)
    assert np.abs(grad_w).max() > 1e-4  # Omega's gradient is not negligible here
    for name in before:
        step, plain_step = before[name] - after[name], before[name] - after_plain[name]
        extra = cfg.regularizer * grad_w if name == "weight_hh" else 0.0
        np.testing.assert_allclose(step, plain_step + extra, rtol=1e-9, atol=1e-12, err_msg=name)
    assert loss == pytest.approx(hand_omega(cfg, t, batch)[0], rel=1e-12)  # E, not E + aOmega


def _weights(backend) -> dict:
    """A backend's parameters as numpy copies under the Numba backend's names."""
    if isinstance(backend, NumbaBackend):
        return {k: v.copy() for k, v in backend.params.items()}
    names = {"rnn.weight_ih_l0": "weight_ih", "rnn.weight_hh_l0": "weight_hh",
             "rnn.bias_ih_l0": "bias_ih", "rnn.bias_hh_l0": "bias_hh",
             "head.weight": "head_weight", "head.bias": "head_bias"}
    return {names[k]: v.detach().numpy().copy() for k, v in backend.model.named_parameters()}


@pytest.mark.parametrize("activation,optimizer,clip", [("tanh", "sgd", "norm"),
                                                       ("relu", "adam", "norm"),
                                                       ("sigmoid", "rmsprop", "none")])
def test_numba_learning_curve_with_omega_equals_torch_float64(activation, optimizer, clip):
    """A regularised run on each backend, float64: the same learning curve to rounding."""
    cfg, _ = tiny(activation=activation, optimizer=optimizer, clip=clip, clip_threshold=0.05,
                  lr=0.05 if optimizer == "sgd" else 0.01, steps=60, eval_interval=20,
                  eval_size=32)
    a = rnnbench.run(cfg.replace(backend="torch")).curve
    b = rnnbench.run(cfg.replace(backend="numba")).curve
    assert len(a) == len(b) == 61
    for column in ("train_loss", "eval_loss", "grad_norm"):
        np.testing.assert_allclose(b[column], a[column], rtol=1e-8, atol=1e-12, err_msg=column)
    assert (a["clipped"] == b["clipped"]).all()


def test_auto_backend_is_numba_on_the_cpu_and_a_run_trains():
    cfg, _ = tiny(steps=5, eval_interval=5, eval_size=16)
    assert resolve_backend(cfg.replace(backend="auto", device="cpu")) == "numba"
    assert resolve_backend(cfg.replace(backend="auto", device="cpu", regularizer=0.0)) == "numba"
    s = rnnbench.run(cfg.replace(backend="auto", device="cpu")).summary
    assert s["backend_used"] == "numba" and s["regularizer"] == 2.0 and s["steps_done"] == 5
    assert not can_ensemble(cfg)





def test_run_id_unchanged_while_off():
    """Runs without Omega keep the ids they had before the field existed."""
    import hashlib
    import json
    from rnnbench.config import ID_WHILE_ON
    cfg = RunConfig()
    old = {k: v for k, v in cfg.to_dict().items() if k not in ID_WHILE_ON}
    blob = json.dumps(old, sort_keys=True, default=str)
    assert cfg.run_id() == hashlib.sha1(blob.encode()).hexdigest()[:12]
    assert cfg.replace(regularizer=2.0).run_id() != cfg.run_id()


def test_chunk_estimate_counts_the_loop_over_time_on_torch():
    """The chunk planner prices Omega's per-time-step autograd loop on torch, not just its
    FLOPs; on the Numba backend only its two H x H products per step and sequence."""
    from rnnbench.chunks import FLOPS_PER_SECOND, LOOP_S_PER_TIMESTEP, estimate_seconds
    cfg = RunConfig(task="adding", T=100, hidden=50, steps=1000, batch_size=20)
    on_torch = cfg.replace(backend="torch")
    extra = estimate_seconds(on_torch.replace(regularizer=2.0)) - estimate_seconds(on_torch)
    assert extra == pytest.approx(1000 * 100 * LOOP_S_PER_TIMESTEP)
    extra = estimate_seconds(cfg.replace(regularizer=2.0)) - estimate_seconds(cfg)
    assert extra == pytest.approx(1000 * 20 * 100 * 4 * 50 ** 2 / FLOPS_PER_SECOND)
