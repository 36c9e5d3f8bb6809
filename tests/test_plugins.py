"""Plug-ins: discovery from every source, the registries, bad plug-ins named by file, the
adapter that makes a plug-in cell a stack (layers, directions, init, spectral radius, gradient
flow), training through rnnbench.run, and match_params."""
import importlib
import importlib.metadata
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import rnnbench
from rnnbench import init, models, plugins, registry, tasks
from rnnbench.cli import main as cli_main
from rnnbench.config import RunConfig
from rnnbench.study import load_study

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = (ROOT / "methods" / "template_cell.py").read_text()
TINY = dict(task="adding", T=6, hidden=5, batch_size=8, steps=12, eval_interval=6,
            eval_size=32, optimizer="adam")


@pytest.fixture(autouse=True)
def in_empty_folder(isolated_registries, monkeypatch, tmp_path):
    """Every test starts in an empty folder (no methods/), with the registries as found."""
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)


def cell_file(path: Path, name: str, body: str | None = None) -> Path:
    """A plug-in file registering the template's Elman cell as `name` (or `body` as it is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if body is not None else TEMPLATE.replace('"template_elman"', f'"{name}"'))
    return path


def cfg_of(**fields) -> RunConfig:
    return RunConfig.from_dict({**TINY, **fields})


def task_of(cfg):
    return tasks.make(cfg.task, cfg.T, **cfg.task_options)


# --- discovery ---------------------------------------------------------------------------------
def test_methods_folder_skips_helpers_and_templates(tmp_path):
    cell_file(tmp_path / "methods" / "mine.py", "mine")
    cell_file(tmp_path / "methods" / "_helper.py", "", "raise RuntimeError('a helper is not loaded')")
    cell_file(tmp_path / "methods" / "template_x.py", "", "raise RuntimeError('nor a template')")
    cell_file(tmp_path / "methods" / "notes.txt", "", "not python")
    before = plugins.loaded()  # files an earlier test of this process loaded
    rnnbench.load_plugins()
    assert "mine" in models.cells() and models.is_plugin("mine")
    assert registry.origin("cell", "mine") == str(tmp_path / "methods" / "mine.py")
    assert [p for p in plugins.loaded() if p not in before] == [
        str(tmp_path / "methods" / "mine.py")]
    # the shipped methods are plug-ins; the shipped template is skipped
    assert [p.name for p in plugins.discover(ROOT / "methods")] == [
        "exprnn.py", "indrnn.py", "lru.py"]


def test_study_plugins_are_relative_to_the_study_file(tmp_path):
    cell_file(tmp_path / "ext" / "cells.py", "ext_rnn")
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "s.yaml"
    path.write_text(yaml.safe_dump({"study": "s", "plugins": ["../ext/cells.py"],
                                    "fixed": {**TINY, "cell": "ext_rnn"}}))
    s = load_study(path)
    assert s.plugins == [str(tmp_path / "ext" / "cells.py")]
    assert {cfg.cell for cfg in s.runs()} == {"ext_rnn"}


def test_study_dict_plugins_are_relative_to_the_working_directory(tmp_path):
    cell_file(tmp_path / "ext" / "cells.py", "dict_rnn")
    s = load_study({"study": "s", "plugins": ["ext/cells.py"], "fixed": {**TINY, "cell": "dict_rnn"}})
    assert s.plugins == [str(tmp_path / "ext" / "cells.py")]
    with pytest.raises(ValueError, match=r"'missing\.py' does not exist.*relative paths start from"):
        load_study({"study": "s", "plugins": ["missing.py"]})
    with pytest.raises(ValueError, match="'plugins' must be a list"):
        load_study({"study": "s", "plugins": "ext/cells.py"})


def test_environment_variable_lists_files_and_folders(tmp_path, monkeypatch):
    a = cell_file(tmp_path / "a" / "one.py", "env_one")
    cell_file(tmp_path / "b" / "two.py", "env_two")
    monkeypatch.setenv(plugins.ENV_VAR, os.pathsep.join([str(a), str(tmp_path / "b")]))
    rnnbench.load_plugins()
    assert {"env_one", "env_two"} <= set(models.cells())
    assert plugins.env_value([str(a), "/x/y.py"]) == os.pathsep.join(
        [str(a), str(tmp_path / "b"), "/x/y.py"])  # each path once, the existing ones first


def test_entry_points_module_and_callable(tmp_path, monkeypatch):
    cell_file(tmp_path / "pkg" / "ep_cells_mod.py", "ep_rnn")
    (tmp_path / "pkg" / "ep_setup_mod.py").write_text(
        "import torch\nimport rnnbench\n"
        "def setup():\n    rnnbench.register_activation('ep_cube', lambda x: x ** 3, 3.0)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    group = plugins.ENTRY_POINT_GROUP
    points = [importlib.metadata.EntryPoint("cells", "ep_cells_mod", group),
              importlib.metadata.EntryPoint("setup", "ep_setup_mod:setup", group)]
    asked = []

    def entry_points(**kwargs):
        asked.append(kwargs)
        return [p for p in points if p.group == kwargs.get("group")]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    rnnbench.load_plugins()
    rnnbench.load_plugins()  # once per process: setup() is not called again
    assert asked == [{"group": group}] * 2
    assert "ep_rnn" in models.cells() and "ep_cube" in models.activations()
    assert registry.origin("activation", "ep_cube").startswith("entry point 'setup'")


def test_loading_one_file_twice_is_a_no_op(tmp_path, monkeypatch):
    path = cell_file(tmp_path / "methods" / "same.py", "same")
    monkeypatch.setenv(plugins.ENV_VAR, str(path))
    before = plugins.loaded()
    first = plugins.load_file(path)
    rnnbench.load_plugins(str(tmp_path / "methods" / ".." / "methods" / "same.py"))
    load_study({"study": "s", "plugins": ["methods/same.py"], "fixed": {**TINY, "cell": "same"}})
    assert plugins.load_file(path) is first
    assert [p for p in plugins.loaded() if p not in before] == [str(path)]
    assert models.cells().count("same") == 1


def test_import_rnnbench_stays_light():
    code = "import sys, rnnbench; assert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr


def _in_subprocess(code: str, cwd) -> list[str]:
    """Run `code` in a fresh interpreter in `cwd`; its printed lines."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_checking_a_study_of_builtin_names_imports_no_plugin_nor_torch(tmp_path):
    """The registries' names need no torch, and methods/ is imported only for a name that is
    not registered: the default study validates (as the Snakemake process does) without torch,
    beside a methods/ folder whose plug-ins import it; a study naming one of them loads it."""
    cell_file(tmp_path / "methods" / "mine.py", "mine")  # imports torch, registers `mine`
    check = ("import sys\nfrom rnnbench import plugins\nfrom rnnbench.study import load_study\n"
             "s = load_study({!r})\ns.runs()\n"
             "print('torch' in sys.modules, len(plugins.loaded()))")
    assert _in_subprocess(check.format(str(ROOT / "config" / "config.yaml")), tmp_path) == [
        "False", "0"]
    # Omega's check (rnnbench.regularizer) imports torch only in its torch functions
    omega = ROOT / "config" / "studies" / "pascanu2013.yaml"
    assert _in_subprocess(check.format(str(omega)), tmp_path) == ["False", "0"]
    study = tmp_path / "mine.yaml"
    study.write_text(json.dumps({"study": "s", "fixed": {**TINY, "cell": "mine"}}))
    assert _in_subprocess(check.format(str(study)), tmp_path) == ["True", "1"]


