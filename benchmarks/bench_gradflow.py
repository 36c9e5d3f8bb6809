"""Time per gradient-flow profile: the Numba path of `reference.jacobian_profile` vs its numpy
reference (method="numpy"), on the inputs a run's profile sees.

    .venv/bin/python benchmarks/bench_gradflow.py            # H 32, 64; T 50, 100, 200
    .venv/bin/python benchmarks/bench_gradflow.py --quick    # H 32, T 100 only

Each case builds the Numba backend of a run (task adding, the default init), draws the 64
diagnostic sequences the training loop draws, and times the whole profile (forward pass, BPTT,
Jacobian products) both ways, as `NumbaBackend.gradflow` calls it. Times are the best of
several alternating repetitions (robust on shared cores) in CPU seconds of this process (the
BLAS is limited to --threads, default 1, as in training); numpy/numba > 1 means the Numba path
is faster. The last column is the largest relative difference of jacobian_norm between the
two (grad_norm, bound and forget_product are computed once, by the same code, for both).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import time

import numba
import numpy as np
import scipy
import scipy.linalg.cython_blas  # noqa: F401 - load the BLAS numba calls, so threadpoolctl sees it
import threadpoolctl

from bench_reference import best_times  # this script's folder is on sys.path
from rnnbench import reference
from rnnbench.config import RunConfig
from rnnbench.backends.numba_backend import NumbaBackend
from rnnbench.tasks import make as make_task
from rnnbench.tasks.losses import loss_grad

# cell:activation[:init]; the last is the IRNN (relu, identity init), whose products are
# diagonal with a many-fold top singular value
CELLS = ("rnn:tanh", "rnn:relu", "rnn:identity", "rnn:sigmoid", "lstm:tanh", "gru:tanh",
         "rnn:relu:identity")


def profile_inputs(cell: str, activation: str, H: int, T: int, seed: int = 0,
                   init: str = "default"):
    """(cell, params, x, h0, c0, activation, grad_last) exactly as NumbaBackend.gradflow passes
    them to the kernels for the start-of-training profile of a run."""
    cfg = RunConfig(task="adding", T=T, cell=cell, activation=activation, hidden=H,
                    init=init, backend="numba", dtype="float64", seed=seed)
    task = make_task(cfg.task, cfg.T, **cfg.task_options)
    backend = NumbaBackend(cfg, task)
    batch = task.sample(min(cfg.eval_size, 64), cfg.eval_seed + 1, split="test")
    states = backend._states(batch.x)
    d_out = np.asarray(loss_grad(task.loss_kind, backend._readout(states.h), batch.y))
    d_last = d_out[:, -1] if task.per_step else d_out
    grad_last = d_last.reshape(len(batch.x), -1) @ backend.params["head_weight"]
    params = {k: v.astype(np.float64) for k, v in backend._rnn_params().items()}
    x = np.ascontiguousarray(np.asarray(batch.x, dtype=np.float64).transpose(1, 0, 2))
    h0 = np.zeros((x.shape[1], H))
    c0 = h0.copy() if cell == "lstm" else None
    return cell, params, x, h0, c0, activation, grad_last


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except Exception:  # noqa: BLE001 - lscpu missing is not an error for a benchmark
        return platform.processor() or "unknown CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="H 32, T 100 only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cells", default=",".join(CELLS), help="cell:activation[:init], ...")
    parser.add_argument("--hidden", default=None, help="default 32,64 (--quick: 32)")
    parser.add_argument("--lengths", default=None, help="default 50,100,200 (--quick: 100)")
    args = parser.parse_args(argv)
    hidden = [int(v) for v in (args.hidden or ("32" if args.quick else "32,64")).split(",")]
    lengths = [int(v) for v in (args.lengths or ("100" if args.quick else "50,100,200")).split(",")]
    min_time, min_reps, max_reps = (1.0, 5, 20) if args.quick else (3.0, 7, 50)

    numba.set_num_threads(args.threads)
    blas_limit = threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas")
    print(f"# {datetime.date.today()} | CPU: {machine()} | {args.threads} thread(s) | "
          f"numba {numba.__version__}, numpy {np.__version__}, scipy {scipy.__version__} | B=64")
    print("| cell | H | T | numpy ms | numba ms | numpy/numba | max rel. diff |")
    print("|---|---|---|---:|---:|---:|---:|")
    for spec in args.cells.split(","):
        cell, activation, *init = spec.split(":")
        for H in hidden:
            for T in lengths:
                inputs = profile_inputs(cell, activation, H, T, init=init[0] if init else "default")
                results = {}

                def call(method, inputs=inputs, results=results):
                    results[method] = reference.jacobian_profile(*inputs, method=method)

                t_numpy, t_numba = best_times([lambda: call("numpy"), lambda: call("numba")],
                                              min_time, min_reps, max_reps,
                                              clock=time.process_time)
                old, new = results["numpy"]["jacobian_norm"], results["numba"]["jacobian_norm"]
                with np.errstate(invalid="ignore", divide="ignore"):
                    diff = np.nanmax(np.where(old == new, 0.0, np.abs(new - old) / np.abs(old)))
                name = " ".join([cell if cell != "rnn" else f"rnn {activation}", *init])
                print(f"| {name} | {H} | {T} | {1e3 * t_numpy:.1f} | {1e3 * t_numba:.1f} | "
                      f"{t_numpy / t_numba:.1f} | {diff:.1e} |", flush=True)
    blas_limit.restore_original_limits()


if __name__ == "__main__":
    main()
