"""One run: train, evaluate on fixed held-out sequences, stop when solved, record everything.

The loop is backend-agnostic: a backend (`backends.py`) owns the parameters and does one
optimisation step; this module owns the data stream, evaluation, divergence detection,
checkpoints and the records. The data of step i is a pure function of (seed, i), so a resumed
run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import records, tasks
from .config import RunConfig

CHECKPOINT = "checkpoint.pt"


@dataclass
class RunResult:
    summary: dict
    curve: pd.DataFrame
    gradflow: pd.DataFrame


def batch_seed(seed: int, step: int) -> int:
    """Seed of the training batch at `step`: independent streams per (seed, step)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def _progress(total: int, desc: str, enabled: bool | None):
    # A bar on a terminal, nothing in logs (Snakemake redirects stderr to a file).
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
    from .backends import make_backend

    from .models import resolve_hidden

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    cfg = resolve_hidden(cfg)  # match_params sets hidden (a study has resolved it already)
    task = tasks.make(cfg.task, cfg.T, **cfg.task_options)
    backend = make_backend(cfg, task)
    run_id = cfg.run_id()
    out_dir = Path(out_dir) if out_dir is not None else None

    eval_batch = task.sample(cfg.eval_size, cfg.eval_seed, split="test")
    diag_batch = task.sample(min(cfg.eval_size, 64), cfg.eval_seed + 1, split="test")

    state = _fresh_state(backend, diag_batch)
    if out_dir is not None and cfg.checkpoint_every and (out_dir / CHECKPOINT).exists():
        state = _load_checkpoint(out_dir / CHECKPOINT, cfg, backend)
        print(f"resuming run {run_id} from its checkpoint at step {state['step']}", flush=True)

    bar = _progress(cfg.steps, f"{cfg.method or cfg.cell} T={cfg.T} seed={cfg.seed}", progress)
    t_start = time.perf_counter() - state["wall_time_s"]
    step = state["step"]
    if step == 0 and not state["curve"]:
        _evaluate(state, backend, task, eval_batch, 0, None, None, None)
    while step < cfg.steps and not state["solved"] and not state["diverged"]:
        batch = task.sample(cfg.batch_size, batch_seed(cfg.seed, step), split="train")
        loss, grad_norm, clipped = backend.step(batch)
        step += 1
        if bar is not None:
            bar.update(1)
        outcome = record_step(state, cfg, task, step, loss, grad_norm, clipped)
        if outcome == "diverged":
            break
        if outcome == "evaluate":
            _evaluate(state, backend, task, eval_batch, step, loss, grad_norm, clipped)
        if diagnostics_due(cfg, step):
            state["gradflow"].append(backend.gradflow(diag_batch, f"step {step}", step))
        state["wall_time_s"] = time.perf_counter() - t_start
        if out_dir is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            _save_checkpoint(out_dir / CHECKPOINT, cfg, backend, state)
        if stop_after is not None and step >= stop_after:
            if bar is not None:
                bar.close()
            return None
    if bar is not None:
        bar.close()
    state["wall_time_s"] = time.perf_counter() - t_start

    state["gradflow"].append(backend.gradflow(diag_batch, "end", step))
    result = _result(cfg, task, backend, state, run_id)
    if out_dir is not None:
        records.write_run(out_dir, result.summary, result.curve, result.gradflow)
        (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return result


def run_chunk(runs, progress: bool | None = None) -> list[str]:
    """Train `runs`, (config, out_dir) pairs, one after another in this process, each exactly as
    `run(config, out_dir)` would alone. A run whose folder already holds its summary is done and
    skipped, so a chunk killed half-way keeps the runs it finished and a rerun does the rest.
    A run that raises is reported and the others still train; returns the failed run ids."""
    import traceback

    failed = []
    for config, out_dir in runs:
        cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
        if (Path(out_dir) / records.RUN_FILES[-1]).exists():
            print(f"run {cfg.run_id()}: already done in {out_dir}", flush=True)
            continue
        try:
            s = run(cfg, out_dir=out_dir, progress=progress).summary
        except Exception:  # one broken run must not take the chunk's other runs with it
            traceback.print_exc()
            print(f"run {cfg.run_id()}: FAILED ({out_dir})", flush=True)
            failed.append(cfg.run_id())
            continue
        print(f"run {s['run_id']}: solved={s['solved']} steps={s['steps_done']} "
              f"final_eval_loss={s['final_eval_loss']:.4g} diverged={s['diverged']} "
              f"backend={s['backend_used']} wall={s['wall_time_s']:.1f}s", flush=True)
    return failed


def record_step(state, cfg, task, step, loss, grad_norm, clipped) -> str:
    """Book-keeping after optimisation step `step`, shared by every engine: returns
    "diverged" (recorded; the run ends), "evaluate" (the caller evaluates, which appends the
    curve row) or "logged" (curve row appended)."""
    state["step"] = step
    state["n_clipped"] += int(clipped)
    limit = cfg.divergence_factor * max(state["initial_loss"], task.baseline_loss)
    if not (math.isfinite(loss) and math.isfinite(grad_norm)) or loss > limit:
        state["diverged"], state["diverged_step"] = True, step
        state["curve"].append(_curve_row(step, loss, grad_norm, clipped))
        return "diverged"
    if step % cfg.eval_interval == 0 or step == cfg.steps:
        return "evaluate"
    state["curve"].append(_curve_row(step, loss, grad_norm, clipped))
    return "logged"


def diagnostics_due(cfg, step) -> bool:
    """An intermediate gradient-flow profile after this step (start and end always)."""
    return bool(cfg.diagnostics_every) and step % cfg.diagnostics_every == 0 and step < cfg.steps


def _fresh_state(backend, diag_batch) -> dict:
    return {
        "step": 0, "curve": [], "gradflow": [backend.gradflow(diag_batch, "start", 0)],
        "solved": False, "solved_any": False, "steps_to_solve": math.nan, "diverged": False,
        "diverged_step": math.nan, "n_clipped": 0, "best_eval_loss": math.inf,
        "initial_loss": math.nan, "wall_time_s": 0.0,
        "spectral_radius_start": backend.spectral_radius(),
    }


def _curve_row(step, loss, grad_norm, clipped, eval_loss=math.nan, eval_error=math.nan):
    return {"step": step, "train_loss": float(loss) if loss is not None else math.nan,
            "eval_loss": float(eval_loss), "eval_error": float(eval_error),
            "grad_norm": float(grad_norm) if grad_norm is not None else math.nan,
            "clipped": bool(clipped) if clipped is not None else False}


def _evaluate(state, backend, task, eval_batch, step, loss, grad_norm, clipped):
    pred = backend.predict(eval_batch.x)
    eval_loss, eval_error = float(task.loss(pred, eval_batch.y)), float(task.error(pred, eval_batch.y))
    if not math.isfinite(eval_loss):
        # A model whose predictions overflow has diverged, even if the last step looked fine.
        state["diverged"], state["diverged_step"] = True, step
    if step == 0:
        state["initial_loss"] = eval_loss if math.isfinite(eval_loss) else task.baseline_loss
    state["curve"].append(_curve_row(step, loss, grad_norm, clipped, eval_loss, eval_error))
    if math.isfinite(eval_loss):
        state["best_eval_loss"] = min(state["best_eval_loss"], eval_loss)
    if task.solved(eval_loss, eval_error) and not state["solved_any"]:
        state["solved_any"], state["steps_to_solve"] = True, step
        state["solved"] = backend.cfg.early_stop  # `solved` ends the loop; only with early stop


def _result(cfg, task, backend, state, run_id) -> RunResult:
    curve = pd.DataFrame(state["curve"], columns=list(_curve_row(0, 0, 0, False)))
    curve.insert(0, "run_id", run_id)
    evals = curve.dropna(subset=["eval_loss"])
    final = evals.iloc[-1] if len(evals) else None
    steps = max(state["step"], 1)
    summary = {
        **cfg.record(),
        "run_id": run_id,
        "solved": bool(state["solved_any"]),
        "steps_to_solve": state["steps_to_solve"],
        "final_eval_loss": float(final["eval_loss"]) if final is not None else math.nan,
        "final_eval_error": float(final["eval_error"]) if final is not None else math.nan,
        "best_eval_loss": state["best_eval_loss"] if math.isfinite(state["best_eval_loss"]) else math.nan,
        "diverged": bool(state["diverged"]),
        "diverged_step": state["diverged_step"],
        "steps_done": state["step"],
        "spectral_radius_start": state["spectral_radius_start"],
        "spectral_radius_end": backend.spectral_radius(),
        "frac_clipped": state["n_clipped"] / steps,
        "wall_time_s": state["wall_time_s"],
        "task_loss_kind": task.loss_kind,
        "baseline_loss": task.baseline_loss,
        "baseline_error": task.baseline_error,
        "backend_used": backend.name,
        "device_used": backend.device,
        "n_params": backend.n_params(),
        **records.provenance(backend.device),
    }
    frames = [g for g in state["gradflow"] if g is not None and len(g)]
    gradflow = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["phase", "step", "lag", "grad_norm", "jacobian_norm", "bound", "forget_product"])
    gradflow.insert(0, "run_id", run_id)
    return RunResult(summary, curve, gradflow)


# --- checkpoints: everything needed to continue bit-for-bit ---------------------------------
def _save_checkpoint(path: Path, cfg, backend, state):
    import io

    import torch
    buffer = io.BytesIO()
    torch.save({"config": cfg.to_dict(), "backend": backend.state_dict(), "state": state}, buffer)
    records.write_bytes(buffer.getvalue(), path)


def _load_checkpoint(path: Path, cfg, backend) -> dict:
    import torch
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"unreadable checkpoint {path}: {exc}") from None
    if saved["config"] != cfg.to_dict():
        raise ValueError(f"checkpoint {path} belongs to another config; delete it to start over")
    backend.load_state_dict(saved["backend"])
    return saved["state"]
