"""A Numba run starts without torch: its weights drawn in numpy equal torch's bit for bit
(rnnbench.init_numpy), its subnormal flags set without torch, its device chosen and its
provenance recorded without loading torch; a whole chunk job then trains with torch's import
refused."""
from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from rnnbench import init, init_numpy, models, tasks
from rnnbench.backends import numba_backend, selection
from rnnbench.config import RunConfig
from rnnbench.spectral import gated_spectral_radius

from support import env


def torch_arrays(cfg):
    task = tasks.make(cfg.task, cfg.T, **cfg.task_options)
    model = init.build_initialised_model(cfg, task)
    arrays = {k: getattr(model.rnn, f"{k}_l0") for k in init_numpy.RNN_KEYS}
    arrays["head_weight"], arrays["head_bias"] = model.head.weight, model.head.bias
    return {k: p.detach().numpy() for k, p in arrays.items()}, task


CASES = [dict(cell=cell, init=scheme, dtype=dtype, seed=seed, hidden=hidden, task=task, T=12)
         for cell, scheme, dtype, seed, hidden, task in itertools.product(
             ("rnn", "lstm", "gru"), init_numpy.NUMPY_SCHEMES, ("float32", "float64"), (0, 3),
             (1, 7, 32), ("adding", "copy"))]
CASES += [dict(cell="lstm", forget_bias=b, dtype=d, hidden=5, seed=1)
          for b in (1.0, 0.3, -0.7) for d in ("float32", "float64")]
CASES += [dict(cell=c, init="glorot", init_scale=0.37, hidden=6, seed=2) for c in ("rnn", "lstm", "gru")]
CASES += [dict(cell="rnn", activation="relu", hidden=4, seed=9, T=30, task="temporal_order")]


@pytest.mark.parametrize("fields", CASES, ids=lambda f: "-".join(f"{v}" for v in f.values()))
def test_numpy_starting_weights_equal_torch_bit_for_bit(fields):
    cfg = RunConfig(**fields)
    expected, task = torch_arrays(cfg)
    got = init_numpy.initial_arrays(cfg, task)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert np.array_equal(got[key], value), (key, np.abs(got[key] - value).max())


@pytest.mark.parametrize("seed", [0, 1, 5489, 2**31 + 7, 2**32 - 1])
@pytest.mark.parametrize("bound", [1.0, 1 / math.sqrt(3), 0.1234567, 7.5e-3])
def test_uniform_reproduces_torch_float64_uniform(seed, bound):
    generator = torch.Generator().manual_seed(seed)
    bits = init_numpy.torch_bit_stream(seed)
    fused = init_numpy.torch_kernel_fuses()
    for shape in ((1,), (5, 3), (4000,)):  # one stream across draws, as in init.apply
        expected = torch.empty(shape, dtype=torch.float64).uniform_(-bound, bound,
                                                                    generator=generator)
        assert np.array_equal(init_numpy.uniform(bits, shape, bound, fused), expected.numpy())