def test_models_names_build_lazily():
    """`import rnnbench.models` imports no torch; its model-building names import it on use."""
    code = ("import sys\nfrom rnnbench import models\nprint('torch' in sys.modules)\n"
            "print(models.build.__module__, 'torch' in sys.modules)\n"
            "print(models.get_cell('lstm').builder)")
    assert _in_subprocess(code, ROOT) == ["False", "rnnbench.models.construct", "True",
                                          "BuiltinBuilder('lstm')"]
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        models.no_such_name  # noqa: B018


def test_a_broken_methods_file_stops_only_what_needs_methods(tmp_path, capsys):
    """A run of built-in names trains beside a broken methods/ file; one naming a cell that no
    registry holds loads methods/, and the broken file is named."""
    path = cell_file(tmp_path / "methods" / "broken.py", "", "raise ImportError('half-written')\n")
    args = ["run", "task=adding", "T=6", "hidden=4", "steps=2", "eval_interval=2", "eval_size=8",
            "batch_size=4"]
    assert cli_main([*args, "cell=gru"]) == 0
    assert "half-written" not in capsys.readouterr().err
    assert str(path) not in plugins.loaded()
    assert cli_main([*args, "cell=mine"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "half-written" in err


def test_cli_list_shows_plugin_sources(tmp_path, capsys):
    path = cell_file(tmp_path / "mine.py", "listed_rnn")
    assert cli_main(["list", "--plugin", str(path)]) == 0
    out = capsys.readouterr().out
    assert "listed_rnn" in out.split("cells:")[1].splitlines()[0]
    assert f"{path}: cell listed_rnn" in out


# --- bad plug-ins, each named by its file ------------------------------------------------------
def test_plugin_that_raises_is_named_with_its_line_and_rolled_back(tmp_path, capsys):
    path = cell_file(tmp_path / "methods" / "broken.py", "", TEMPLATE.replace(
        '"template_elman"', '"half"') + "\nraise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match=rf"plug-in {path} failed to load: RuntimeError: boom "
                                         r"\(line \d+\)"):
        rnnbench.load_plugins()
    assert "half" not in models.cells()  # what it registered before failing is undone
    # a study of built-in names needs nothing from methods/: the broken file is not imported
    assert cli_main(["validate", str(ROOT / "config" / "config.yaml")]) == 0
    assert str(path) not in capsys.readouterr().err
    study = tmp_path / "needs_methods.yaml"  # one naming a cell that only a plug-in could add
    study.write_text(json.dumps({"study": "s", "fixed": {**TINY, "cell": "half"}}))
    assert cli_main(["validate", str(study)]) == 2
    assert str(path) in capsys.readouterr().err


def test_two_registrations_of_one_name_name_both_files(tmp_path):
    a = cell_file(tmp_path / "methods" / "a.py", "twice")
    b = cell_file(tmp_path / "methods" / "b.py", "twice")
    with pytest.raises(ValueError) as err:
        rnnbench.load_plugins()
    assert f"cell 'twice' is already registered by {a}; {b} registers it again" in str(err.value)
    cell_file(tmp_path / "other" / "c.py", "rnn")
    with pytest.raises(ValueError, match=r"cell 'rnn' is already registered by rnnbench \(built-in\)"):
        rnnbench.load_plugins(str(tmp_path / "other" / "c.py"), methods_dir=False)


BAD_FORWARD = '''
import torch
from rnnbench import register_cell

@register_cell("bad_cell")
class Bad(torch.nn.Module):
    def __init__(self, input_size, hidden_size, cfg):
        super().__init__()
        self.lin = torch.nn.Linear(input_size, hidden_size)
    def forward(self, x):
        return {body}
'''


@pytest.mark.parametrize("body, dtype, words", [
    ("self.lin(x)[:, :-1]", "float32", "forward returned shape (2, 2, 4) for input (2, 3, 2)"),
    ("torch.cat([self.lin(x), self.lin(x)], 2)", "float32", "expected (B, L, hidden_size) = (2, 3, 4)"),
    ("self.lin(x).float()", "float64", "forward returned torch.float32 for torch.float64 input"),
    ("self.lin(x).detach()", "float32", "does not depend on any parameter"),
    ("[1, 2]", "float32", "must return a tensor"),
    ("self.lin(x) / 0", "float32", "non-finite"),
])
def test_cell_with_a_wrong_forward_is_caught_by_validate(tmp_path, capsys, body, dtype, words):
    path = cell_file(tmp_path / "bad.py", "", BAD_FORWARD.format(body=body))
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"study": "s", "plugins": ["bad.py"],
                                     "fixed": {**TINY, "hidden": 4, "cell": "bad_cell", "dtype": dtype}}))
    assert cli_main(["validate", str(study)]) == 2
    err = capsys.readouterr().err
    assert f"cell 'bad_cell' (from {path})" in err and words in err, err


