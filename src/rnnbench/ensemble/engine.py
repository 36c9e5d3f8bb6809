"""Many runs at once: G members trained together with stacked weights (one process, one device).

`run_group(configs, out_dirs=None, device=None) -> list[RunResult]` trains a group of
compatible runs (`grouping.check_group`) and returns, and with `out_dirs` writes, exactly the
records `train.run` would give for each run on its own: the same data stream
(`train.batch_seed(seed, step)`), the same starting weights (`init.build_initialised_model`,
through a CPU twin `TorchBackend` per member), the same evaluation schedule, divergence rule,
early stop, curve/summary/gradflow rows (one `run_state.RunState` per member, as `train.run`
keeps), with `backend_used = "ensemble"` and the extra column `ensemble_size`.

Each member keeps its own everything:
- its data: member g draws its batch from its own seed; when members draw different lengths at
  a step (Pascanu-type tasks draw one length per batch) the shorter sequences are left-padded
  and those steps masked, so the state stays h0 until the member's first real step;
- its gradient norm (global L2 over all its parameters, in float64) and clip decision
  (none / norm / value with its own threshold);
- its optimiser state and hyper-parameters: SGD, SGD+momentum, Adam and RMSprop with
  torch.optim's update rules, vectorised over the members (per-member lr, momentum/beta1/alpha;
  members with different optimisers are combined by masks);
- its stopping: a member that is solved (with early stop), diverged, or done is retired: its
  final weights are copied out, its records finished, and from then on it is frozen (masked out
  of every update); the stack is compacted when enough members have left.

Performance switches (CUDA only; both default off: their speed-up and their CUDA paths have
not been verified on a GPU, while the eager path is the one tested against single runs; see
docs/performance.md): `fused=True` compiles the per-step elementwise work of the lstm/gru cell
with `torch.compile`; `cuda_graph=True` captures the whole training step (forward, backward,
clipping, optimiser) in a CUDA graph and replays it (sequences are then always padded to the
task's maximum length so the shapes are static). Environment variables
RNNBENCH_ENSEMBLE_COMPILE=1 / RNNBENCH_ENSEMBLE_CUDA_GRAPH=1 set them for the CLI.

Checkpoints (`checkpoint_every`) are not written for groups: an interrupted ensemble job is
rerun from the start, giving the same results. Each member's files are written when it retires.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import optim, records, tasks
from ..backends import TorchBackend, resolve_device, set_precision
from ..config import RunConfig
from ..run_state import RunResult, RunState, StepOutcome, held_out_batches
from ..tasks import Task
from ..train import batch_seed, progress_bar
from .grouping import check_group
from .stacked import StackedModel

# The training rules' tables (rnnbench.optim); a member's optimiser and clip mode are indices
# into these tuples.
OPTIMIZERS = tuple(optim.OPTIMIZERS)
CLIP_MODES = tuple(optim.CLIP_MODES)
EVAL_BUDGET = 1 << 26              # elements of per-step working memory in one evaluation chunk


# --- losses, one per member -------------------------------------------------------------------

def member_losses(kind: str, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None):
    """Mean loss of every member (G,), as `tasks.losses.torch_loss` computes it for one run.

    mse: out (G, B, 1), y (G, B); ce: out (G, B, C), y (G, B); ce_seq: out (G, B, L, C),
    y (G, B, L), averaged over each member's own B * L_g real steps (`mask` (G, L)).
    """
    G, B = out.shape[0], out.shape[1]
    if kind == "mse":
        return ((out.reshape(G, B) - y.to(out.dtype)) ** 2).mean(dim=1)
    if kind == "ce":
        return F.cross_entropy(out.reshape(G * B, -1), y.reshape(-1), reduction="none").view(G, B).mean(dim=1)
    if kind == "ce_seq":
        L = out.shape[2]
        each = F.cross_entropy(out.reshape(G * B * L, -1), y.reshape(-1), reduction="none").view(G, B, L)
        if mask is None:
            return each.mean(dim=(1, 2))
        each = torch.where(mask[:, None, :], each, torch.zeros((), dtype=each.dtype, device=each.device))
        return each.sum(dim=(1, 2)) / (B * mask.sum(dim=1)).to(each.dtype)
    raise ValueError(f"unknown loss kind {kind!r}")


# --- one training step of every member: gradients, clipping, optimiser ------------------------

class StackedTrainer:
    """Forward, backward, per-member clipping and per-member optimiser update of a StackedModel.

    `settings`: one RunConfig (or object with optimizer, lr, momentum, clip, clip_threshold) per
    member. `step(x, y, mask)` returns a (3, G) float64 tensor on the device: loss, gradient norm
    before clipping, clipped (0/1). Members with `active[g] = False` are frozen: no update of
    their weights or optimiser state (their lanes are still computed, then discarded).
    """

    def __init__(self, model: StackedModel, settings, loss_kind: str, cuda_graph: bool = False):
        self.model, self.loss_kind = model, loss_kind
        p0 = model.params["weight_hh"]
        self.device, self.dtype = p0.device, p0.dtype
        if cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph=True needs the stack on a CUDA device")
        self.cuda_graph = cuda_graph
        settings = list(settings)
        if len(settings) != model.members:
            raise ValueError(f"{len(settings)} member settings for {model.members} members")
        for s in settings:
            if s.optimizer not in OPTIMIZERS:
                raise ValueError(f"field 'optimizer': unknown value {s.optimizer!r}; "
                                 f"allowed: {list(OPTIMIZERS)}")
            if s.clip not in CLIP_MODES:
                raise ValueError(f"field 'clip': unknown value {s.clip!r}; allowed: {list(CLIP_MODES)}")
        f64 = dict(dtype=torch.float64, device=self.device)
        self.settings = settings
        self.lr = torch.tensor([s.lr for s in settings], **f64)
        self.momentum = torch.tensor([s.momentum for s in settings], **f64)
        self.threshold = torch.tensor([s.clip_threshold for s in settings], **f64)
        self.opt = torch.tensor([OPTIMIZERS.index(s.optimizer) for s in settings], device=self.device)
        self.clip_mode = torch.tensor([CLIP_MODES.index(s.clip) for s in settings], device=self.device)
        self.present = sorted({s.optimizer for s in settings})
        self.t = torch.zeros(model.members, **f64)              # optimiser steps taken
        self.active = torch.ones(model.members, dtype=torch.bool, device=self.device)
        self.slots = {name: {k: torch.zeros_like(p, memory_format=torch.contiguous_format).detach()
                             for k, p in model.params.items()}
                      for opt in self.present for name in optim.OPTIMIZERS[opt].slots}
        self._graph = None
        self._static = None

    # -- state ---------------------------------------------------------------------------
    def _state_tensors(self) -> list[torch.Tensor]:
        tensors = [p for p in self.model.params.values()] + [self.t]
        tensors += [s for slot in self.slots.values() for s in slot.values()]
        return tensors

    @torch.no_grad()
    def select(self, index) -> "StackedTrainer":
        """A trainer for the members `index` only (same order), carrying their state over."""
        index = list(index)
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        new = StackedTrainer(self.model.select(index), [self.settings[i] for i in index],
                             self.loss_kind, self.cuda_graph)
        new.t.copy_(self.t.index_select(0, idx))
        new.active.copy_(self.active.index_select(0, idx))
        for name, slot in self.slots.items():
            for k, v in slot.items():
                new.slots[name][k].copy_(v.index_select(0, idx))
        return new

    # -- the step ------------------------------------------------------------------------
    def _view(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Per-member values (G,) as a (G, 1, ...) tensor broadcasting against `like`;
        numbers in like's dtype (as torch.optim casts its Python-float hyper-parameters)."""
        if values.dtype != torch.bool:
            values = values.to(like.dtype)
        return values.view((-1,) + (1,) * (like.dim() - 1))

    def _step_impl(self, x, y, mask):
        model = self.model
        params = model.parameters()
        out = model.forward(x, mask)
        loss = member_losses(self.loss_kind, out, y, mask)
        zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
        total = torch.where(self.active, loss, zero).sum()
        grads = torch.autograd.grad(total, params)
        with torch.no_grad():
            norm, clipped, grads = self._clip(list(grads))
            do = self.active & torch.isfinite(norm)
            self._update(params, grads, do)
            return torch.stack([loss.detach().to(torch.float64), norm, clipped.to(torch.float64)])

    def _clip(self, grads):
        """Per-member global-norm measurement and clipping (rnnbench.clip.clip_ rules)."""
        G = self.model.members
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(G, -1), dim=1, dtype=torch.float64)
                             for g in grads])
        norm = torch.linalg.vector_norm(norms, dim=0)                      # (G,) float64
        finite = torch.isfinite(norm)
        clip_norm = finite & (self.clip_mode == 1) & (norm > self.threshold)
        coef = torch.where(clip_norm, self.threshold / norm, torch.ones_like(norm))
        is_value = finite & (self.clip_mode == 2)
        over = torch.stack([(g.abs() > self._view(self.threshold, g)).reshape(G, -1).any(dim=1)
                            for g in grads]).any(dim=0)
        clip_value = is_value & over
        out = []
        for g in grads:
            thr = self._view(self.threshold, g)
            scaled = g * self._view(coef, g)
            out.append(torch.where(self._view(clip_value, g),
                                   torch.maximum(torch.minimum(g, thr), -thr), scaled))
        return norm, clip_norm | clip_value, out

    def _update(self, params, grads, do):
        """torch.optim's update rules (SGD, SGD momentum, Adam, RMSprop), where `do`."""
        t_next = self.t + 1
        first = self.t == 0
        beta1 = self.momentum                      # momentum / Adam beta1 / RMSprop alpha
        bc1 = 1 - torch.pow(beta1, t_next)
        bc2_sqrt = torch.sqrt(1 - torch.pow(torch.full_like(beta1, optim.ADAM_BETA2), t_next))
        step_size = self.lr / bc1
        for k, p, g in zip(self.model.params.keys(), params, grads):
            new_p = p
            view = lambda v: self._view(v, p)  # noqa: E731
            lr = view(self.lr)
            for opt in self.present:
                sel = view(do & (self.opt == OPTIMIZERS.index(opt)))
                if opt == "sgd":
                    cand = p - lr * g
                elif opt == "momentum":
                    buf = self.slots["buf"][k]
                    new_buf = torch.where(view(first), g, buf * view(beta1) + g)
                    buf.copy_(torch.where(sel, new_buf, buf))
                    cand = p - lr * new_buf
                elif opt == "adam":
                    m, v = self.slots["m"][k], self.slots["v"][k]
                    new_m = torch.lerp(m, g, view(1 - beta1))
                    new_v = v * optim.ADAM_BETA2 + (1 - optim.ADAM_BETA2) * (g * g)
                    m.copy_(torch.where(sel, new_m, m))
                    v.copy_(torch.where(sel, new_v, v))
                    denom = torch.sqrt(new_v) / view(bc2_sqrt) + optim.EPS
                    cand = p - view(step_size) * (new_m / denom)
                else:  # rmsprop
                    sq = self.slots["sq"][k]
                    new_sq = sq * view(beta1) + view(1 - beta1) * (g * g)
                    sq.copy_(torch.where(sel, new_sq, sq))
                    cand = p - lr * (g / (torch.sqrt(new_sq) + optim.EPS))
                new_p = torch.where(sel, cand, new_p)
            p.copy_(new_p)
        self.t.copy_(torch.where(do, t_next, self.t))

    def step(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.cuda_graph:
            return self._step_impl(x, y, mask)
        if self._graph is None or not self._matches(x, y, mask):
            self._capture(x, y, mask)
        self._static["x"].copy_(x, non_blocking=True)
        self._static["y"].copy_(y, non_blocking=True)
        if mask is not None:
            self._static["mask"].copy_(mask, non_blocking=True)
        self._graph.replay()
        return self._static["out"]

    def _matches(self, x, y, mask):
        s = self._static
        return (s["x"].shape == x.shape and s["y"].shape == y.shape
                and (mask is None) == (s["mask"] is None)
                and (mask is None or s["mask"].shape == mask.shape))

    def _capture(self, x, y, mask):
        """Record the whole step in a CUDA graph (warm-up on a side stream, state restored)."""
        static = {"x": x.clone(), "y": y.clone(), "mask": None if mask is None else mask.clone()}
        saved = [t.detach().clone() for t in self._state_tensors()]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._step_impl(static["x"], static["y"], static["mask"])
        torch.cuda.current_stream().wait_stream(stream)
        with torch.no_grad():  # the warm-up steps changed the weights: put them back
            for t, s in zip(self._state_tensors(), saved):
                t.copy_(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static["out"] = self._step_impl(static["x"], static["y"], static["mask"])
        self._graph, self._static = graph, static

    # -- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x: np.ndarray, positions: list[int], per_step: bool) -> list[np.ndarray]:
        """Outputs (float64 numpy, as TorchBackend.predict) of the members at `positions` on
        one batch x (E, L, I) shared by all of them; chunked over members and sequences."""
        model = self.model
        E, L = x.shape[0], x.shape[1]
        gH = model.params["weight_hh"].shape[1]
        chunk_b = min(E, 1024)
        per_member = chunk_b * (6 * gH + (L * 4 * model.hidden if per_step else 0))
        chunk_g = max(1, min(len(positions), EVAL_BUDGET // max(per_member, 1)))
        results = []
        x_dev = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        for g0 in range(0, len(positions), chunk_g):
            pos = positions[g0:g0 + chunk_g]
            if pos == list(range(model.members)):
                params, acts = model.params, model.activations
            else:
                idx = torch.as_tensor(pos, dtype=torch.long, device=self.device)
                params = {k: v.index_select(0, idx) for k, v in model.params.items()}
                acts = model.activations.select(pos)
            outs = [model.forward(x_dev[i:i + chunk_b], params=params, activations=acts)
                    .double().cpu().numpy() for i in range(0, E, chunk_b)]
            stacked = np.concatenate(outs, axis=1)
            results.extend(stacked[j] for j in range(len(pos)))
        return results


# --- the group ------------------------------------------------------------------------------

def run_group(configs, out_dirs=None, device=None, *, fused: bool | None = None,
              cuda_graph: bool | None = None, pad_to_max: bool | None = None,
              compact_at: float | None = None, progress: bool | None = None) -> list[RunResult]:
    """Train a group of compatible runs together; one RunResult per config, in order.

    `configs`: RunConfigs or dicts sharing one `grouping.group_key`. `out_dirs`: None or one
    folder per config (each gets summary/curve/gradflow.parquet like `train.run` writes).
    `device`: None -> the configs' `device` field (auto: cuda if present), or "cpu"/"cuda[:n]".
    `fused`, `cuda_graph`: CUDA speed switches (None: environment, default off; see above).
    `pad_to_max`: pad every batch to the task's maximum length (static shapes; None: with
    CUDA graphs). `compact_at`: drop retired members from the stack once the live fraction is
    at or below this (None: 1.0, i.e. at once, eagerly; 0.5 with CUDA graphs, where compacting
    means a new capture); until then retired members stay in the stack, masked out.
    """
    cfgs = [c if isinstance(c, RunConfig) else RunConfig.from_dict(c, where=f"run {i}")
            for i, c in enumerate(configs)]
    check_group(cfgs)
    if out_dirs is not None:
        out_dirs = [Path(d) for d in out_dirs]
        if len(out_dirs) != len(cfgs):
            raise ValueError(f"{len(out_dirs)} out_dirs for {len(cfgs)} runs")
    options = GroupOptions.resolve(cfgs[0], device, fused, cuda_graph, pad_to_max, compact_at)
    return GroupTraining(cfgs, out_dirs, options).train(progress)


@dataclass(frozen=True)
class GroupOptions:
    """run_group's device and speed arguments, resolved (see run_group)."""

    device: str
    dtype: torch.dtype
    fused: bool
    cuda_graph: bool
    pad_to_max: bool
    compact_at: float

    @classmethod
    def resolve(cls, first: RunConfig, device, fused, cuda_graph, pad_to_max, compact_at):
        dev = resolve_device(first.device if device is None else str(device))
        on_cuda = dev.startswith("cuda")
        if on_cuda and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but no CUDA device is available")
        fused = _env_flag("RNNBENCH_ENSEMBLE_COMPILE") if fused is None else bool(fused)
        cuda_graph = _env_flag("RNNBENCH_ENSEMBLE_CUDA_GRAPH") if cuda_graph is None else bool(cuda_graph)
        fused, cuda_graph = fused and on_cuda, cuda_graph and on_cuda   # CPU: plain eager
        return cls(
            device=dev,
            dtype=torch.float64 if first.dtype == "float64" else torch.float32,
            fused=fused, cuda_graph=cuda_graph,
            pad_to_max=cuda_graph if pad_to_max is None else bool(pad_to_max),
            compact_at=(0.5 if cuda_graph else 1.0) if compact_at is None else float(compact_at))

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")


@dataclass(eq=False)   # members are compared by identity (stack layouts)
class Member:
    """One run of the group: its config, result folder, bookkeeping and result, and its CPU
    twin, a TorchBackend that holds the single run's exact starting weights and, once the
    member's weights are copied into it, serves the float64 CPU measurements (gradient flow,
    spectral radius, parameter count)."""

    index: int
    cfg: RunConfig
    out_dir: Path | None
    twin: TorchBackend
    state: RunState | None = None
    result: RunResult | None = None


class GroupTraining:
    """The training of one group: its members, the stack of those still training (`stack[pos]`
    is the member at stack position pos, None once retired), and the loop's steps."""

    def __init__(self, cfgs: list[RunConfig], out_dirs, options: GroupOptions):
        first = cfgs[0]
        set_precision(options.device, first.precision)
        self.options = options
        self.task = task = tasks.make(first.task, first.T, **first.task_options)
        self.members = [Member(i, cfg, out_dirs[i] if out_dirs else None,
                               TorchBackend(cfg.replace(device="cpu", backend="torch"), task))
                        for i, cfg in enumerate(cfgs)]
        self.eval_batch, self.diag_batch = held_out_batches(first, task)
        for m in self.members:
            m.state = RunState.fresh(m.cfg, task, m.twin, self.diag_batch)
        model = StackedModel.from_models([m.twin.model for m in self.members], first.cell,
                                         task.per_step, activations=[c.activation for c in cfgs],
                                         device=options.device, dtype=options.dtype,
                                         fused=options.fused)
        self.trainer = StackedTrainer(model, cfgs, task.loss_kind, cuda_graph=options.cuda_graph)
        self.stack: list[Member | None] = list(self.members)
        self.t_start = time.perf_counter()

    def train(self, progress: bool | None = None) -> list[RunResult]:
        """Evaluate at step 0, then train until every member has retired."""
        first = self.members[0].cfg
        bar = progress_bar(first.steps, f"ensemble of {len(self.members)}: {first.cell} "
                           f"T={first.T}", progress)
        batches = None
        try:
            self.evaluate_start()
            batches = GroupBatches(self.task, self.options, prefetch=self.options.on_cuda)
            step = 0
            while any(m is not None for m in self.stack):
                arrays = batches.arrays(step, tuple(self.stack))
                step += 1
                self.train_step(step, arrays)
                if bar is not None:
                    bar.update(1)
                self.compact()
        finally:
            if batches is not None:
                batches.close()
            if bar is not None:
                bar.close()
        return [m.result for m in self.members]

    def evaluate_start(self):
        """The step-0 evaluation of every member; a member already done retires."""
        self.evaluate([(pos, None, None, None) for pos in range(len(self.stack))], 0)
        wall = time.perf_counter() - self.t_start
        for pos, m in enumerate(self.stack):
            if not m.state.running():
                self.retire(pos, 0, wall)

    def train_step(self, step: int, arrays):
        """Optimisation step `step` of the live members on their stacked batches `arrays`,
        then each member's book-keeping, evaluations, profiles and retirements."""
        stats = self.trainer.step(*self.to_device(arrays)).cpu().numpy()
        to_eval, finished, to_profile = self.record_steps(step, stats)
        if to_eval:
            self.evaluate(to_eval, step)
        self.profile(to_profile, step)
        finished += [pos for pos, *_ in to_eval if not self.stack[pos].state.running()]
        wall = time.perf_counter() - self.t_start
        for pos in sorted(finished):
            self.retire(pos, step, wall)

    def to_device(self, arrays):
        """The stacked numpy batch (x, y, mask) as tensors on the group's device."""
        x_np, y_np, mask_np = arrays
        dev, dtype = self.options.device, self.options.dtype
        x = torch.as_tensor(x_np, dtype=dtype).to(dev, non_blocking=True)
        y = torch.as_tensor(y_np, dtype=dtype if self.task.loss_kind == "mse" else torch.long).to(dev)
        mask = None if mask_np is None else torch.as_tensor(mask_np).to(dev)
        if self.options.pad_to_max and mask is None and _variable_length(self.task):
            mask = torch.ones(x.shape[0], x.shape[2], dtype=torch.bool, device=dev)
        return x, y, mask

    def record_steps(self, step: int, stats: np.ndarray):
        """Each live member's RunState.record_step from the trainer's (3, G) numbers; returns
        the positions to evaluate (with the step's numbers), that diverged, and to profile."""
        to_eval, diverged, to_profile = [], [], []
        for pos, m in enumerate(self.stack):
            if m is None:
                continue
            loss, grad_norm, clipped = float(stats[0, pos]), float(stats[1, pos]), bool(stats[2, pos])
            outcome = m.state.record_step(step, loss, grad_norm, clipped)
            if outcome is StepOutcome.DIVERGED:
                diverged.append(pos)
                continue
            if outcome is StepOutcome.EVALUATE:
                to_eval.append((pos, loss, grad_norm, clipped))
            if m.state.gradflow_due(step):
                to_profile.append(pos)
        return to_eval, diverged, to_profile

    def evaluate(self, entries, step: int):
        """entries: (pos, loss, grad_norm, clipped); each member's evaluation after `step`."""
        preds = self.trainer.predict(self.eval_batch.x, [e[0] for e in entries], self.task.per_step)
        for (pos, loss, grad_norm, clipped), pred in zip(entries, preds):
            self.stack[pos].state.record_eval(step, pred, self.eval_batch.y, loss, grad_norm, clipped)

    def profile(self, positions, step: int):
        """The gradient-flow profile after `step` of the members at `positions` (on their twins)."""
        for pos in positions:
            m = self.stack[pos]
            self.trainer.model.load_member(pos, m.twin.model)
            m.state.record_gradflow(m.twin.gradflow(self.diag_batch, f"step {step}", step))

    def retire(self, pos: int, step: int, wall: float):
        """Finish the member at `pos`: final weights out, end-of-run records, frozen from now on."""
        m = self.stack[pos]
        self.trainer.model.load_member(pos, m.twin.model)
        m.state.wall_time_s = wall   # the job's time until this member stopped
        m.state.record_gradflow(m.twin.gradflow(self.diag_batch, "end", step))
        m.result = m.state.to_result(backend_name="ensemble", device=self.options.device,
                                     spectral_radius_end=m.twin.spectral_radius(),
                                     n_params=m.twin.n_params(), ensemble_size=len(self.members))
        if m.out_dir is not None:
            records.write_run(m.out_dir, m.result.summary, m.result.curve, m.result.gradflow)
        self.stack[pos] = None
        self.trainer.active[pos] = False

    def compact(self):
        """Drop retired members from the stack once few enough are live (options.compact_at)."""
        live = [pos for pos, m in enumerate(self.stack) if m is not None]
        if live and len(live) < len(self.stack) and len(live) <= self.options.compact_at * len(self.stack):
            self.trainer = self.trainer.select(live)
            self.stack = [self.stack[pos] for pos in live]


class GroupBatches:
    """Every live member's training batch of a step, from its own seed, left-padded into one
    stacked array (`_assemble`); with `prefetch` the next step's batches are drawn on a worker
    thread while the device trains."""

    def __init__(self, task: Task, options: GroupOptions, prefetch: bool):
        self.task = task
        pad_to_max = options.pad_to_max or not _variable_length(task)
        self.fixed_length = task.max_length if pad_to_max else None
        self.pool = ThreadPoolExecutor(max_workers=1) if prefetch else None
        self.pending = None                  # (step, future of draw(step, layout))

    def arrays(self, step: int, layout: tuple):
        """x (G, B, L, I), y, mask for the batches of `step`; `layout` is the stack (a member
        or None per position)."""
        if self.pending is not None and self.pending[0] == step:
            drawn_layout, by_member, arrays = self.pending[1].result()
            if drawn_layout != layout:   # members retired since: re-pad the same batches
                arrays = self.padded(layout, by_member)
        else:
            _, _, arrays = self.draw(step, layout)
        if self.pool is not None:
            self.pending = (step + 1, self.pool.submit(self.draw, step + 1, layout))
        return arrays

    def draw(self, step: int, layout: tuple):
        by_member = {m.index: self.task.sample(m.cfg.batch_size, batch_seed(m.cfg.seed, step),
                                               split="train")
                     for m in layout if m is not None}
        return layout, by_member, self.padded(layout, by_member)

    def padded(self, layout: tuple, by_member: dict):
        batches = [None if m is None else by_member[m.index] for m in layout]
        length = max(b.x.shape[1] for b in batches if b is not None)
        return _assemble(self.task, batches, max(length, self.fixed_length or 0))

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _variable_length(task: Task) -> bool:
    return type(task).draw_length is not Task.draw_length


def _assemble(task: Task, batches: list, length: int):
    """Left-pad every member's batch to `length`: x (G, B, L, I), y, mask (G, L) or None.

    `batches[pos]` is None for a retired member (zeros, no padding)."""
    live = [b for b in batches if b is not None]
    B, I = live[0].x.shape[0], live[0].x.shape[2]
    G = len(batches)
    x = np.zeros((G, B, length, I), dtype=np.float32)
    per_step = task.loss_kind == "ce_seq"
    y = np.zeros((G, B, length) if per_step else (G, B), dtype=live[0].y.dtype)
    mask = np.ones((G, length), dtype=bool)
    for pos, b in enumerate(batches):
        if b is None:
            continue
        L = b.x.shape[1]
        x[pos, :, length - L:] = b.x
        if per_step:
            y[pos, :, length - L:] = b.y
        else:
            y[pos] = b.y
        mask[pos, :length - L] = False
    return x, y, (None if mask.all() else mask)
