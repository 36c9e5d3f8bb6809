"""One run: train, evaluate on fixed held-out sequences, stop when solved, record everything.

The loop is backend-agnostic: a backend (`backends/`, the `Backend` protocol) owns the
parameters and does one optimisation step; this module owns the data stream and the
checkpoints, and a `RunState` (run_state.py) the evaluations, divergence detection and the
records. The data of step i is a
pure function of (seed, i), so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import contextlib
import fcntl
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
    # Imported here so that `import rnnbench` (and the Snakemake process) stays free of torch
    # until a run is built.
    from .backends import make_backend
    from .models import resolve_hidden

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    cfg = resolve_hidden(cfg)  # match_params sets hidden (a study has resolved it already)
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


CLAIM_SUFFIX = ".claim"  # beside a run's folder: the lock of the process training the run


@contextlib.contextmanager
def claimed(out_dir, wait: bool):
    """Hold run `out_dir`'s claim, an flock on `<out_dir>.claim`, so that chunk jobs taking runs
    from each other never train one run at once; the kernel releases it when the holder exits,
    killed or not. Yields whether it is held: without `wait`, False if another process holds it.
    The file is removed once the run's summary exists (a later claimant checks for the summary
    after taking the lock, so it never trains a finished run through a removed file)."""
    path = Path(f"{out_dir}{CLAIM_SUFFIX}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
        if finished(out_dir):
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def finished(out_dir) -> bool:
    """A run is finished once its summary exists (written last, atomically)."""
    return (Path(out_dir) / records.RUN_FILES[-1]).exists()


def run_chunk(runs, progress: bool | None = None, others=(), time_limit_s: float | None = None,
              ) -> list[str]:
    """Train `runs`, (config, out_dir) pairs, one after another in this process, each exactly as
    `run(config, out_dir)` would alone. A run whose folder already holds its summary is done and
    skipped, so a chunk killed half-way keeps the runs it finished and a rerun does the rest.
    A run that raises is reported and the others still train; returns the failed run ids.

    Chunk jobs of one study share out the work at the end: once its own runs are done or taken,
    a job trains runs of other chunks, `others` (config, out_dir, estimated seconds), in the
    order given (their owners' last runs first), as long as the estimate, three times over, fits
    in the job's `time_limit_s`. A run is trained by whoever claims it first (`claimed`); a job
    ends when each of its own runs is finished, waiting for those that others are training and
    training itself any that another job failed on."""
    start = time.perf_counter()
    failed, taken = [], []
    for config, out_dir in runs:
        outcome = _claim_and_train(config, out_dir, progress, wait=False, own=True)
        if outcome == "taken":
            taken.append((config, out_dir))
        elif outcome == "failed":
            failed.append(_config(config).run_id())
    for config, out_dir, seconds in others:
        if time_limit_s is not None and time.perf_counter() - start + 3 * seconds > time_limit_s:
            continue
        # a run that fails here is its owner's to train again (and to report)
        _claim_and_train(config, out_dir, progress, wait=False, own=False)
    for config, out_dir in taken:
        if _claim_and_train(config, out_dir, progress, wait=True, own=True) == "failed":
            failed.append(_config(config).run_id())
    return failed


def _config(config) -> RunConfig:
    return config if isinstance(config, RunConfig) else RunConfig.from_dict(config)


def _claim_and_train(config, out_dir, progress, wait: bool, own: bool) -> str:
    """"done" (trained now or before), "taken" (another process holds it) or "failed". Only
    the chunk's `own` runs are reported as already done: the others' would fill its log."""
    import traceback

    cfg = _config(config)
    if finished(out_dir):
        if own:
            print(f"run {cfg.run_id()}: already done in {out_dir}", flush=True)
        return "done"
    with claimed(out_dir, wait) as held:
        if not held:
            return "taken"
        if finished(out_dir):  # finished by the process that held it before
            return "done"
        try:
            s = run(cfg, out_dir=out_dir, progress=progress).summary
        except Exception:  # one broken run must not take the chunk's other runs with it
            traceback.print_exc()
            print(f"run {cfg.run_id()}: FAILED ({out_dir})", flush=True)
            return "failed"
    print(f"run {s['run_id']}: solved={s['solved']} steps={s['steps_done']} "
          f"final_eval_loss={s['final_eval_loss']:.4g} diverged={s['diverged']} "
          f"backend={s['backend_used']} wall={s['wall_time_s']:.1f}s", flush=True)
    return "done"