def test_study_naming_an_unregistered_cell_lists_what_is_registered(tmp_path):
    path = cell_file(tmp_path / "methods" / "mine.py", "mine")
    with pytest.raises(ValueError) as err:
        load_study({"study": "s", "fixed": {**TINY, "cell": "mien"}})
    message = str(err.value)
    assert "field 'cell': unknown value 'mien'" in message
    assert "registered cells: rnn, lstm, gru, " in message  # the built-ins first
    assert f"mine (from {path})" in message and "methods/" in message


def test_plugin_cells_take_no_activation_forget_bias_numba_or_ensemble(tmp_path):
    cell_file(tmp_path / "methods" / "mine.py", "mine")
    rnnbench.load_plugins()
    for field, value in [("activation", "relu"), ("forget_bias", 1.0), ("backend", "numba"),
                         ("backend", "ensemble")]:
        with pytest.raises(ValueError, match=f"field '{field}'"):
            cfg_of(cell="mine", **{field: value})
    from rnnbench.backends import resolve_backend
    from rnnbench.ensemble import can_ensemble
    cfg = cfg_of(cell="mine", device="cpu")
    assert resolve_backend(cfg) == "torch" and not can_ensemble(cfg)
    s = load_study({"study": "s", "fixed": TINY, "ensemble": {"enabled": True},
                    "methods": {"Mine": {"cell": "mine"}, "RNN": {"cell": "rnn"}}})
    solo, groups = s.jobs()
    assert [f.split("--")[0] for f in solo] == ["Mine_seed=0"] and len(groups) == 1
    with pytest.raises(ValueError, match="a plug-in cell class takes no options"):
        models.register_cell("opt", models.LoopRNN, options=("activation",))


