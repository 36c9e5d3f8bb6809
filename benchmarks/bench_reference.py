"""Forward+backward time of the Numba reference kernels vs torch CPU autograd (nn.RNN/LSTM/GRU).

    .venv/bin/python benchmarks/bench_reference.py            # full table (a few minutes)
    .venv/bin/python benchmarks/bench_reference.py --quick    # T=100 only, fewer repetitions

Both sides compute the same thing: every output h_t and the gradients of all four weights, x and
h0 (and c0) for an external gradient grad_h on every step. Both use the same number of threads
(--threads, default 1): torch.set_num_threads(n), numba.set_num_threads(n), and threadpoolctl
limits the BLAS that Numba's np.dot calls (SciPy's OpenBLAS) to n. Times are the best of
several alternating repetitions (robust on shared cores), in ms per call on one batch of B
sequences; torch/numba > 1 means the Numba kernels are faster.

torch's float32 LSTM on the CPU is not autograd over ATen ops but oneDNN's fused LSTM
(`aten::mkldnn_rnn_layer` and its backward); for those rows the last two columns time torch
again with `torch.backends.mkldnn.flags(enabled=False)`, i.e. ATen's own LSTM under autograd,
which every other row uses anyway (oneDNN makes no difference to them: measured, torch 2.13).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import time
import warnings

import numba
import numpy as np
import scipy
import scipy.linalg.cython_blas  # noqa: F401 - load the BLAS numba calls, so threadpoolctl sees it
import threadpoolctl
import torch

import rnnbench.reference as ref

TORCH_MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
PARAM_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def best_times(calls, min_time: float, min_reps: int, max_reps: int,
               clock=time.perf_counter) -> list[float]:
    """Best (minimum) seconds per call of each function, after one warm-up call each, measured
    by `clock` (wall time by default; time.process_time for CPU time).

    The calls alternate, so that a burst of load from other processes on the shared cores hits
    both sides alike; the minimum is the least disturbed repetition.
    """
    for call in calls:
        call()
    best = [float("inf")] * len(calls)
    reps, start = 0, time.perf_counter()
    while reps < min_reps or (time.perf_counter() - start < min_time and reps < max_reps):
        for i, call in enumerate(calls):
            t0 = clock()
            call()
            best[i] = min(best[i], clock() - t0)
        reps += 1
    return best


def make_case(cell, H, T, B, I, dtype, seed=0):
    torch.manual_seed(seed)
    module = TORCH_MODULES[cell](I, H).to(dtype)
    rng = np.random.default_rng(seed)
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    x = rng.standard_normal((T, B, I)).astype(np_dtype)
    h0 = (0.1 * rng.standard_normal((B, H))).astype(np_dtype)
    c0 = (0.1 * rng.standard_normal((B, H))).astype(np_dtype) if cell == "lstm" else None
    grad_h = (rng.standard_normal((T, B, H)) / np.sqrt(T * B)).astype(np_dtype)
    params = {k: getattr(module, f"{k}_l0").detach().numpy().copy() for k in PARAM_KEYS}

    def numba_call():
        ref.forward_backward(cell, params, x, h0, grad_h, c0=c0)

    x_t = torch.from_numpy(x).requires_grad_()
    h0_t = torch.from_numpy(h0[None]).requires_grad_()
    c0_t = torch.from_numpy(c0[None]).requires_grad_() if c0 is not None else None
    grad_t = torch.from_numpy(grad_h)
    inputs = [getattr(module, f"{k}_l0") for k in PARAM_KEYS] + [x_t, h0_t]
    if c0_t is not None:
        inputs.append(c0_t)

    def torch_call():
        out, _ = module(x_t, (h0_t, c0_t) if c0_t is not None else h0_t)
        torch.autograd.grad(out, inputs, grad_outputs=grad_t)

    def torch_native_call():
        with torch.backends.mkldnn.flags(enabled=False):
            torch_call()

    return numba_call, torch_call, torch_native_call


def uses_onednn(cell, dtype) -> bool:
    """Whether torch runs this cell through oneDNN's fused RNN on the CPU (torch 2.x)."""
    return cell == "lstm" and dtype == torch.float32


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                     if line.startswith("Model name"))
    except Exception:  # noqa: BLE001 - lscpu missing is not an error for a benchmark
        model = platform.processor() or "unknown CPU"
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=100 only, fewer repetitions")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for torch, numba and the BLAS, the same on both sides "
                             "(default 1: the kernels are serial and one step's GEMM is too "
                             "small to split; on 2 shared cores extra threads only spin)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=8)
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--hidden", default="32,64,128")
    parser.add_argument("--lengths", default=None, help="default 100,1000 (--quick: 100)")
    args = parser.parse_args(argv)

    lengths = [int(v) for v in (args.lengths or ("100" if args.quick else "100,1000")).split(",")]
    hidden = [int(v) for v in args.hidden.split(",")]
    cells = args.cells.split(",")
    min_time, min_reps, max_reps = (0.3, 3, 10) if args.quick else (2.0, 7, 100)

    # mkldnn.flags() warns about TF32 on Intel GPUs every time it is entered
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    blas_limit = threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas")

    print(f"# {datetime.date.today()} | CPU: {machine()} | {args.threads} thread(s) each | "
          f"numba {numba.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"torch {torch.__version__} | B={args.batch}, I={args.input_size}")
    print("| cell | dtype | H | T | numba ms | torch ms | torch/numba "
          "| torch, oneDNN off, ms | that/numba |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for dtype in [getattr(torch, name) for name in args.dtypes.split(",")]:
        for cell in cells:
            for T in lengths:
                for H in hidden:
                    numba_call, torch_call, native_call = make_case(
                        cell, H, T, args.batch, args.input_size, dtype)
                    calls = [numba_call, torch_call]
                    if uses_onednn(cell, dtype):
                        calls.append(native_call)
                    times = best_times(calls, min_time, min_reps, max_reps)
                    t_numba, t_torch = times[:2]
                    native = (f"{1e3 * times[2]:.2f} | {times[2] / t_numba:.2f}"
                              if len(times) == 3 else "= | =")
                    print(f"| {cell} | {str(dtype).removeprefix('torch.')} | {H} | {T} | "
                          f"{1e3 * t_numba:.2f} | {1e3 * t_torch:.2f} | "
                          f"{t_torch / t_numba:.2f} | {native} |", flush=True)
    blas_limit.restore_original_limits()


if __name__ == "__main__":
    main()
