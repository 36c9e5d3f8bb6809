"""Estimated cost of the standing benchmark (config/benchmark.yaml), per method.

    .venv/bin/python benchmarks/benchmark_cost.py                  # plug-in methods timed
    .venv/bin/python benchmarks/benchmark_cost.py --no-timing      # the FLOP model alone
    .venv/bin/python benchmarks/benchmark_cost.py --cores 2 --steps 100

The FLOP model (rnnbench.chunks.estimate_seconds) prices the Numba kernels of the built-in
cells. A plug-in cell trains in a Python loop over time on the torch backend, whose per-step
overheads the model does not know, so each plug-in method is timed on each of the benchmark's
tasks at its longest T, with the benchmark's other fields: `--steps` training steps, one
evaluation and the two gradient-flow profiles of a run, in CPU seconds of this process (one
thread, as the pipeline's jobs). rnnbench.benchmark.method_seconds scales those to every run.
Totals are core-seconds at the full step budget (early stopping only shortens runs); minutes
assume `--cores` cores busy all the time.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from rnnbench import tasks
from rnnbench.backends import make_backend
from rnnbench.benchmark import BENCHMARK, method_seconds
from rnnbench.cli import set_threads
from rnnbench.models import is_plugin
from rnnbench.study import load_study
from rnnbench.train import batch_seed


def cpu_seconds(work) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def time_run(cfg, steps: int) -> tuple[float, float, float, float]:
    """(sequence length, s per training step, s per evaluation, s of the two profiles)."""
    task = tasks.make(cfg.task, cfg.T, **cfg.task_options)
    backend = make_backend(cfg, task)
    batches = [task.sample(cfg.batch_size, batch_seed(cfg.seed, i)) for i in range(steps + 1)]
    backend.step(batches[0])  # first-call overheads are not per step
    per_step = cpu_seconds(lambda: [backend.step(b) for b in batches[1:]]) / steps
    eval_batch = task.sample(cfg.eval_size, cfg.eval_seed, split="test")
    per_eval = cpu_seconds(lambda: backend.predict(eval_batch.x))
    diag = task.sample(min(cfg.eval_size, 64), cfg.eval_seed + 1, split="test")
    profiles = 2 * cpu_seconds(lambda: backend.gradflow(diag, "end", 0))
    return task.max_length, per_step, per_eval, profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default=BENCHMARK)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100, help="training steps timed per run")
    parser.add_argument("--no-timing", action="store_true", help="the FLOP model for all")
    args = parser.parse_args()
    set_threads(1)
    study = load_study(args.benchmark)
    runs = study.runs()
    timings = {}
    if not args.no_timing:
        for method in study.methods:
            for task in dict.fromkeys(c.task for c in runs if c.method == method):
                mine = [c for c in runs if c.method == method and c.task == task]
                if not is_plugin(mine[0].cell):
                    continue
                cfg = max(mine, key=lambda c: c.T)
                timings[method, task] = timing = time_run(cfg, args.steps)
                print(f"timed {method:8s} {task:15s} T={cfg.T:4d} hidden={cfg.hidden:4d}: "
                      f"{timing[1] * 1e3:7.1f} ms/step, {timing[2]:6.2f} s/evaluation, "
                      f"{timing[3]:5.2f} s profiles", flush=True)
    totals = method_seconds(study, timings)
    counts = pd.Series([c.method for c in runs]).value_counts()
    print(f"\n{args.benchmark}: {len(runs)} runs; per method, core-seconds at the full step "
          f"budget and minutes on {args.cores} cores:")
    for method, seconds in totals.items():
        timed = any(m == method for m, _ in timings)
        print(f"  {method:10s} {counts[method]:4d} runs {seconds:8.0f} core-s "
              f"{seconds / 60 / args.cores:6.1f} min  ({'timed' if timed else 'FLOP model'})")
    total = sum(totals.values())
    print(f"  {'all':10s} {len(runs):4d} runs {total:8.0f} core-s {total / 60 / args.cores:6.1f} min")


if __name__ == "__main__":
    main()