# --- the adapter -------------------------------------------------------------------------------
@pytest.fixture
def elman(tmp_path):
    cell_file(tmp_path / "methods" / "elman.py", "elman")
    rnnbench.load_plugins()
    return "elman"


def test_layers_stack_instances_and_bidirectional_reads_the_reversed_sequence(elman):
    cfg = cfg_of(cell=elman, hidden=4, layers=2, bidirectional=True, dtype="float64")
    task = task_of(cfg)
    model = models.build(cfg, task)
    rnn = model.rnn
    assert list(rnn.cells) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    assert (rnn.hidden_size, rnn.num_layers, rnn.bidirectional, rnn.gate_count) == (4, 2, True, 1)
    assert rnn.cells["l0"].weight_ih.shape == (4, task.input_dim)
    assert rnn.cells["l1"].weight_ih.shape == rnn.cells["l1_reverse"].weight_ih.shape == (4, 8)
    x = torch.randn(3, 7, task.input_dim, dtype=torch.float64)
    out, h_n = rnn(x)
    assert out.shape == (3, 7, 8) and h_n.shape == (4, 3, 4)
    layer0 = torch.cat([rnn.cells["l0"](x), rnn.cells["l0_reverse"](x.flip(1)).flip(1)], 2)
    expected = torch.cat([rnn.cells["l1"](layer0), rnn.cells["l1_reverse"](layer0.flip(1)).flip(1)], 2)
    torch.testing.assert_close(out, expected)
    # the reverse half at step t has read x_t..x_L only: changing x_0 leaves it unchanged
    x2 = x.clone()
    x2[:, 0] += 1.0
    rev = rnn.cells["l0_reverse"]
    torch.testing.assert_close(rev(x2.flip(1)).flip(1)[:, 1:], rev(x.flip(1)).flip(1)[:, 1:])
    torch.testing.assert_close(h_n[1], layer0[:, 0, 4:])  # reverse direction ends at step 0
    assert model(x).shape == (3, task.output_dim)


@pytest.mark.parametrize("scheme", ["default", "orthogonal", "identity", "glorot", "normal",
                                    "spectral", "smart"])
def test_init_schemes_touch_only_weight_hh(elman, scheme):
    cfg = cfg_of(cell=elman, hidden=6, layers=2, init=scheme, init_scale=0.9 if scheme in (
        "spectral", "smart", "identity") else None)
    model = models.build(cfg, task_of(cfg))
    before = {n: p.detach().clone() for n, p in model.rnn.named_parameters()}
    init.apply(model, cfg, torch.Generator().manual_seed(0))
    for name, p in model.rnn.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == (name.endswith("weight_hh") and scheme != "default"), name
    w = model.rnn.cells["l0"].weight_hh.detach().double()
    if scheme == "orthogonal":
        torch.testing.assert_close(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-6, rtol=0)
    if scheme == "identity":
        torch.testing.assert_close(w, 0.9 * torch.eye(6, dtype=torch.float64))
    if scheme in ("spectral", "smart"):
        assert models.spectral_radius(model) == pytest.approx(0.9, rel=1e-5)
    if scheme == "spectral":  # the cell's own draw, rescaled
        old = before["cells.l0.weight_hh"].double()
        ratio = w / old
        torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0, 0])))


