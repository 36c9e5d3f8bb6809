"""The bookkeeping of one run, shared by every engine (`train.run`, `ensemble.run_group`).

A `RunState` records what happens to one run: a curve row per step, the evaluations, the
divergence rule, solving and early stop, the gradient-flow profiles; at the end `to_result`
turns it into the run's records. It never computes: the engine trains and predicts, and
reports each step (`record_step`), evaluation (`record_eval`) and profile (`record_gradflow`).
`state_dict` / `load_state_dict` (and the checkpoint file, with the backend's state) let a
resumed run continue to the result an uninterrupted one gives.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from . import records
from .config import RunConfig
from .diagnostics import COLUMNS as GRADFLOW_COLUMNS

if TYPE_CHECKING:
    from .tasks import Batch, Task

CURVE_COLUMNS = ("step", "train_loss", "eval_loss", "eval_error", "grad_norm", "clipped")
PROFILE_BATCH = 64             # held-out sequences of a gradient-flow profile
NOT_SAVED = ("cfg", "task")     # a checkpoint stores the config; the task follows from it


def held_out_batches(cfg: RunConfig, task: "Task") -> tuple["Batch", "Batch"]:
    """A run's fixed held-out sets, both from the test split: the evaluation batch (eval_size
    sequences from eval_seed) and the gradient-flow profiles' (at most PROFILE_BATCH, from
    eval_seed + 1)."""
    return (task.sample(cfg.eval_size, cfg.eval_seed, split="test"),
            task.sample(min(cfg.eval_size, PROFILE_BATCH), cfg.eval_seed + 1, split="test"))


@dataclass
class RunResult:
    summary: dict
    curve: pd.DataFrame
    gradflow: pd.DataFrame


class StepOutcome(enum.Enum):
    """What the engine does after `RunState.record_step`."""

    DIVERGED = "diverged"   # recorded; the run ends now
    EVALUATE = "evaluate"   # evaluate now; `record_eval` appends the step's curve row
    LOGGED = "logged"       # the curve row is appended; train on


@dataclass
class RunState:
    """Everything a run has recorded so far. `step` is the number of optimisation steps done;
    `solved` means solved at some evaluation (the run ends there only with `cfg.early_stop`)."""

    cfg: RunConfig
    task: Task = field(repr=False)
    spectral_radius_start: float = math.nan
    gradflow: list = field(default_factory=list)   # profiles: DataFrame, or None (no instrument)
    curve: list = field(default_factory=list)      # one dict per row, keys CURVE_COLUMNS
    step: int = 0
    solved: bool = False
    steps_to_solve: float = math.nan
    diverged: bool = False
    diverged_step: float = math.nan
    n_clipped: int = 0
    best_eval_loss: float = math.inf
    initial_loss: float = math.nan                 # the step-0 evaluation's, for divergence
    wall_time_s: float = 0.0

    @classmethod
    def fresh(cls, cfg: RunConfig, task: Task, backend, diag_batch) -> "RunState":
        """A run before its first step: the backend's starting profile and spectral radius."""
        start = backend.gradflow(diag_batch, "start", 0)
        return cls(cfg, task, spectral_radius_start=backend.spectral_radius(), gradflow=[start])

    # -- during the run ------------------------------------------------------------------
    def running(self) -> bool:
        """Steps left, not diverged, and not stopped early by solving."""
        stopped = self.solved and self.cfg.early_stop
        return self.step < self.cfg.steps and not stopped and not self.diverged

    def record_step(self, step: int, loss: float, grad_norm: float, clipped: bool) -> StepOutcome:
        """Book-keeping after optimisation step `step` (training loss, gradient norm before
        clipping, whether it was clipped)."""
        self.step = step
        self.n_clipped += int(clipped)
        limit = self.cfg.divergence_factor * max(self.initial_loss, self.task.baseline_loss)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)) or loss > limit:
            self.diverged, self.diverged_step = True, step
            self.curve.append(_curve_row(step, loss, grad_norm, clipped))
            return StepOutcome.DIVERGED
        if step % self.cfg.eval_interval == 0 or step == self.cfg.steps:
            return StepOutcome.EVALUATE
        self.curve.append(_curve_row(step, loss, grad_norm, clipped))
        return StepOutcome.LOGGED

    def record_eval(self, step: int, pred, target, loss=None, grad_norm=None, clipped=None):
        """The evaluation after `step` (0: before training): predictions `pred` on the held-out
        batch whose targets are `target`, and the step's training numbers (None at step 0)."""
        eval_loss = float(self.task.loss(pred, target))
        eval_error = float(self.task.error(pred, target))
        if not math.isfinite(eval_loss):
            # A model whose predictions overflow has diverged, even if the last step looked fine.
            self.diverged, self.diverged_step = True, step
        if step == 0:
            self.initial_loss = eval_loss if math.isfinite(eval_loss) else self.task.baseline_loss
        self.curve.append(_curve_row(step, loss, grad_norm, clipped, eval_loss, eval_error))
        if math.isfinite(eval_loss):
            self.best_eval_loss = min(self.best_eval_loss, eval_loss)
        if self.task.solved(eval_loss, eval_error) and not self.solved:
            self.solved, self.steps_to_solve = True, step

    def gradflow_due(self, step: int) -> bool:
        """An intermediate gradient-flow profile after this step (start and end always)."""
        every = self.cfg.diagnostics_every
        return bool(every) and step % every == 0 and step < self.cfg.steps

    def record_gradflow(self, profile) -> None:
        """A profile (`backend.gradflow(...)`: a DataFrame, or None where nothing is measured)."""
        self.gradflow.append(profile)

    # -- the records ---------------------------------------------------------------------
    def to_result(self, *, backend_name: str, device: str, spectral_radius_end: float,
                  n_params: int, ensemble_size: int | None = None) -> RunResult:
        """The run's summary, curve and gradflow tables (docs/DESIGN.md, "One run")."""
        run_id = self.cfg.run_id()
        curve = pd.DataFrame(self.curve, columns=list(CURVE_COLUMNS))
        curve.insert(0, "run_id", run_id)
        evals = curve.dropna(subset=["eval_loss"])
        final = evals.iloc[-1] if len(evals) else None
        task = self.task
        summary = {
            **self.cfg.record(),
            "run_id": run_id,
            "solved": bool(self.solved),
            "steps_to_solve": self.steps_to_solve,
            "final_eval_loss": float(final["eval_loss"]) if final is not None else math.nan,
            "final_eval_error": float(final["eval_error"]) if final is not None else math.nan,
            "best_eval_loss": self.best_eval_loss if math.isfinite(self.best_eval_loss) else math.nan,
            "diverged": bool(self.diverged),
            "diverged_step": self.diverged_step,
            "steps_done": self.step,
            "spectral_radius_start": self.spectral_radius_start,
            "spectral_radius_end": spectral_radius_end,
            "frac_clipped": self.n_clipped / max(self.step, 1),
            "wall_time_s": self.wall_time_s,
            "task_loss_kind": task.loss_kind,
            "baseline_loss": task.baseline_loss,
            "baseline_error": task.baseline_error,
            "backend_used": backend_name,
            "device_used": device,
            **({} if ensemble_size is None else {"ensemble_size": ensemble_size}),
            "n_params": n_params,
            **records.provenance(device),
        }
        frames = [g for g in self.gradflow if g is not None and len(g)]
        gradflow = (pd.concat(frames, ignore_index=True) if frames
                    else pd.DataFrame(columns=list(GRADFLOW_COLUMNS)))
        gradflow.insert(0, "run_id", run_id)
        return RunResult(summary, curve, gradflow)

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything recorded so far (not cfg and task), as plain values and lists."""
        return {f.name: _copy(getattr(self, f.name)) for f in fields(self)
                if f.name not in NOT_SAVED}

    def load_state_dict(self, saved: dict) -> None:
        saved = dict(saved)
        if "solved_any" in saved:  # written before RunState: "solved" then meant "stopped"
            saved["solved"] = saved.pop("solved_any")
        names = [f.name for f in fields(self) if f.name not in NOT_SAVED]
        missing, unknown = set(names) - set(saved), set(saved) - set(names)
        if missing or unknown:
            raise ValueError(f"run state: missing entries {sorted(missing)}, "
                             f"unknown entries {sorted(unknown)}")
        for name in names:
            setattr(self, name, _copy(saved[name]))

    def save_checkpoint(self, path: Path, backend) -> None:
        """Write config, backend state and this state to `path` atomically."""
        import io

        import torch
        buffer = io.BytesIO()
        torch.save({"config": self.cfg.to_dict(), "backend_name": backend.name,
                    "backend": backend.state_dict(), "state": self.state_dict()}, buffer)
        records.write_bytes(buffer.getvalue(), path)

    def load_checkpoint(self, path: Path, backend) -> None:
        """Restore this state and `backend` from `path` (written for the same config)."""
        import torch
        try:
            saved = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ValueError(f"unreadable checkpoint {path}: {exc}") from None
        if saved["config"] != self.cfg.to_dict():
            raise ValueError(f"checkpoint {path} belongs to another config; delete it to start over")
        # `auto` may pick another backend than the one that wrote it (another device, or a
        # newer version that trains the run elsewhere); their states differ in layout.
        written_by = saved.get("backend_name") or (  # older checkpoints: by their layout
            "numba" if "params" in saved["backend"] else "torch")
        if written_by != backend.name:
            raise ValueError(f"checkpoint {path} was written by backend {written_by!r}, this run "
                             f"trains on {backend.name!r}: delete it to start over, or set "
                             f"backend: {written_by}")
        backend.load_state_dict(saved["backend"])
        self.load_state_dict(saved["state"])


def _copy(value):
    return list(value) if isinstance(value, list) else value


def _curve_row(step, loss, grad_norm, clipped, eval_loss=math.nan, eval_error=math.nan) -> dict:
    return {"step": step, "train_loss": float(loss) if loss is not None else math.nan,
            "eval_loss": float(eval_loss), "eval_error": float(eval_error),
            "grad_norm": float(grad_norm) if grad_norm is not None else math.nan,
            "clipped": bool(clipped) if clipped is not None else False}
