"""Task generators against their definitions and analytic baselines (docs/science/tasks.md §2)."""
import math

import numpy as np
import pytest
import torch

from rnnbench import tasks
from rnnbench.tasks import digits as digits_module
from rnnbench.tasks import losses

ALL = ["adding", "adding_hs97", "adding_pascanu", "copy", "digits", "digits_permuted", "latch",
       "memorization", "multiplication", "permutation", "temporal_order", "temporal_order_3bit"]
VARIABLE = ["adding_pascanu", "multiplication", "temporal_order", "temporal_order_3bit", "permutation"]
N = 20_000  # sequences for the baseline checks


def small(name, **options):
    """A short instance of every task (HS97 needs T >= 20, digits T = 64)."""
    return tasks.make(name, 64 if name.startswith("digits") else 20, **options)


def within(observed, expected, se, k=4.0):
    return abs(observed - expected) <= k * se + 1e-6  # slack: targets are float32


def batches(task, n, chunk=5000, split="train"):
    """n sequences in chunks (long one-hot tasks would not fit in one batch)."""
    for seed in range(n // chunk):
        yield task.sample(chunk, seed=1000 + seed, split=split)


# --- the registry and the contract ------------------------------------------------------------

def test_names_are_the_twelve_tasks_sorted():
    assert tasks.names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_sample_shapes_dtypes_and_attributes(name):
    task = small(name)
    assert task.name == name and task.description and task.options["solve_threshold"] > 0
    assert task.loss_kind in ("mse", "ce", "ce_seq")
    assert task.per_step == (task.loss_kind == "ce_seq")
    assert np.isfinite(task.baseline_loss) and 0 < task.baseline_error <= 1
    x, y = task.sample(7, seed=3)
    B, L, D = x.shape
    assert (B, D) == (7, task.input_dim) and task.T <= L <= task.max_length
    assert x.dtype == np.float32 and np.isfinite(x).all()
    if task.loss_kind == "mse":
        assert task.output_dim == 1 and y.shape == (7,) and y.dtype == np.float32
    elif task.loss_kind == "ce":
        assert y.shape == (7,) and y.dtype == np.int64
        assert 0 <= y.min() and y.max() < task.output_dim
    else:
        assert y.shape == (7, L) and y.dtype == np.int64
        assert 0 <= y.min() and y.max() < task.output_dim


@pytest.mark.parametrize("name", ALL)
def test_sampling_is_deterministic_and_streams_differ(name):
    task = small(name)
    a, b = task.sample(6, seed=11), task.sample(6, seed=11)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    other_seed, test = task.sample(6, seed=12), task.sample(6, seed=11, split="test")
    for other in (other_seed, test):
        assert a.x.shape != other.x.shape or not np.array_equal(a.x, other.x)


@pytest.mark.parametrize("name", ALL)
def test_lengths_stay_within_max_length_and_reach_it(name):
    task = small(name)
    lengths = {task.sample(1, seed=s).x.shape[1] for s in range(60)}
    assert max(lengths) == task.max_length and min(lengths) >= task.T


@pytest.mark.parametrize("name", VARIABLE)
def test_pascanu_lengths_are_uniform_in_T_to_1_1T(name):
    task = tasks.make(name, 50)
    lengths = {task.sample(1, seed=s).x.shape[1] for s in range(100)}
    assert lengths == set(range(50, 55)) and task.max_length == 54


def test_hs97_lengths_are_T_to_T_plus_T_over_10_inclusive():
    task = tasks.make("adding_hs97", 50)
    lengths = {task.sample(1, seed=s).x.shape[1] for s in range(100)}
    assert lengths == set(range(50, 56)) and task.max_length == 55


def test_fixed_lengths():
    assert tasks.make("adding", 37).sample(2, 0).x.shape[1] == 37
    assert tasks.make("latch", 37).sample(2, 0).x.shape[1] == 37
    assert tasks.make("copy", 100).sample(2, 0).x.shape[1] == 120
    assert tasks.make("memorization", 30, items=4).sample(2, 0).x.shape[1] == 38


# --- analytic baselines on a large sample ---------------------------------------------------

def test_baseline_numbers_match_science_md():
    T100 = {name: tasks.make(name, 100) for name in ALL if not name.startswith("digits")}
    assert T100["adding"].baseline_loss == pytest.approx(1 / 6)
    assert T100["adding_pascanu"].baseline_loss == pytest.approx(1 / 24)
    assert T100["adding_pascanu"].baseline_error == pytest.approx(0.36)
    assert T100["adding_hs97"].baseline_loss == pytest.approx(0.0396, abs=5e-5)
    assert 1 - T100["adding_hs97"].baseline_error == pytest.approx(0.154, abs=5e-4)
    assert T100["multiplication"].baseline_loss == pytest.approx(7 / 144)
    assert T100["temporal_order"].baseline_loss == pytest.approx(math.log(4))
    assert T100["temporal_order"].baseline_error == pytest.approx(0.75)
    assert T100["temporal_order_3bit"].baseline_loss == pytest.approx(math.log(8))
    assert T100["temporal_order_3bit"].baseline_error == pytest.approx(0.875)
    assert T100["permutation"].baseline_loss == pytest.approx(math.log(2))
    assert T100["latch"].baseline_loss == pytest.approx(0.64)
    assert T100["memorization"].baseline_error == pytest.approx(1.0, abs=1e-6)
    for T, value in [(100, 0.1733), (200, 0.0945), (500, 0.0400), (1000, 0.0204)]:
        assert tasks.make("copy", T).baseline_loss == pytest.approx(value, abs=5e-5)


# (name, T, the loss-optimal constant, a constant for the error check)
REGRESSION = [("adding", 50, 1.0, 1.0), ("adding_pascanu", 50, 0.5, 0.5),
              ("adding_hs97", 100, 0.5, 0.5), ("multiplication", 50, 0.25, 0.25),
              ("latch", 20, 0.0, 0.1)]


@pytest.mark.parametrize("name,T,loss_constant,error_constant", REGRESSION)
def test_regression_baselines(name, T, loss_constant, error_constant):
    task = tasks.make(name, T)
    y = np.concatenate([b.y for b in batches(task, N)]).astype(np.float64)
    assert y.shape == (N,)
    squared = (loss_constant - y) ** 2
    assert within(task.loss(np.full(N, loss_constant), y), task.baseline_loss, squared.std() / math.sqrt(N))
    p = task.baseline_error
    observed = task.error(np.full((N, 1), error_constant), y)
    assert within(observed, p, math.sqrt(p * (1 - p) / N))


def test_hs97_baseline_is_distinguished_from_plain_uniform_sum():
    # Without the X1 = 0 rule the constant 0.5 would reach 1/24 = 0.0417, 6 standard errors off.
    task = tasks.make("adding_hs97", 100)
    y = np.concatenate([b.y for b in batches(task, N)]).astype(np.float64)
    squared = (y - 0.5) ** 2
    assert abs(squared.mean() - 1 / 24) > 3 * squared.std() / math.sqrt(N)


@pytest.mark.parametrize("name", ["temporal_order", "temporal_order_3bit", "permutation",
                                  "digits", "digits_permuted"])
def test_classification_baselines(name):
    task = small(name)
    y = np.concatenate([b.y for b in batches(task, N, chunk=2000)])
    freq = np.bincount(y, minlength=task.output_dim) / N
    if name.startswith("digits"):
        train = task.labels[task.split_index["train"]]
        prior = np.bincount(train, minlength=10) / len(train)
    else:
        prior = np.full(task.output_dim, 1 / task.output_dim)
        assert np.all(np.abs(freq - prior) <= 4 * np.sqrt(prior * (1 - prior) / N))
    logits = np.tile(np.log(prior), (N, 1))
    per_sequence = -np.log(prior[y])
    assert within(task.loss(logits, y), task.baseline_loss, per_sequence.std() / math.sqrt(N))
    p = task.baseline_error
    assert within(task.error(logits, y), p, math.sqrt(p * (1 - p) / N))


def layout_predictor(task, length):
    """The best input-independent logits of a recall task: blank, then uniform over symbols."""
    items, symbols = task.layout()
    logits = np.full((length, task.output_dim), -1e4)
    logits[: length - items, 0] = 0.0
    logits[length - items:, 1:] = 0.0
    return logits


@pytest.mark.parametrize("name,T,options", [("copy", 100, {}), ("memorization", 30, {})])
def test_recall_baselines(name, T, options):
    task = tasks.make(name, T, **options)
    items, symbols = task.layout()
    losses_, errors, recalled = [], [], []
    for x, y in batches(task, N):
        pred = np.broadcast_to(layout_predictor(task, y.shape[1]), y.shape + (task.output_dim,))
        losses_.append(task.loss(pred, y))
        errors.append(task.error(pred, y))
        recalled.append(y[:, -items:])
    assert np.mean(losses_) == pytest.approx(task.baseline_loss, rel=1e-9)  # exact given the layout
    recalled = np.concatenate(recalled).ravel()
    freq = np.bincount(recalled, minlength=symbols + 1)[1:] / recalled.size
    assert np.all(np.abs(freq - 1 / symbols) <= 4 * math.sqrt((1 / symbols) * (1 - 1 / symbols) / recalled.size))
    p, n = task.baseline_error, (recalled.size if name == "copy" else N)
    assert within(np.mean(errors), p, math.sqrt(p * (1 - p) / n) + 1 / n)


def test_copy_baseline_at_T100():
    assert tasks.make("copy", 100).baseline_loss == pytest.approx(10 * math.log(8) / 120)
    assert round(tasks.make("copy", 100).baseline_loss, 4) == 0.1733


# --- markers, positions, layouts ---------------------------------------------------------------

def marks(x):
    """(B, 2) positions of the two +1 markers, asserting there are exactly two."""
    hits = np.argwhere(x[..., 1] == 1.0)
    assert np.all(np.bincount(hits[:, 0], minlength=len(x)) == 2)
    return hits[:, 1].reshape(len(x), 2)


def test_modern_adding_one_mark_in_each_half():
    x, y = tasks.make("adding", 21).sample(3000, seed=0)
    pos = marks(x)
    assert set(pos[:, 0]) == set(range(10)) and set(pos[:, 1]) == set(range(10, 21))
    rows = np.arange(len(x))
    assert np.array_equal(y, x[rows, pos[:, 0], 0] + x[rows, pos[:, 1], 0])
    assert 0 <= x[..., 0].min() and x[..., 0].max() < 1
    assert set(np.unique(x[..., 1])) == {0.0, 1.0}


@pytest.mark.parametrize("name", ["adding_pascanu", "multiplication"])
def test_pascanu_marks_in_their_windows(name):
    task = tasks.make(name, 60)
    for seed in range(3):
        x, y = task.sample(3000, seed=seed)
        L = x.shape[1]
        pos = marks(x)
        assert set(pos[:, 0]) == set(range(L // 10))          # [0, 0.1L), every step reached
        assert set(pos[:, 1]) == set(range(L // 10, L // 2))  # [0.1L, 0.5L)
        rows = np.arange(len(x))
        a, b = x[rows, pos[:, 0], 0], x[rows, pos[:, 1], 0]
        assert np.array_equal(y, (a + b) / 2 if name == "adding_pascanu" else a * b)


def test_hs97_markers_values_and_target():
    T = 100
    x, y = tasks.make("adding_hs97", T).sample(5000, seed=0)
    value, marker = x[..., 0], x[..., 1]
    assert -1 <= value.min() and value.max() <= 1 and value.min() < -0.99
    assert np.all(marker[:, -1] == -1) and np.all(np.isin(marker[:, 0], [-1, 1]))
    assert set(np.unique(marker[:, 1:-1])) == {0.0, 1.0}
    pos = np.sort(marks(x), axis=1)
    assert pos.max() < T // 2 and pos[:, 0].max() < 10 and np.all(pos[:, 0] < pos[:, 1])
    rows = np.arange(len(x))
    assert np.allclose(y, 0.5 + (value[rows, pos[:, 0]] + value[rows, pos[:, 1]]) / 4, atol=1e-6)
    # a mark on the first step next to one at >= 10 must be X1: its value is zeroed
    x1_first = (pos[:, 0] == 0) & (pos[:, 1] >= 10)
    assert x1_first.sum() > 300 and np.all(value[x1_first, 0] == 0)
    # the first step is marked with probability 0.1 (X1) + 0.9/(T/2 - 1) (X2)
    p = 0.1 + 0.9 / (T // 2 - 1)
    assert within(np.mean(pos[:, 0] == 0), p, math.sqrt(p * (1 - p) / len(x)))


@pytest.mark.parametrize("name", ["temporal_order", "temporal_order_3bit"])
def test_temporal_order_symbols_in_windows(name):
    task = tasks.make(name, 60)
    x, y = task.sample(4000, seed=1)
    L = x.shape[1]
    assert np.all(x.sum(-1) == 1)
    symbols = x.argmax(-1)
    relevant = np.argwhere(symbols < 2)
    k = len(task.windows)
    assert np.all(np.bincount(relevant[:, 0], minlength=len(x)) == k)
    pos = relevant[:, 1].reshape(len(x), k)
    for i, (lo, hi) in enumerate(task.windows):
        assert set(pos[:, i]) == set(range(L * lo // 10, L * hi // 10))
    bits = symbols[np.arange(len(x))[:, None], pos]
    assert np.array_equal(y, (bits * (2 ** np.arange(k))).sum(1))
    assert set(np.unique(symbols)) == set(range(6))


def test_permutation_first_symbol_is_the_target():
    x, y = tasks.make("permutation", 20).sample(2000, seed=0)
    assert np.all(x.sum(-1) == 1)
    symbols = x.argmax(-1)
    assert np.array_equal(symbols[:, 0], y) and set(np.unique(y)) == {0, 1}
    assert symbols[:, 1:].min() == 2 and symbols[:, 1:].max() == 99


@pytest.mark.parametrize("name,T,items,symbols", [("copy", 100, 10, 8), ("memorization", 7, 3, 4)])
def test_recall_layout(name, T, items, symbols):
    options = {"items": items, "values": symbols} if name == "memorization" else {}
    task = tasks.make(name, T, **options)
    assert (task.input_dim, task.output_dim) == (symbols + 2, symbols + 1)
    x, y = task.sample(500, seed=2)
    assert x.shape[1] == T + 2 * items and np.all(x.sum(-1) == 1)
    inputs = x.argmax(-1)
    assert inputs[:, :items].min() == 1 and inputs[:, :items].max() == symbols
    assert np.all(inputs[:, items:T + items - 1] == 0)         # T - 1 blanks
    assert np.all(inputs[:, T + items - 1] == symbols + 1)     # the delimiter / cue
    assert np.all(inputs[:, T + items:] == 0)                  # blanks while recalling
    assert np.all(y[:, :T + items] == 0)
    assert np.array_equal(y[:, T + items:], inputs[:, :items])


def test_latch_class_noise_and_targets():
    x, y = tasks.make("latch", 50).sample(4000, seed=0)
    assert set(np.unique(x[:, 0, 0])) == {-1.0, 1.0}
    assert np.allclose(y, 0.8 * x[:, 0, 0])
    noise = x[:, 1:, 0].astype(np.float64)
    assert within(noise.var(), 0.2, 0.2 * math.sqrt(2 / noise.size)) and abs(noise.mean()) < 0.01
    quiet = tasks.make("latch", 5, noise_var=0).sample(3, seed=0).x
    assert np.all(quiet[:, 1:] == 0)


def test_digits_splits_and_pixels():
    task = tasks.make("digits", 64)
    train, test = task.split_index["train"], task.split_index["test"]
    assert (len(train), len(test)) == (1437, 360)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    x, y = task.sample(len(test), seed=5, split="test")  # one batch of the split size = the split
    assert x.shape == (360, 64, 1) and 0 <= x.min() and x.max() == 1
    assert np.array_equal(np.sort(y), np.sort(task.labels[test]))
    rows = lambda a: a[np.lexsort(a.T[::-1])]
    assert np.array_equal(rows(x[..., 0]), rows(task.pixels[test]))


def test_digits_permuted_is_one_fixed_pixel_permutation():
    plain, permuted = tasks.make("digits", 64), tasks.make("digits_permuted", 64)
    order = permuted.pixel_order
    assert sorted(order) == list(range(64)) and not np.array_equal(order, np.arange(64))
    a, b = plain.sample(50, seed=4), permuted.sample(50, seed=4)
    assert np.array_equal(a.y, b.y) and np.array_equal(a.x[:, order], b.x)
    other = tasks.make("digits_permuted", 64, perm_seed=1).pixel_order
    assert not np.array_equal(order, other)
    assert np.array_equal(order, tasks.make("digits_permuted", 64).pixel_order)


# --- errors and the solved criterion -----------------------------------------------------------

def test_regression_error_criteria():
    y = np.array([0.5, 0.5], dtype=np.float32)
    pascanu, hs97 = tasks.make("adding_pascanu", 20), tasks.make("adding_hs97", 20)
    assert pascanu.error(y + np.array([0.19, 0.21]), y) == 0.5  # squared error > 0.04
    assert pascanu.error((y + 0.19)[:, None], y) == 0.0          # (B, 1) accepted
    assert hs97.error(y + np.array([0.039, 0.041]), y) == 0.5    # absolute error >= 0.04
    latch = tasks.make("latch", 5)
    assert latch.error(np.array([0.1, 0.1, 0.0]), np.array([0.8, -0.8, 0.8])) == pytest.approx(2 / 3)


def test_recall_error_criteria():
    copy = tasks.make("copy", 5)
    x, y = copy.sample(2, seed=0)
    perfect = np.eye(copy.output_dim)[y] * 10
    assert copy.error(perfect, y) == 0.0
    one_wrong = perfect.copy()
    one_wrong[0, -1] = np.roll(one_wrong[0, -1], 1)
    assert copy.error(one_wrong, y) == pytest.approx(1 / 20)
    memo = tasks.make("memorization", 5)
    x, y = memo.sample(2, seed=0)
    perfect = np.eye(memo.output_dim)[y] * 10
    one_wrong = perfect.copy()
    one_wrong[0, -1] = np.roll(one_wrong[0, -1], 1)
    assert memo.error(perfect, y) == 0.0 and memo.error(one_wrong, y) == 0.5


def test_solved_criteria():
    adding, pascanu = tasks.make("adding", 10), tasks.make("adding_pascanu", 10)
    assert adding.solved(0.005, 0.9) and not adding.solved(0.02, 0.0)  # adding: MSE < 0.01
    assert pascanu.solved(0.5, 0.009) and not pascanu.solved(0.0, 0.01)  # error < 1%
    assert not pascanu.solved(float("nan"), float("nan"))
    assert tasks.make("adding", 10, solve_threshold=0.05).solved(0.03, 1.0)
    assert tasks.make("digits", 64).solved(1.0, 0.09) and not tasks.make("digits", 64).solved(0.1, 0.11)


# --- losses ---------------------------------------------------------------------------------------

def random_case(kind, rng, dtype=np.float64):
    B, L, C = 5, 4, 3
    if kind == "mse":
        return rng.normal(size=(B, 1)).astype(dtype), rng.normal(size=B).astype(np.float32)
    if kind == "ce":
        return rng.normal(size=(B, C)).astype(dtype) * 3, rng.integers(0, C, B)
    return rng.normal(size=(B, L, C)).astype(dtype) * 3, rng.integers(0, C, (B, L))


@pytest.mark.parametrize("kind", losses.KINDS)
def test_torch_loss_equals_numpy_loss(kind):
    out, y = random_case(kind, np.random.default_rng(0))
    expected = losses.numpy_loss(kind, out, y)
    assert losses.torch_loss(kind, torch.tensor(out), torch.tensor(y)).item() == pytest.approx(expected, rel=1e-12)
    assert losses.torch_loss(kind, torch.tensor(out, dtype=torch.float32), y).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", losses.KINDS)
def test_loss_grad_equals_autograd(kind):
    out, y = random_case(kind, np.random.default_rng(1))
    out_t = torch.tensor(out, requires_grad=True)
    losses.torch_loss(kind, out_t, torch.tensor(y)).backward()
    grad = losses.loss_grad(kind, out, y)
    assert grad.dtype == np.float64 and grad.shape == out.shape
    np.testing.assert_allclose(grad, out_t.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert losses.loss_grad(kind, out.astype(np.float32), y).dtype == np.float32


def test_loss_known_values_and_stability():
    assert losses.numpy_loss("mse", np.array([1.0, 3.0]), np.array([0.0, 1.0])) == pytest.approx(2.5)
    assert losses.numpy_loss("ce", np.zeros((2, 4)), np.array([0, 3])) == pytest.approx(math.log(4))
    huge = np.array([[1e4, 0.0, -1e4]])
    assert losses.numpy_loss("ce", huge, np.array([0])) == pytest.approx(0.0)
    assert losses.numpy_loss("ce", huge, np.array([1])) == pytest.approx(1e4)
    assert np.isfinite(losses.loss_grad("ce", huge, np.array([2]))).all()


def test_loss_rejects_mismatched_layouts():
    with pytest.raises(ValueError, match=r"ce_seq loss: output shape \(4, 3, 9\)"):
        losses.numpy_loss("ce_seq", np.zeros((4, 3, 9)), np.zeros((3, 4), dtype=np.int64))  # (L, B, C)
    with pytest.raises(ValueError, match="expected output"):
        losses.torch_loss("mse", torch.zeros(1, 5), torch.zeros(5))
    with pytest.raises(ValueError, match="unknown loss kind"):
        losses.numpy_loss("hinge", np.zeros(2), np.zeros(2))


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda: tasks.make("addition", 10), r"unknown task 'addition'; allowed tasks: \[.*'adding_pascanu'"),
    (lambda: tasks.make("adding", 10, lenght=3), r"unknown option\(s\) \['lenght'\]; allowed options: \['solve_threshold'\]"),
    (lambda: tasks.make("adding", 0), r"'adding' needs T >= 2 \(one marker in each half\), got T=0"),
    (lambda: tasks.make("copy", 0), r"'copy' needs T >= 1"),
    (lambda: tasks.make("adding_pascanu", 9), r"needs T >= 10 .*\[0, 0.1L\).*got T=9"),
    (lambda: tasks.make("temporal_order_3bit", 5), r"needs T >= 10"),
    (lambda: tasks.make("adding_hs97", 19), r"needs T >= 20"),
    (lambda: tasks.make("digits", 100), r"T must be 64 .*got T=100"),
    (lambda: tasks.make("latch", 10.0), r"T must be an int, got float"),
    (lambda: tasks.make("latch", 10, solve_threshold="low"), r"option 'solve_threshold' must be float, got str"),
    (lambda: tasks.make("latch", 10, solve_threshold=0), r"'solve_threshold' must be a positive"),
    (lambda: tasks.make("latch", 10, noise_var=-1.0), r"'noise_var' must be a finite number >= 0"),
    (lambda: tasks.make("memorization", 10, values=1), r"option 'values' must be >= 2, got 1"),
    (lambda: tasks.make("memorization", 10, items=2.5), r"option 'items' must be int"),
    (lambda: tasks.make("digits_permuted", 64, perm_seed=-3), r"'perm_seed' must be >= 0"),
    (lambda: tasks.check("copy", 10, ["items"]), r"options must be a mapping"),
    (lambda: tasks.make("copy", 10).sample(2, seed=0, split="valid"), r"allowed splits: \['test', 'train'\]"),
    (lambda: tasks.make("copy", 10).sample(2, seed=-1), r"seed must be a non-negative int"),
])
def test_bad_input_raises_informative_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_check_builds_no_data(monkeypatch):
    def boom():
        raise AssertionError("check() must not load the digits")
    monkeypatch.setattr(digits_module, "_dataset", boom)
    tasks.check("digits_permuted", 64, {"perm_seed": 3})
    tasks.check("memorization", 50, {"items": 5, "values": 3})
    tasks.check("adding", 2, None)
    with pytest.raises(ValueError, match="unknown option"):
        tasks.check("digits", 64, {"perm_seed": 3})  # only the permuted variant has it


def test_make_records_options_with_defaults():
    task = tasks.make("memorization", 12, values=3)
    assert task.options == {"solve_threshold": 0.01, "items": 10, "values": 3}
    assert task.baseline_loss == pytest.approx(10 * math.log(3) / 32)