def test_spectral_radius_is_nan_without_weight_hh(tmp_path):
    cell_file(tmp_path / "methods" / "norec.py", "norec", TEMPLATE.replace(
        '"template_elman"', '"norec"').replace("weight_hh", "w_rec"))
    rnnbench.load_plugins()
    cfg = cfg_of(cell="norec")
    model = models.build(cfg, task_of(cfg))
    assert math.isnan(models.spectral_radius(model))
    assert model.recurrent_matrices() == []
    init.apply(model, cfg.replace(init="orthogonal"), torch.Generator().manual_seed(0))  # no-op


def test_spectral_radius_and_n_params_of_a_plugin(elman):
    cfg = cfg_of(cell=elman, hidden=7, layers=2, bidirectional=True)
    task = task_of(cfg)
    model = models.build(cfg, task)
    w = model.rnn.cells["l0"].weight_hh.detach().double()
    assert models.spectral_radius(model) == pytest.approx(
        float(torch.linalg.eigvals(w).abs().max()))
    H, I, O = 7, task.input_dim, task.output_dim
    per_layer = lambda inp: 2 * (H * inp + H * H + H)  # two directions
    expected = per_layer(I) + per_layer(2 * H) + (2 * H * O + O)
    assert models.count_params(cfg, task) == expected
    from rnnbench.backends import TorchBackend
    assert TorchBackend(cfg, task).n_params() == expected


def test_plugin_gradflow_equals_the_kernels_profile_of_the_same_rnn(elman):
    """The autograd profile of the plug-in Elman cell equals the Numba instrument's profile of
    the built-in tanh rnn with the same weights (float64)."""
    from rnnbench.backends import TorchBackend
    cfg = cfg_of(cell=elman, hidden=6, T=9, init="orthogonal")
    task = task_of(cfg)
    plugin = TorchBackend(cfg, task)
    builtin = TorchBackend(cfg.replace(cell="rnn", backend="torch"), task)
    cell = plugin.model.rnn.cells["l0"]
    with torch.no_grad():
        rnn = builtin.model.rnn
        rnn.weight_ih_l0.copy_(cell.weight_ih)
        rnn.weight_hh_l0.copy_(cell.weight_hh)
        rnn.bias_ih_l0.copy_(cell.bias)
        rnn.bias_hh_l0.zero_()
        builtin.model.head.load_state_dict(plugin.model.head.state_dict())
    batch = task.sample(16, 5, split="test")
    ours, theirs = plugin.gradflow(batch, "start", 0), builtin.gradflow(batch, "start", 0)
    assert list(ours.columns) == list(theirs.columns) and len(ours) == cfg.T
    assert np.isfinite(ours["grad_norm"]).all() and (ours["grad_norm"] > 0).all()
    np.testing.assert_allclose(ours["grad_norm"], theirs["grad_norm"], rtol=1e-6)
    assert ours[["jacobian_norm", "bound", "forget_product"]].isna().all().all()
    assert not any(p.grad is not None for p in plugin.model.parameters())  # probe on a copy


def test_gradflow_of_an_output_not_assembled_per_step_is_nan_beyond_lag_0(tmp_path):
    cell_file(tmp_path / "methods" / "scan.py", "", '''
import torch
from rnnbench import register_cell

@register_cell("scan")
class Scan(torch.nn.Module):   # h_t = sum_{s<=t} W x_s: no per-step tensors to follow
    def __init__(self, input_size, hidden_size, cfg):
        super().__init__()
        self.lin = torch.nn.Linear(input_size, hidden_size)
    def forward(self, x):
        return torch.cumsum(self.lin(x), dim=1)
''')
    rnnbench.load_plugins()
    from rnnbench.backends import TorchBackend
    cfg = cfg_of(cell="scan")
    task = task_of(cfg)
    flow = TorchBackend(cfg, task).gradflow(task.sample(4, 0), "start", 0)
    assert len(flow) == cfg.T and np.isfinite(flow["grad_norm"].iloc[0])
    assert flow["grad_norm"].iloc[1:].isna().all()



