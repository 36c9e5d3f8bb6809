"""The Numba reference kernels against torch autograd, finite differences and known cases.

Compiles 12 kernels (3 cells x forward/backward x 2 dtypes) on a clean Numba cache: roughly
half a minute on 2 cores; cached runs take a few seconds.
"""
from __future__ import annotations

import re
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

import rnnbench.reference as ref
from rnnbench.reference import diagnostics
from rnnbench.reference.lstm import _sigmoid, _tanh

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TORCH_CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
GRAD_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "x", "h0", "c0")
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
               "identity": lambda a: a}
SHAPES = [(5, 3, 4, 6), (7, 2, 6, 3), (1, 4, 2, 5)]   # (T, B, I, H): I > H, I < H, T = 1


def assert_close(actual, expected, rtol, what):
    """Max-norm relative error: |actual - expected|_max <= rtol * |expected|_max."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.abs(expected).max(), 1e-300)
    error = np.abs(actual - expected).max() / scale
    assert error <= rtol, f"{what}: relative error {error:.3g} > {rtol:g}"


def random_case(cell, T, B, I, H, dtype=np.float64, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    params = {"weight_ih": scale * rng.standard_normal((G * H, I)),
              "weight_hh": scale * rng.standard_normal((G * H, H)) / np.sqrt(H),
              "bias_ih": 0.3 * rng.standard_normal(G * H),
              "bias_hh": 0.3 * rng.standard_normal(G * H)}
    params = {k: v.astype(dtype) for k, v in params.items()}
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    c0 = (0.5 * rng.standard_normal((B, H))).astype(dtype) if cell == "lstm" else None
    grad_h = rng.standard_normal((T, B, H)).astype(dtype)
    return params, x, h0, c0, grad_h


def torch_reference(cell, activation, params, x, h0, c0, grad_h):
    """h and every gradient from torch autograd: nn.RNN/LSTM/GRU, or a hand-written loop for
    the rnn activations nn.RNN lacks."""
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x_t = torch.tensor(x, requires_grad=True)
    h0_t = torch.tensor(h0, requires_grad=True)
    c0_t = torch.tensor(c0, requires_grad=True) if c0 is not None else None
    if cell == "rnn" and activation not in ("tanh", "relu"):
        f, h, outs = ACTIVATIONS[activation], h0_t, []
        for t in range(x.shape[0]):
            h = f(x_t[t] @ leaves["weight_ih"].T + leaves["bias_ih"]
                  + h @ leaves["weight_hh"].T + leaves["bias_hh"])
            outs.append(h)
        out = torch.stack(outs)
    else:
        options = {"nonlinearity": activation} if cell == "rnn" else {}
        module = TORCH_CELLS[cell](x.shape[2], h0.shape[1], **options).double()
        # functional_call keeps our leaves in the graph, so autograd differentiates them directly
        weights = {f"{k}_l0": v for k, v in leaves.items()}
        state = (h0_t[None], c0_t[None]) if cell == "lstm" else h0_t[None]
        out, _ = torch.func.functional_call(module, weights, (x_t, state))
    inputs = [leaves[k] for k in ref.PARAM_KEYS] + [x_t, h0_t]
    inputs += [c0_t] if c0_t is not None else []
    grads = torch.autograd.grad(out, inputs, grad_outputs=torch.tensor(grad_h))
    return out.detach().numpy(), dict(zip(GRAD_NAMES, (g.numpy() for g in grads)))


CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_modules_float64(cell, activation, shape):
    seed = 10 * SHAPES.index(shape) + list(GATES).index(cell)
    params, x, h0, c0, grad_h = random_case(cell, *shape, seed=seed)
    h, grads = ref.forward_backward(cell, params, x, h0, grad_h, c0=c0, activation=activation)
    h_torch, grads_torch = torch_reference(cell, activation, params, x, h0, c0, grad_h)
    assert_close(h, h_torch, 1e-10, "h")
    assert set(grads) == set(grads_torch)
    for name in grads_torch:
        assert_close(grads[name], grads_torch[name], 1e-10, name)


@pytest.mark.parametrize("activation", ["sigmoid", "identity", "tanh", "relu"])
def test_rnn_activations_match_hand_written_torch_loop(activation):
    params, x, h0, _, grad_h = random_case("rnn", 6, 3, 4, 5, seed=3)
    h, grads = ref.forward_backward("rnn", params, x, h0, grad_h, activation=activation)
    # the hand-written loop is used for every activation here (it runs for tanh/relu too)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x_t, h0_t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    f, state, outs = ACTIVATIONS[activation], h0_t, []
    for t in range(x.shape[0]):
        state = f(x_t[t] @ leaves["weight_ih"].T + leaves["bias_ih"]
                  + state @ leaves["weight_hh"].T + leaves["bias_hh"])
        outs.append(state)
    out = torch.stack(outs)
    inputs = [leaves[k] for k in ref.PARAM_KEYS] + [x_t, h0_t]
    expected = torch.autograd.grad(out, inputs, grad_outputs=torch.tensor(grad_h))
    assert_close(h, out.detach().numpy(), 1e-10, "h")
    for name, g in zip(GRAD_NAMES, expected):
        assert_close(grads[name], g.numpy(), 1e-10, name)


@pytest.mark.parametrize("cell,activation",
                         CASES + [("rnn", "sigmoid"), ("rnn", "identity")])
def test_central_finite_differences(cell, activation):
    params, x, h0, c0, grad_h = random_case(cell, 4, 2, 3, 3, seed=11)
    _, grads = ref.forward_backward(cell, params, x, h0, grad_h, c0=c0, activation=activation)
    inputs = dict(params, x=x, h0=h0, **({"c0": c0} if c0 is not None else {}))

    def loss(values):
        p = {k: values[k] for k in ref.PARAM_KEYS}
        h = ref.forward(cell, p, values["x"], values["h0"], values.get("c0"), activation)
        return float(np.sum(grad_h * h))

    eps = 1e-6
    for name, value in inputs.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in inputs.items()}
            minus = {k: v.copy() for k, v in inputs.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric[index] = (loss(plus) - loss(minus)) / (2 * eps)
        assert_close(grads[name], numeric, 1e-6, f"{cell}/{activation} d{name}")


@pytest.mark.parametrize("cell,activation", CASES + [("rnn", "sigmoid")])
def test_float32_matches_float64(cell, activation):
    params, x, h0, c0, grad_h = random_case(cell, 30, 4, 5, 16, seed=5)
    h64, g64 = ref.forward_backward(cell, params, x, h0, grad_h, c0=c0, activation=activation)
    as32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    h32, g32 = ref.forward_backward(cell, {k: as32(v) for k, v in params.items()}, as32(x),
                                    as32(h0), as32(grad_h), c0=as32(c0), activation=activation)
    assert h32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
    assert_close(h32, h64, 1e-4, "h")
    for name in g64:
        assert_close(g32[name], g64[name], 1e-4, name)


# (B, H): full 4x16 tiles only; then edges of the float32 LSTM's GEMM: rows (B not a multiple
# of 4), columns (4H or H not a multiple of 16), both, and fewer columns than one panel
LSTM_F32_SHAPES = [(4, 16), (6, 16), (4, 50), (9, 40), (3, 5)]


@pytest.mark.parametrize("B,H", LSTM_F32_SHAPES)
def test_float32_lstm_matches_float64_at_tile_edges(B, H):
    params, x, h0, c0, grad_h = random_case("lstm", 12, B, 3, H, seed=B + H)
    h64, g64 = ref.forward_backward("lstm", params, x, h0, grad_h, c0=c0)
    as32 = lambda a: a.astype(np.float32)  # noqa: E731
    h32, g32 = ref.forward_backward("lstm", {k: as32(v) for k, v in params.items()}, as32(x),
                                    as32(h0), as32(grad_h), c0=as32(c0))
    assert_close(h32, h64, 1e-4, "h")
    for name in g64:
        assert_close(g32[name], g64[name], 1e-4, name)


@pytest.mark.parametrize("M,K,N", [(8, 7, 32), (5, 9, 40), (3, 4, 7), (13, 20, 16), (4, 1, 17)])
def test_float32_gemm_tile_covers_every_edge(M, K, N):
    """c += a·w through the register tile, also where M % 4 or N % 16 leave an edge; nothing
    is written outside c (c is a view into a buffer with guard values on both sides)."""
    from rnnbench.reference.lstm import _gemm_acc, _pack_panels
    rng = np.random.default_rng(M * K * N)
    a, w = (rng.standard_normal(s).astype(np.float32) for s in ((M, K), (K, N)))
    guard = 64
    buffer = np.full(M * N + 2 * guard, 7.0, dtype=np.float32)
    c = buffer[guard:guard + M * N].reshape(M, N)
    c[...] = rng.standard_normal((M, N))
    expected = c.astype(np.float64) + a.astype(np.float64) @ w.astype(np.float64)
    _gemm_acc(c, a, _pack_panels(w))
    assert_close(c, expected, 1e-5, "c")
    assert (buffer[:guard] == 7.0).all() and (buffer[guard + M * N:] == 7.0).all()


def test_forward_states_and_backward_api():
    params, x, h0, c0, grad_h = random_case("lstm", 5, 2, 3, 4)
    states = ref.forward_states("lstm", params, x, h0, c0)
    assert states.h.shape == states.c.shape == (5, 2, 4) and states.gates.shape == (5, 2, 16)
    np.testing.assert_array_equal(ref.forward("lstm", params, x, h0, c0), states.h)
    grads = ref.backward(states, grad_h, return_dh=True)
    _, plain = ref.forward_backward("lstm", params, x, h0, grad_h, c0=c0)
    for name in plain:
        np.testing.assert_array_equal(grads[name], plain[name])
    np.testing.assert_array_equal(grads["dh"][-1], grad_h[-1])   # last step: external only
    # default initial states are zeros, as in torch
    h_default = ref.forward("lstm", params, x, None)
    np.testing.assert_array_equal(h_default, ref.forward("lstm", params, x, 0 * h0, 0 * c0))


def _bad_input_cases():
    params, x, h0, c0, grad_h = random_case("lstm", 3, 2, 3, 4)
    base = dict(cell="lstm", params=params, x=x, h0=h0, c0=c0, grad_h=grad_h, activation="tanh")

    def with_params(**changes):
        p = dict(params)
        for k, v in changes.items():
            if v is None:
                del p[k]
            else:
                p[k] = v
        return p

    return [
        ("cell", dict(base, cell="elman")),
        ("activation", dict(base, cell="rnn", params=random_case("rnn", 3, 2, 3, 4)[0],
                            c0=None, activation="softsign")),
        ("activation", dict(base, activation="relu")),                    # lstm takes none
        ("x", dict(base, x=x.astype(np.int64))),
        ("x", dict(base, x=x[0])),
        ("params", dict(base, params=with_params(bias_hh=None))),
        ("params", dict(base, params=dict(params, weight_ih_l0=params["weight_ih"]))),
        ("params", dict(base, params=[params["weight_ih"]])),
        ("weight_hh", dict(base, params=with_params(weight_hh=params["weight_hh"][:, :3]))),
        ("weight_ih", dict(base, params=with_params(weight_ih=params["weight_ih"][:, :2]))),
        ("weight_ih", dict(base, params=with_params(
            weight_ih=params["weight_ih"].astype(np.float32)))),
        ("bias_ih", dict(base, params=with_params(bias_ih=params["bias_ih"][:-1]))),
        ("h0", dict(base, h0=h0[:1])),
        ("h0", dict(base, h0=h0.astype(np.float32))),
        ("c0", dict(base, c0=c0.T)),
        ("c0", dict(base, cell="gru", params=random_case("gru", 3, 2, 3, 4)[0])),
        ("grad_h", dict(base, grad_h=grad_h[:-1])),
        ("grad_h", dict(base, grad_h=grad_h.astype(np.float32))),
    ]


@pytest.mark.parametrize("argument,call", _bad_input_cases())
def test_bad_inputs_raise_value_error_naming_the_argument(argument, call):
    with pytest.raises(ValueError, match=re.escape(argument)):
        ref.forward_backward(call["cell"], call["params"], call["x"], call["h0"], call["grad_h"],
                             c0=call["c0"], activation=call["activation"])


# --- diagnostics ---------------------------------------------------------------------------

def _orthogonal(H, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((H, H)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("a", [0.9, 1.0, 1.1])
def test_identity_rnn_jacobian_norm_is_a_to_the_k(a):
    params, x, h0, _, _ = random_case("rnn", 40, 3, 2, 5, seed=2)
    params["weight_hh"] = a * _orthogonal(5, seed=4)
    profile = ref.jacobian_profile("rnn", params, x, h0, activation="identity")
    k = np.arange(40)
    np.testing.assert_allclose(profile["jacobian_norm"], a ** k, rtol=1e-10)
    np.testing.assert_allclose(profile["bound"], a ** k, rtol=1e-10)   # beta_W = a, beta_f = 1
    # grad at lag k = g (aQ)^k: its norm is a^k ||g|| = a^k for the default unit g
    np.testing.assert_allclose(profile["grad_norm"], a ** k, rtol=1e-10)
    assert np.isnan(profile["forget_product"]).all()
    np.testing.assert_array_equal(profile["lag"], k)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_grad_profile_at_lag_zero_is_the_given_gradient_norm(cell):
    params, x, h0, c0, _ = random_case(cell, 12, 3, 2, 4, seed=6)
    g = np.random.default_rng(1).standard_normal((3, 4))
    profile = ref.jacobian_profile(cell, params, x, h0, c0, grad_last=g)
    assert profile["grad_norm"][0] == pytest.approx(np.linalg.norm(g, axis=1).mean(), rel=1e-12)
    assert profile["jacobian_norm"][0] == pytest.approx(1.0)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_bound_dominates_measured_jacobian_norm(activation):
    params, x, h0, _, _ = random_case("rnn", 60, 4, 3, 6, seed=8, scale=1.5)
    profile = ref.jacobian_profile("rnn", params, x, h0, activation=activation)
    assert np.all(profile["jacobian_norm"] <= profile["bound"] * (1 + 1e-10))
    # with the unit default dL/dh_T, ||dL/dh_{T-k}|| <= ||dh_T/dh_{T-k}|| for every sample
    assert np.all(profile["grad_norm"] <= profile["jacobian_norm"] * (1 + 1e-10))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_jacobian_products_agree_with_bptt(cell):
    """Row j of dh_T/dh_{T-k} must equal the BPTT gradient of L = h_T[j]: an independent check
    of the hand-derived step Jacobians against the torch-validated backward kernels."""
    T, B, H = 6, 2, 3
    params, x, h0, c0, _ = random_case(cell, T, B, 2, H, seed=9, scale=1.0)
    states = ref.forward_states(cell, params, x, h0, c0)
    products = list(diagnostics.jacobian_product_rows(states))
    for j in range(H):
        grad_h = np.zeros((T, B, H))
        grad_h[-1, :, j] = 1.0
        dh = ref.backward(states, grad_h, return_dh=True)["dh"]
        for k, rows, log_scale in products:
            exact = rows[:, j, :H] * np.exp(log_scale)[:, None]
            np.testing.assert_allclose(exact, dh[T - 1 - k], rtol=1e-9, atol=1e-13)


def test_lstm_forget_product_follows_the_forget_gates():
    params, x, h0, c0, _ = random_case("lstm", 10, 3, 2, 4, seed=10)
    params["bias_hh"][4:8] += 2.0                              # forget bias: gates near 1
    profile = ref.jacobian_profile("lstm", params, x, h0, c0)
    forget = ref.forward_states("lstm", params, x, h0, c0).gates[:, :, 4:8]
    expected = [1.0] + [np.prod(forget[10 - k:], axis=0).mean() for k in range(1, 10)]
    np.testing.assert_allclose(profile["forget_product"], expected, rtol=1e-12)
    assert np.isnan(profile["bound"]).all()


def test_exploding_products_give_inf_not_nan():
    params, x, h0, _, _ = random_case("rnn", 1100, 2, 2, 3, seed=12)
    params["weight_hh"] = 2.0 * _orthogonal(3, seed=1)
    profile = ref.jacobian_profile("rnn", params, x, h0, activation="identity")
    # (grad_norm comes from plain float64 BPTT, which overflows to inf/NaN here: not checked)
    assert not np.isnan(profile["jacobian_norm"]).any() and not np.isnan(profile["bound"]).any()
    assert profile["jacobian_norm"][-1] == np.inf and profile["bound"][-1] == np.inf
    np.testing.assert_allclose(profile["jacobian_norm"][:1000], 2.0 ** np.arange(1000), rtol=1e-9)


# --- the fast jacobian_norm (Numba kernel, certified Lanczos) against the numpy reference ---

RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
CELL_ACTIVATIONS = [("rnn", a) for a in RNN_ACTIVATIONS] + [("lstm", "tanh"), ("gru", "tanh")]


def both_profiles(cell, params, x, h0, c0=None, activation="tanh"):
    fast = ref.jacobian_profile(cell, params, x, h0, c0, activation=activation)
    reference = ref.jacobian_profile(cell, params, x, h0, c0, activation=activation,
                                     method="numpy")
    return fast, reference


def assert_same_profile(fast, reference):
    """jacobian_norm to 1e-10 (inf, 0 and NaN in the same places); the other columns come from
    the same code for both methods, so they are identical."""
    for column in ("lag", "grad_norm", "bound", "forget_product"):
        np.testing.assert_array_equal(fast[column], reference[column], err_msg=column)
    np.testing.assert_allclose(fast["jacobian_norm"], reference["jacobian_norm"], rtol=1e-10,
                               atol=0, err_msg="jacobian_norm")


def scaled_case(cell, radius, T=80, B=4, I=3, H=16, seed=0, orthogonal=False):
    """Random inputs whose recurrent gate blocks have spectral radius `radius` (products that
    vanish, stay or explode), or are radius × an orthogonal matrix (all singular values of a
    block equal: nearly equal top singular values of the products)."""
    params, x, h0, c0, _ = random_case(cell, T, B, I, H, seed=seed)
    blocks = []
    for g in range(GATES[cell]):
        if orthogonal:
            block = _orthogonal(H, seed=seed + 10 * g)
        else:
            block = np.random.default_rng([seed, g]).standard_normal((H, H))
            block /= np.abs(np.linalg.eigvals(block)).max()
        blocks.append(radius * block)
    params["weight_hh"] = np.concatenate(blocks)
    return params, x, h0, c0


@pytest.mark.parametrize("radius", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("cell,activation", CELL_ACTIVATIONS)
def test_fast_jacobian_norm_equals_the_reference(cell, activation, radius):
    params, x, h0, c0 = scaled_case(cell, radius, seed=3)
    assert_same_profile(*both_profiles(cell, params, x, h0, c0, activation))


@pytest.mark.parametrize("radius", [0.9, 1.1])
@pytest.mark.parametrize("cell,activation", CELL_ACTIVATIONS)
def test_fast_jacobian_norm_with_nearly_equal_top_singular_values(cell, activation, radius):
    params, x, h0, c0 = scaled_case(cell, radius, seed=5, orthogonal=True)
    assert_same_profile(*both_profiles(cell, params, x, h0, c0, activation))


def test_fast_jacobian_norm_of_default_init_and_irnn_products():
    """PyTorch's default init (top singular values of the products within 10-25 % of each
    other for all lags) at the diagnostics' size, and the IRNN (relu, W_hh = I: diagonal
    products whose top singular value is many-fold)."""
    params, x, h0, _, _ = random_case("rnn", 100, 8, 2, 32, seed=7)
    bound = 1.0 / np.sqrt(32)
    params["weight_hh"] = np.random.default_rng(8).uniform(-bound, bound, (32, 32))
    assert_same_profile(*both_profiles("rnn", params, x, h0, activation="tanh"))
    params["weight_hh"] = np.eye(32)
    assert_same_profile(*both_profiles("rnn", params, x, h0, activation="relu"))
    counts = np.zeros(4, dtype=np.int64)       # Lanczos stops at once; another proof certifies
    diagnostics._jacobian_norm_numba(ref.forward_states("rnn", params, x, h0, None, "relu"),
                                     counts=counts)
    assert counts[3] > 0 and counts[1] == 0


@pytest.mark.parametrize("a", [0.5, 2.0])
def test_fast_jacobian_norm_underflow_and_overflow_match_the_reference(a):
    """a Q: products vanish to 0 (exp of the log scale underflows) or explode to inf."""
    params, x, h0, _, _ = random_case("rnn", 1100, 2, 2, 3, seed=12)
    params["weight_hh"] = a * _orthogonal(3, seed=1)
    fast, reference = both_profiles("rnn", params, x, h0, activation="identity")
    assert_same_profile(fast, reference)
    assert fast["jacobian_norm"][-1] == (np.inf if a > 1 else 0.0)
    assert not np.isnan(fast["jacobian_norm"]).any()


@pytest.mark.parametrize("H", [1, 2, 5])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fast_jacobian_norm_small_hidden_and_float32(cell, H):
    params, x, h0, c0, _ = random_case(cell, 30, 3, 2, H, dtype=np.float32, seed=H, scale=1.2)
    assert_same_profile(*both_profiles(cell, params, x, h0, c0))


@pytest.mark.parametrize("cell,activation", [("rnn", "tanh"), ("lstm", "tanh"), ("gru", "tanh")])
def test_fast_path_certifies_by_lanczos_and_its_fallbacks_are_exact(cell, activation):
    """The kernel itself answers (no silent hand-back to numpy), mostly by Lanczos; limited
    to one Lanczos step it leans on the Cholesky certificate and the exact solver, with the
    same result."""
    params, x, h0, c0 = scaled_case(cell, 1.0, seed=11)
    states = ref.forward_states(cell, params, x, h0, c0, activation)
    reference = diagnostics._jacobian_norm_numpy(states)
    counts = np.zeros(4, dtype=np.int64)
    np.testing.assert_allclose(diagnostics._jacobian_norm_numba(states, counts=counts),
                               reference, rtol=1e-10)
    lanczos, exact, _, cholesky = counts
    assert lanczos + exact + cholesky == (len(x) - 1) * len(h0) and lanczos > exact + cholesky
    counts[:] = 0
    np.testing.assert_allclose(diagnostics._jacobian_norm_numba(states, max_steps=1,
                                                                counts=counts),
                               reference, rtol=1e-10)
    assert counts[1] > 0


def test_non_finite_products_behave_as_in_the_reference():
    """NaN weights: the kernel hands the profile to the reference, which raises, as before."""
    params, x, h0, _, _ = random_case("rnn", 6, 2, 2, 3, seed=1)
    params["weight_hh"][0, 0] = np.nan
    for method in ("numba", "numpy"):
        with pytest.raises(np.linalg.LinAlgError):
            ref.jacobian_profile("rnn", params, x, h0, method=method)


def test_unknown_method_is_a_value_error():
    params, x, h0, _, _ = random_case("rnn", 4, 2, 2, 3)
    with pytest.raises(ValueError, match="method"):
        ref.jacobian_profile("rnn", params, x, h0, method="svd")


def _symmetric_cases():
    rng = np.random.default_rng(0)
    R = rng.standard_normal((12, 12))
    spread = rng.standard_normal((12, 12)) * np.logspace(0, -8, 12)
    Q = _orthogonal(12, seed=2)
    return {"random": R @ R.T, "graded": spread @ spread.T,
            "rank 3": R[:, :3] @ R[:, :3].T, "zero": np.zeros((12, 12)),
            "repeated top": Q @ np.diag([3.0, 3.0, 3.0] + [1.0] * 9) @ Q.T,
            "close top": Q @ np.diag([3.0, 3.0 - 1e-9] + list(np.linspace(0, 2, 10))) @ Q.T,
            "diagonal": np.diag(rng.uniform(0, 5, 12)),
            "large off-diagonal": np.full((12, 12), 4.0) + np.eye(12),
            "1x1": np.array([[2.5]]), "2x2": np.array([[1.0, 2.0], [2.0, -1.0]])}


@pytest.mark.parametrize("name", list(_symmetric_cases()))
def test_exact_largest_eigenvalue_of_the_fallback(name):
    gram = _symmetric_cases()[name]
    n = len(gram)
    scratch = [np.empty((n, n))] + [np.empty(n) for _ in range(5)]
    top = diagnostics._largest_eigenvalue(gram, *scratch)
    exact = np.linalg.eigvalsh(gram)[-1]
    assert abs(top - exact) <= 1e-13 * max(np.abs(gram).max(), 1e-300) + 1e-300


@pytest.mark.parametrize("name", ["random", "graded", "rank 3", "repeated top", "close top"])
def test_lanczos_value_is_a_certified_lower_bound(name):
    """A certified value L satisfies L ≤ λ_max ≤ L(1 + rtol) (rounding aside); where the
    certificate fails, −L is still a lower bound."""
    w, V = np.linalg.eigh(_symmetric_cases()[name])
    R = np.ascontiguousarray(V * np.sqrt(np.clip(w, 0, None)) @ _orthogonal(12, seed=3))
    exact = np.linalg.eigvalsh(R @ R.T)[-1]
    n, steps = 12, 12
    u = np.zeros(n)
    u[0] = 1.0
    scratch = dict(basis=np.empty((steps + 1, n)), images=np.empty((steps, n)),
                   alpha=np.empty(steps), beta=np.empty(steps), ritz=np.empty(steps),
                   pivots=np.empty(steps), w=np.empty(n), scratch=np.empty(n))
    value = diagnostics._lanczos_top_eigenvalue(
        R, (R * R).sum(), u, scratch["basis"], scratch["images"], scratch["alpha"],
        scratch["beta"], scratch["ritz"], scratch["pivots"], scratch["w"], scratch["scratch"],
        steps, np.zeros(4, dtype=np.int64))
    if value > 0:
        assert value <= exact * (1 + 1e-13)
        assert exact <= value * (1 + diagnostics.EIGENVALUE_RTOL) * (1 + 1e-13)
    else:
        assert -value <= exact * (1 + 1e-13)


# --- the vectorised elementwise math -------------------------------------------------------

def test_elementwise_math_block_is_identical_in_every_cell_file():
    folder = Path(ref.__file__).parent
    pattern = re.compile(r"# --- elementwise math.*?# --- end of the elementwise math block",
                         re.S)
    blocks = {name: pattern.search((folder / f"{name}.py").read_text()).group(0)
              for name in ("rnn", "lstm", "gru")}
    assert blocks["rnn"] == blocks["lstm"] == blocks["gru"]


@numba.njit(error_model="numpy")
def _apply_tanh_sigmoid(values, tanh_out, sigmoid_out):
    one = values.dtype.type(1.0)
    for i in range(values.size):
        tanh_out[i] = _tanh(values[i], one)
        sigmoid_out[i] = _sigmoid(values[i], one)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_tanh_and_sigmoid_are_accurate(dtype):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(4000) * s
                             for s in (1e-9, 1e-3, 0.05, 0.1, 0.5, 2, 10, 100)]).astype(dtype)
    tanh_out, sigmoid_out = np.empty_like(values), np.empty_like(values)
    _apply_tanh_sigmoid(values, tanh_out, sigmoid_out)
    wide = values.astype(np.longdouble)
    exact_tanh = np.tanh(wide)
    exact_sigmoid = 1 / (1 + np.exp(-wide))
    ulp = lambda e: np.spacing(np.abs(e).astype(dtype))  # noqa: E731
    assert np.all(np.abs(tanh_out - exact_tanh) <= 4 * ulp(exact_tanh))
    mask = exact_sigmoid > np.finfo(dtype).tiny * 1e6          # away from denormal underflow
    assert np.all(np.abs(sigmoid_out - exact_sigmoid)[mask] <= 4 * ulp(exact_sigmoid)[mask])
    special = np.array([np.nan, np.inf, -np.inf, 0.0], dtype)
    t, s = np.empty_like(special), np.empty_like(special)
    _apply_tanh_sigmoid(special, t, s)
    assert np.isnan(t[0]) and np.isnan(s[0])
    np.testing.assert_array_equal(t[1:], [1, -1, 0])
    np.testing.assert_array_equal(s[1:], [1, 0, 0.5])


def test_blas_threads_context_limits_and_restores():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with ref.blas_threads(1):
        inside = [d["num_threads"] for d in threadpoolctl.threadpool_info()
                  if d["user_api"] == "blas"]
    assert inside and all(n == 1 for n in inside)


def test_backward_scratch_reuse_does_not_leak_into_results():
    """The δ work array is reused between calls: earlier gradients must stay intact."""
    params, x, h0, c0, grad_h = random_case("gru", 5, 2, 3, 4)
    _, first = ref.forward_backward("gru", params, x, h0, grad_h)
    kept = {k: v.copy() for k, v in first.items()}
    ref.forward_backward("gru", params, 2 * x, h0, -grad_h)
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name])


def test_benchmark_prints_both_torch_paths_for_the_float32_lstm(capsys):
    """The speed table's smoke run: every row timed; oneDNN-off torch only where torch uses it."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_reference.py"
    runpy.run_path(str(script))["main"](
        ["--quick", "--cells", "rnn,lstm", "--hidden", "16", "--lengths", "5", "--batch", "4"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| rnn") or line.startswith("| lstm")]
    assert len(rows) == 4
    for cell, dtype, H, T, numba_ms, torch_ms, ratio, native_ms, native_ratio in (
            [field.strip() for field in row] for row in rows):
        assert (H, T) == ("16", "5") and float(numba_ms) > 0 and float(torch_ms) > 0
        assert float(ratio) > 0
        if (cell, dtype) == ("lstm", "float32"):
            assert float(native_ms) > 0 and float(native_ratio) > 0
        else:
            assert native_ms == native_ratio == "="
