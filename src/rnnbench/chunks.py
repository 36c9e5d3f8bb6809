"""Several runs per job: pack a study's runs into chunks of about equal estimated cost.

A process that trains one short run spends most of its life importing torch, numba and pandas
and loading the Numba cache; a chunk pays that once for all its runs. The Snakemake layer asks
for `plan(runs, cores, settings)` and starts one job per chunk (`rnnbench run-chunk SPEC`).

Costs are estimates in seconds of one CPU core, from a FLOP model of forward + BPTT with the
run's full step budget (early stopping can only make a run cheaper). They only need to be right
relative to each other, to balance the chunks, and roughly right in absolute terms, to keep a
chunk under `max_minutes` (a cluster's time limit).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from .cell_table import GATE_COUNT, kernels_cover, numba_trains
from .config import merge_settings
from .run_state import PROFILE_BATCH

CHUNK_DEFAULTS = {"enabled": True, "per_core": 1, "max_minutes": 30.0, "steal": True}

FLOPS_PER_SECOND = 2e10                     # small GEMMs on one core, numba kernels
TORCH_SLOWDOWN = 3.0                        # autograd over small tensors: per-op overheads
STEP_OVERHEAD_S = 5e-4                      # data generation, loss, clipping, optimiser update
SVD_S_PER_H3 = 2.5e-9                       # one spectral norm of an H x H product, per H^3
LOOP_S_PER_TIMESTEP = 2e-4                  # Omega's loop over time on torch (rnnbench.regularizer)
TIME_MARGIN = 3.0                           # a job's time limit: this x its estimate, + 10 min


def estimate_seconds(cfg) -> float:
    """Estimated core-seconds of one run: training steps, evaluations, gradient-flow profiles."""
    gates = GATE_COUNT.get(cfg.cell, 1)  # a plug-in cell counts as one block
    dirs = 2 if cfg.bidirectional else 1
    hidden, length = cfg.hidden, cfg.T
    # multiply-adds of one sequence's forward pass: every layer, direction and gate block
    per_sequence = length * dirs * cfg.layers * gates * hidden * (2 * hidden + 2)
    forward_backward = 3 * 2 * per_sequence      # backward costs about twice the forward
    step = STEP_OVERHEAD_S + cfg.batch_size * forward_backward / FLOPS_PER_SECOND
    evaluations = cfg.steps // cfg.eval_interval + 1
    evaluation = cfg.eval_size * 2 * per_sequence / FLOPS_PER_SECOND
    profiles = 2 + (cfg.steps // cfg.diagnostics_every if cfg.diagnostics_every else 0)
    if kernels_cover(cfg):  # the Numba Jacobian-product instrument (per lag)
        width = 2 if cfg.cell == "lstm" else 1
        profile = length * PROFILE_BATCH * (SVD_S_PER_H3 * width * hidden ** 3
                                            + 2 * gates * hidden ** 3 / FLOPS_PER_SECOND)
    else:  # plug-in cells: one forward and backward of the profile batch through autograd
        profile = PROFILE_BATCH * forward_backward / FLOPS_PER_SECOND
    seconds = cfg.steps * step + evaluations * evaluation + profiles * profile
    numba = _numba_path(cfg)
    if not numba:
        seconds *= TORCH_SLOWDOWN
    if cfg.regularizer and numba:  # Omega from the BPTT errors: two H x H products
        seconds += cfg.steps * cfg.batch_size * length * 4 * hidden ** 2 / FLOPS_PER_SECOND
    elif cfg.regularizer:  # torch: the loop's per-time-step autograd calls set its pace
        seconds += cfg.steps * length * LOOP_S_PER_TIMESTEP
    return seconds


def time_limit_minutes(seconds: float) -> int:
    """The time limit of a job whose runs are estimated at `seconds` (a cluster's --time): the
    estimate is only roughly right in absolute terms, so a wide margin."""
    return 10 + int(TIME_MARGIN * seconds / 60)


def _numba_path(cfg) -> bool:
    return (numba_trains(cfg) and cfg.backend in ("auto", "numba")
            and cfg.device in ("auto", "cpu"))


@dataclass(frozen=True)
class Chunk:
    """Runs trained one after another by one job; `seconds` is their estimated cost."""
    runs: tuple
    seconds: float

    def chunk_id(self, folder) -> str:
        """A name for the chunk's files: the run's folder for a chunk of one run (readable
        logs), otherwise a hash of the members' folders (stable while the members are)."""
        folders = sorted(folder(cfg) for cfg in self.runs)
        if len(folders) == 1:
            return folders[0]
        return "chunk-" + hashlib.sha1(" ".join(folders).encode()).hexdigest()[:12]


def check_settings(values, where: str) -> dict:
    """The study's `chunks` mapping, defaults filled; ValueError naming the bad key."""
    merged = merge_settings(values, CHUNK_DEFAULTS, "chunks", where)
    per_core = merged["per_core"]
    if isinstance(per_core, bool) or not isinstance(per_core, int) or per_core < 0:
        raise ValueError(f"{where}: 'chunks.per_core' must be an integer >= 0, got {per_core!r}")
    limit = merged["max_minutes"]
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0 \
            or not math.isfinite(limit):
        raise ValueError(f"{where}: 'chunks.max_minutes' must be a number > 0, got {limit!r}")
    merged["max_minutes"] = float(limit)
    if not isinstance(merged["steal"], bool):
        raise ValueError(f"{where}: 'chunks.steal' must be true or false, got {merged['steal']!r}")
    return merged


def plan(runs: list, cores: int, settings: dict | None = None) -> list[Chunk]:
    """Pack `runs` (RunConfigs) into chunks: at least `per_core x cores` of them (so every core
    has work), more where a chunk would exceed `max_minutes`; longest-processing-time-first
    keeps their estimated costs close. Within a chunk the most expensive run goes first. Early
    stopping makes the real costs differ; with `steal` the jobs even them out at the end by
    taking each other's last runs (rnnbench.chunk_job). With `enabled: false`, one chunk
    per run."""
    settings = check_settings(settings or {}, "chunks")
    if not runs:
        return []
    costs = [estimate_seconds(cfg) for cfg in runs]
    if not settings["enabled"]:
        return [Chunk((cfg,), cost) for cfg, cost in zip(runs, costs)]
    wanted = max(1, settings["per_core"] * max(int(cores or 1), 1),
                 math.ceil(sum(costs) / (60.0 * settings["max_minutes"])))
    count = min(len(runs), wanted)
    order = sorted(range(len(runs)), key=lambda i: (-costs[i], i))
    bins = [[] for _ in range(count)]
    loads = [0.0] * count
    for i in order:
        target = min(range(count), key=lambda b: (loads[b], b))
        bins[target].append(i)
        loads[target] += costs[i]
    return [Chunk(tuple(runs[i] for i in members), load)
            for members, load in zip(bins, loads) if members]


def steal_order(chunks: dict, own) -> list:
    """The runs of the chunks other than `own` (chunk id -> its runs, costliest first) in the
    order a job that has finished its own runs takes them: each other chunk's last runs first,
    from one chunk after another in turn. The owners work from the front, so they keep their
    costly runs and the work left at the end is a few cheap runs."""
    tails = [list(reversed(runs)) for chunk, runs in chunks.items() if chunk != own]
    return [tail[i] for i in range(max(map(len, tails), default=0))
            for tail in tails if i < len(tail)]