def test_gradflow_of_a_readout_of_stacked_states_follows_the_states(tmp_path):
    """A cell returning y_t = V h_t read from its stacked Elman states: the profile is
    ‖∂L/∂h_{T-k}‖ of the states, computed here by autograd on the states themselves."""
    cell_file(tmp_path / "methods" / "readout.py", "", TEMPLATE.replace(
        '"template_elman"', '"readout_elman"').replace(
        "        return torch.stack(states, dim=1)",
        "        return torch.stack(states, dim=1) @ self.weight_out.T").replace(
        "        self.bias = nn.Parameter(torch.zeros(hidden_size))",
        "        self.bias = nn.Parameter(torch.zeros(hidden_size))\n"
        "        self.weight_out = nn.Parameter(torch.randn(hidden_size, hidden_size))"))
    rnnbench.load_plugins()
    from rnnbench.backends import TorchBackend
    from rnnbench.tasks.losses import torch_loss
    cfg = cfg_of(cell="readout_elman", T=7)
    task = task_of(cfg)
    backend = TorchBackend(cfg, task)
    batch = task.sample(8, 2, split="test")
    flow = backend.gradflow(batch, "start", 0)["grad_norm"].to_numpy()
    assert np.isfinite(flow).all() and (flow > 0).all()

    model = backend.model.double()
    cell = model.rnn.cells["l0"]
    x = torch.as_tensor(batch.x, dtype=torch.float64)
    h, states = x.new_zeros(x.shape[0], cfg.hidden), []
    for t in range(cfg.T):  # the cell's forward by hand, every state kept for its gradient
        h = torch.tanh(x[:, t] @ cell.weight_ih.T + cell.bias + h @ cell.weight_hh.T)
        h.retain_grad()
        states.append(h)
    y = torch.stack(states, dim=1) @ cell.weight_out.T
    torch_loss(task.loss_kind, model.readout(y), batch.y).backward()  # adding: last-step loss
    expected = [float(states[-1 - k].grad.norm(dim=-1).mean()) for k in range(cfg.T)]
    np.testing.assert_allclose(flow, expected, rtol=1e-9)

# --- training ----------------------------------------------------------------------------------
def test_plugin_cell_trains_through_run_on_the_torch_backend(elman, tmp_path):
    result = rnnbench.run({**TINY, "cell": elman, "init": "orthogonal", "clip": "norm",
                           "steps": 40, "eval_interval": 20, "lr": 0.02}, out_dir=tmp_path / "run")
    s = result.summary
    assert s["backend_used"] == "torch" and s["cell"] == elman and not s["diverged"]
    assert s["spectral_radius_start"] == pytest.approx(1.0, abs=1e-5)
    assert s["spectral_radius_end"] != s["spectral_radius_start"]  # weight_hh was trained
    evals = result.curve["eval_loss"].dropna()
    assert len(evals) == 3 and evals.iloc[-1] < evals.iloc[0]
    assert set(result.gradflow["phase"]) == {"start", "end"}
    assert np.isfinite(result.gradflow["grad_norm"]).all()
    assert (tmp_path / "run" / "summary.parquet").exists()


def test_plugin_gradients_match_finite_differences(elman):
    cfg = cfg_of(cell=elman, hidden=3, T=4, layers=2, bidirectional=True, dtype="float64")
    task = task_of(cfg)
    model = models.build(cfg, task)
    x = torch.randn(2, 4, task.input_dim, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]

    def loss(*params):
        out = torch.func.functional_call(model, dict(zip(names, params)), (x,))
        return (out ** 2).sum()

    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-7)


# --- registries --------------------------------------------------------------------------------
def test_register_init_draws_weight_hh_blocks_and_follows_its_base(tmp_path):
    cell_file(tmp_path / "methods" / "inits.py", "", '''
import torch
import rnnbench

@rnnbench.register_init("antisym", default_scale=0.5, base="glorot")
def antisym(shape, scale, generator):
    a = torch.randn(shape, generator=generator, dtype=torch.float64)
    return scale * (a - a.T)
''')
    rnnbench.load_plugins()
    assert "antisym" in init.schemes()
    cfg = RunConfig.from_dict({**TINY, "cell": "lstm", "init": "antisym"})
    model = models.build(cfg, task_of(cfg))
    init.apply(model, cfg, torch.Generator().manual_seed(1))
    for block in model.rnn.weight_hh_l0.detach().double().chunk(4):  # one draw per gate
        torch.testing.assert_close(block, -block.T)
        assert block.abs().max() > 0
    assert (model.rnn.bias_ih_l0 == 0).all()  # glorot's rule for the biases
    with pytest.raises(ValueError, match="already registered"):
        init.register_init("orthogonal", lambda s, c, g: None)