@pytest.mark.skipif(init_numpy.torch_kernel_fuses() is None, reason="not an x86 host")
def test_torch_baseline_kernel_is_reproduced_too():
    """Under ATEN_CPU_CAPABILITY=default torch rounds the product and the sum of its uniform
    separately (half the draws then differ from the fused kernel's by an ulp): followed here."""
    code = textwrap.dedent("""        import numpy as np, torch
        from rnnbench import init, init_numpy, tasks
        from rnnbench.config import RunConfig
        assert init_numpy.torch_kernel_fuses() is False
        for cell in ("rnn", "lstm", "gru"):
            cfg = RunConfig(cell=cell, hidden=16, dtype="float64", seed=4)
            task = tasks.make(cfg.task, cfg.T)
            model = init.build_initialised_model(cfg, task)
            got = init_numpy.initial_arrays(cfg, task)
            assert np.array_equal(got["weight_hh"], model.rnn.weight_hh_l0.detach().numpy())
            assert np.array_equal(got["head_weight"], model.head.weight.detach().numpy())
        bits = init_numpy.torch_bit_stream(3)
        fused = init_numpy.uniform(init_numpy.torch_bit_stream(3), (1000,), 0.3, fused=True)
        plain = init_numpy.uniform(bits, (1000,), 0.3, fused=False)
        print("differ:", int((fused != plain).sum()))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env({"ATEN_CPU_CAPABILITY": "default"}))
    assert res.returncode == 0, res.stdout + res.stderr
    assert int(res.stdout.split("differ:")[1]) > 100  # the two kernels are told apart


def test_an_unknown_host_or_capability_is_left_to_torch(monkeypatch):
    cfg = RunConfig(cell="gru", hidden=4)
    task = tasks.make(cfg.task, cfg.T)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "zvector")
    assert init_numpy.torch_kernel_fuses() is None
    assert init_numpy.initial_arrays(cfg, task) is None
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.setattr(init_numpy.platform, "machine", lambda: "aarch64")
    assert init_numpy.initial_arrays(cfg, task) is None


@pytest.mark.parametrize("fields", [
    dict(init="orthogonal"), dict(init="identity"), dict(init="normal"), dict(init="spectral"),
    dict(init="smart"), dict(layers=2), dict(bidirectional=True, backend="torch"),
])
def test_other_schemes_and_stacks_are_left_to_torch(fields):
    cfg = RunConfig(**{"cell": "rnn", "hidden": 4, **fields})
    assert init_numpy.initial_arrays(cfg, tasks.make(cfg.task, cfg.T)) is None


def test_a_plugin_scheme_is_left_to_torch(isolated_registries):
    init.register_init("test-numpy-scheme", lambda shape, scale, g: torch.zeros(shape))
    cfg = RunConfig(cell="rnn", hidden=4, init="test-numpy-scheme")
    assert init_numpy.initial_arrays(cfg, tasks.make(cfg.task, cfg.T)) is None


def test_a_cell_registered_over_a_builtin_is_left_to_torch(isolated_registries):
    """Neither the numpy draws nor the kernels know a builder registered over "gru"."""
    def builder(input_size, hidden_size, num_layers, bidirectional, cfg):
        return torch.nn.GRU(input_size, hidden_size, batch_first=True)
    cfg = RunConfig(cell="gru", hidden=4)
    assert models.is_builtin("gru") and selection.resolve_backend(cfg) == "numba"
    models.register_cell("gru", builder, overwrite=True)
    assert not models.is_builtin("gru")
    assert init_numpy.initial_arrays(cfg, tasks.make(cfg.task, cfg.T)) is None
    assert selection.resolve_backend(cfg) == "torch"


def test_subnormal_flags_set_and_restored_without_torch_or_through_it(monkeypatch):
    """DAZ and FTZ on inside the block; after it, back as they were, while another bit of
    MXCSR changed inside (the rounding mode) stays as it is now."""
    if not numba_backend.X86:
        pytest.skip("MXCSR is x86's")
    before = numba_backend.mxcsr()
    with numba_backend.subnormals_flushed():
        assert numba_backend.flushing_subnormals()
        assert numba_backend.mxcsr() & numba_backend.MXCSR_DAZ_FTZ == numba_backend.MXCSR_DAZ_FTZ
        numba_backend.set_mxcsr(numba_backend.mxcsr() | (1 << 13))  # round down
    after = numba_backend.mxcsr()
    numba_backend.set_mxcsr(before)  # round to nearest again
    assert after & numba_backend.MXCSR_DAZ_FTZ == before & numba_backend.MXCSR_DAZ_FTZ
    assert after & (1 << 13)
    monkeypatch.setattr(numba_backend, "X86", False)  # the other architectures: torch's flag
    with numba_backend.subnormals_flushed():
        assert numba_backend.flushing_subnormals()
    assert not numba_backend.flushing_subnormals()


def test_spectral_radius_by_numpy_equals_torch_eigvals_and_takes_tensors():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3 * 6, 6))
    expected = max(float(torch.linalg.eigvals(b).abs().max())
                   for b in torch.as_tensor(weight).chunk(3))
    assert gated_spectral_radius(weight, 3) == pytest.approx(expected, rel=1e-12)
    assert gated_spectral_radius(torch.as_tensor(weight, dtype=torch.float32), 3) == \
        gated_spectral_radius(weight.astype(np.float32), 3)
    weight[2, 1] = np.inf
    assert math.isnan(gated_spectral_radius(weight, 3))
    with pytest.raises(ValueError, match="does not split into 4 gates"):
        gated_spectral_radius(np.ones((6, 6)), 4)


@pytest.mark.parametrize("version_py,has_gpu", [
    ("cuda: Optional[str] = None\nhip: Optional[str] = None\n", False),
    ("cuda: Optional[str] = '12.4'\nhip: Optional[str] = None\n", True),
    ("cuda: Optional[str] = None\nhip: Optional[str] = '6.2.4'\n", True),
    ("__version__ = '9.9'\n", True),  # a layout we do not know: ask torch
])
def test_the_torch_build_tells_whether_cuda_can_exist(tmp_path, monkeypatch, version_py, has_gpu):
    (tmp_path / "version.py").write_text(version_py)
    monkeypatch.setattr(selection, "_torch_version_file", lambda: tmp_path / "version.py")
    assert selection._torch_build_has_gpu() is has_gpu


def test_the_installed_torch_build_is_read_as_torch_describes_itself():
    has_gpu = torch.version.cuda is not None or torch.version.hip is not None
    assert selection._torch_build_has_gpu() is has_gpu
    assert selection.cuda_available() == torch.cuda.is_available()


REFUSE_TORCH = textwrap.dedent("""\
    import importlib.machinery, sys
    class Refuse:  # finding torch is allowed, loading it is not
        def create_module(self, spec): return None
        def exec_module(self, module): raise ImportError("torch refused by the test")
    class Finder:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                spec = importlib.machinery.PathFinder.find_spec(name, path)
                if spec is not None:
                    spec.loader = Refuse()
                return spec
    sys.meta_path.insert(0, Finder())
""")


@pytest.mark.skipif(init_numpy.torch_kernel_fuses() is None, reason="not an x86 host")
def test_a_numba_chunk_job_trains_without_torch(tmp_path):
    """Default and glorot runs of every built-in cell, in float32 (subnormals flushed), with
    provenance: the job never loads torch; its starting point equals the one torch draws
    (here, in the test's process), and the provenance names torch's version."""
    configs = [RunConfig(cell=cell, init=scheme, hidden=4, T=8, steps=6, eval_interval=3,
                         eval_size=16, batch_size=4, seed=seed, backend="numba")
               for seed, (cell, scheme) in enumerate(itertools.product(
                   ("rnn", "lstm", "gru"), init_numpy.NUMPY_SCHEMES))]
    spec = tmp_path / "chunk.json"
    spec.write_text(json.dumps({"runs": [{"config": c.to_dict(), "out_dir": str(tmp_path / c.run_id())}
                                         for c in configs]}))
    code = REFUSE_TORCH + textwrap.dedent("""\
        from rnnbench.cli import main
        rc = main(["run-chunk", sys.argv[1]])
        print("torch loaded:", "torch" in sys.modules, "rc:", rc)
    """)
    res = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True,
                         text=True, env=env())
    assert "torch loaded: False rc: 0" in res.stdout, res.stdout + res.stderr
    import pandas as pd
    for cfg in configs:
        summary = pd.read_parquet(tmp_path / cfg.run_id() / "summary.parquet").iloc[0]
        assert summary["backend"] == "numba" and summary["steps"] == 6
        assert summary["prov_torch"] == torch.__version__
        expected, task = torch_arrays(cfg)  # the starting point, by torch, in this process
        from rnnbench.backends.numba_backend import NumbaBackend
        start = NumbaBackend(cfg, task)
        assert start.spectral_radius() == summary["spectral_radius_start"]
        assert all(np.array_equal(start.params[k], v) for k, v in expected.items())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one thread is torch's default here")
def test_threads_set_before_torch_loads_reach_torch():
    code = textwrap.dedent("""\
        import os, sys
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.pop(name, None)
        from rnnbench.cli import set_threads
        set_threads(1)  # torch's default here is the core count (MKL caps it there)
        assert "torch" not in sys.modules
        import torch
        print("threads:", torch.get_num_threads())
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert "threads: 1" in res.stdout, res.stdout + res.stderr
