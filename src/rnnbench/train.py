"""One run: train, evaluate on fixed held-out sequences, stop when solved, record everything.

The loop is backend-agnostic: a backend (`backends/`, the `Backend` protocol) owns the
parameters and does one optimisation step; this module owns the data stream and the
checkpoints, and a `RunState` (run_state.py) the evaluations, divergence detection and the
records. The data of step i is a
pure function of (seed, i), so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from . import records, tasks
from .config import RunConfig
from .run_state import RunResult, RunState, StepOutcome, held_out_batches

CHECKPOINT = "checkpoint.pt"


def batch_seed(seed: int, step: int) -> int:
    """Seed of the training batch at `step`: independent streams per (seed, step)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def progress_bar(total: int, desc: str, enabled: bool | None):
    """A tqdm bar on a terminal (None: when stderr is one), else None: nothing in logs
    (Snakemake redirects stderr to a file)."""
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("RNNBENCH_NO_PROGRESS")
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def run(config, out_dir=None, progress: bool | None = None, stop_after: int | None = None,
        ) -> RunResult:
    """Train one run. `config` is a RunConfig or a dict of its fields.

    With `out_dir` the result files are written there atomically (summary last), and with
    `checkpoint_every` > 0 a checkpoint is kept there and resumed from. `stop_after` ends the
    process's work after that many steps without writing results (used to test resumption).
    """
    from .backends import make_backend  # here: `import rnnbench` loads no backend

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    if cfg.match_params:  # it sets hidden (a study has resolved it already)
        from .models import resolve_hidden  # torch: it counts models' parameters
        cfg = resolve_hidden(cfg)
    task = tasks.make(cfg.task, cfg.T, **cfg.task_options)
    backend = make_backend(cfg, task)
    out_dir = Path(out_dir) if out_dir is not None else None
    checkpoint = out_dir / CHECKPOINT if out_dir is not None and cfg.checkpoint_every else None

    eval_batch, diag_batch = held_out_batches(cfg, task)

    state = RunState.fresh(cfg, task, backend, diag_batch)
    if checkpoint is not None and checkpoint.exists():
        state.load_checkpoint(checkpoint, backend)
        print(f"resuming run {cfg.run_id()} from its checkpoint at step {state.step}", flush=True)

    bar = progress_bar(cfg.steps, f"{cfg.method or cfg.cell} T={cfg.T} seed={cfg.seed}", progress)
    t_start = time.perf_counter() - state.wall_time_s
    if state.step == 0 and not state.curve:
        state.record_eval(0, backend.predict(eval_batch.x), eval_batch.y)
    while state.running():
        batch = task.sample(cfg.batch_size, batch_seed(cfg.seed, state.step), split="train")
        loss, grad_norm, clipped = backend.step(batch)
        step = state.step + 1
        if bar is not None:
            bar.update(1)
        outcome = state.record_step(step, loss, grad_norm, clipped)
        if outcome is StepOutcome.DIVERGED:
            break
        if outcome is StepOutcome.EVALUATE:
            state.record_eval(step, backend.predict(eval_batch.x), eval_batch.y,
                              loss, grad_norm, clipped)
        if state.gradflow_due(step):
            state.record_gradflow(backend.gradflow(diag_batch, f"step {step}", step))
        state.wall_time_s = time.perf_counter() - t_start
        if checkpoint is not None and step % cfg.checkpoint_every == 0:
            state.save_checkpoint(checkpoint, backend)
        if stop_after is not None and step >= stop_after:
            if bar is not None:
                bar.close()
            return None
    if bar is not None:
        bar.close()
    state.wall_time_s = time.perf_counter() - t_start

    state.record_gradflow(backend.gradflow(diag_batch, "end", state.step))
    result = state.to_result(backend_name=backend.name, device=backend.device,
                             spectral_radius_end=backend.spectral_radius(),
                             n_params=backend.n_params())
    if out_dir is not None:
        records.write_run(out_dir, result.summary, result.curve, result.gradflow)
        (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return result