def test_register_task_and_activation_from_a_plugin(tmp_path):
    cell_file(tmp_path / "methods" / "task.py", "", '''
import numpy as np
import torch
import rnnbench
from rnnbench.tasks import Task

@rnnbench.register_task("last_sign")
class LastSign(Task):
    """Is the sum of the inputs positive? (regression on the sign)"""
    loss_kind, solve_on = "mse", "loss"
    baseline_loss, baseline_error = 1.0, 0.5  # predicting 0 for a target of +-1
    def generate(self, rng, batch_size, length):
        x = rng.standard_normal((batch_size, length, 1))
        return x, np.sign(x.sum(axis=(1, 2)))

rnnbench.register_activation("softclip", derivative_bound=1.0)(lambda x: torch.tanh(x) * 1.0)
''')
    rnnbench.load_plugins()
    assert "last_sign" in tasks.names() and tasks.make("last_sign", 5).name == "last_sign"
    assert registry.origin("task", "last_sign") == str(tmp_path / "methods" / "task.py")
    result = rnnbench.run({**TINY, "task": "last_sign", "activation": "softclip", "steps": 6})
    assert result.summary["backend_used"] == "torch" and result.summary["task"] == "last_sign"
    with pytest.raises(ValueError, match="already registered"):
        tasks.register_task(tasks.Adding)


# --- match_params ------------------------------------------------------------------------------
def _brute_force(cfg, task, target, largest=100):
    counts = {h: models.count_params(cfg.replace(hidden=h), task) for h in range(1, largest + 1)}
    return min(counts, key=lambda h: (abs(counts[h] - target), h)), counts


@pytest.mark.parametrize("cell, layers, bidirectional", [("lstm", 1, False), ("lstm", 2, True),
                                                         ("elman", 1, False)])
def test_match_params_picks_the_closest_hidden_size(elman, cell, layers, bidirectional):
    base = cfg_of(cell=cell, layers=layers, bidirectional=bidirectional)
    task = task_of(base)
    for target in (1, 50, 777, 5000):
        best, counts = _brute_force(base, task, target)
        assert best < 100, "the brute-force range covers the target"
        chosen = models.match_hidden(base.replace(match_params=target), task)
        assert chosen == best, (target, chosen, best)
    if cell == "lstm" and layers == 1:  # the count is the formula: 4 gates, head on H
        H, I = 20, task.input_dim
        assert counts[H] == 4 * (H * I + H * H + 2 * H) + H + 1


def test_match_params_is_resolved_when_the_study_expands(elman):
    s = load_study({"study": "m", "fixed": {**TINY, "match_params": 2000},
                    "methods": {"LSTM": {"cell": "lstm", "hidden": 64}, "Elman": {"cell": elman}}})
    runs = {cfg.method: cfg for cfg in s.runs()}
    for method, cfg in runs.items():
        task = task_of(cfg)
        assert cfg.hidden == models.match_hidden(cfg, task)  # hidden: 64 is overwritten
        assert abs(models.count_params(cfg, task) - 2000) <= abs(
            models.count_params(cfg.replace(hidden=cfg.hidden + 1), task) - 2000)
        assert models.resolve_hidden(cfg) == cfg and s.runs()[0].run_id() == runs["LSTM"].run_id()
    assert runs["LSTM"].hidden != runs["Elman"].hidden
    result = rnnbench.run({**TINY, "cell": elman, "match_params": 2000, "steps": 2})
    assert result.summary["hidden"] == runs["Elman"].hidden
    assert result.summary["match_params"] == 2000
    assert result.summary["n_params"] == models.count_params(runs["Elman"], task_of(runs["Elman"]))
    assert result.summary["run_id"] == runs["Elman"].replace(method="", steps=2).run_id()


def test_run_ids_without_match_params_are_unchanged():
    import hashlib
    import json
    from rnnbench.config import ID_WHILE_ON
    cfg = RunConfig()
    assert "match_params" in ID_WHILE_ON
    values = {k: v for k, v in cfg.to_dict().items() if k not in ID_WHILE_ON}
    assert cfg.run_id() == hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]
    assert cfg.replace(match_params=100).run_id() != cfg.run_id()
    with pytest.raises(ValueError, match="field 'match_params' must be >= 0"):
        RunConfig(match_params=-1)
