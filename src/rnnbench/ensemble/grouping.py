"""Which runs can train together in one ensemble job, and how a study is cut into such jobs.

Runs train together when everything that fixes the shapes and the schedule of the computation
is equal: task, T, task options, cell, hidden size, batch size, steps and evaluation settings,
device, dtype and precision (the fields outside `VARYING`). Everything in `VARYING` may differ
between the members of a group: each member keeps its own seed (data stream and initial
weights), initialisation, rnn activation, forget-gate bias, optimiser and its hyper-parameters,
clipping rule, early stop, divergence factor and diagnostics schedule.

A new RunConfig field is part of the key unless it is added to `VARYING`: by default a new
axis separates groups, which is always correct (never faster than necessary, never wrong).
"""
from __future__ import annotations

import json
from collections.abc import Iterable

from ..cell_table import BUILTIN_CELLS
from ..config import RunConfig, field_names

# Fields that may differ inside one group (per-member state in the engine).
VARYING = frozenset({
    "seed", "init", "init_scale", "activation", "forget_bias",
    "optimizer", "lr", "momentum", "clip", "clip_threshold",
    "early_stop", "divergence_factor", "diagnostics_every", "checkpoint_every",
    "method", "backend",
})


def why_not(cfg: RunConfig) -> str | None:
    """None if `cfg` can train in an ensemble, else the reason (naming the field)."""
    if cfg.cell not in BUILTIN_CELLS:
        return f"field 'cell': the ensemble engine stacks {list(BUILTIN_CELLS)}, got {cfg.cell!r}"
    if cfg.layers != 1:
        return f"field 'layers': the ensemble engine stacks single-layer cells, got {cfg.layers}"
    if cfg.bidirectional:
        return "field 'bidirectional': the ensemble engine stacks one direction only"
    if cfg.regularizer:
        return ("field 'regularizer': Omega trains on the single-run backends (numba, torch), "
                "not stacked")
    if cfg.precision == "bf16":
        return "field 'precision': the ensemble engine computes in fp32/tf32 (or float64), not bf16"
    return None


def can_ensemble(cfg: RunConfig | dict) -> bool:
    """Whether the stacked engine can train this run (and reproduce its single-run curves)."""
    cfg = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
    return why_not(cfg) is None


def group_key(cfg: RunConfig | dict) -> tuple:
    """Hashable key: runs with equal keys can share one ensemble job."""
    cfg = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
    values = cfg.to_dict()
    return tuple((name, json.dumps(values[name], sort_keys=True, default=str))
                 for name in field_names() if name not in VARYING)


def key_difference(a: RunConfig, b: RunConfig) -> list[str]:
    """The key fields in which two configs differ (why they cannot share a group)."""
    return [name for (name, va), (_, vb) in zip(group_key(a), group_key(b)) if va != vb]


def check_group(configs: list[RunConfig]) -> None:
    """Raise ValueError unless every config can ensemble and all share one group key."""
    if not configs:
        raise ValueError("an ensemble group needs at least one run")
    for cfg in configs:
        reason = why_not(cfg)
        if reason:
            raise ValueError(f"run {cfg.run_id()} cannot train in an ensemble: {reason}")
    first = configs[0]
    for cfg in configs[1:]:
        diff = key_difference(first, cfg)
        if diff:
            raise ValueError(f"runs {first.run_id()} and {cfg.run_id()} cannot share an ensemble: "
                             f"they differ in {diff} (only {sorted(VARYING)} may differ)")


def _split(items: list, cap: int) -> list[list]:
    """Cut into ceil(n/cap) consecutive chunks of near-equal size (sizes differ by at most 1)."""
    n_chunks = -(-len(items) // cap)
    base, extra = divmod(len(items), n_chunks)
    chunks, start = [], 0
    for i in range(n_chunks):
        size = base + (1 if i < extra else 0)
        chunks.append(items[start:start + size])
        start += size
    return chunks


def group_runs(configs: Iterable[RunConfig | dict], members_per_job: int) -> list[list[RunConfig]]:
    """Cut runs into ensemble jobs of compatible runs, at most `members_per_job` each.

    Deterministic: groups appear in the order of their first run in `configs`, members keep
    their order, and a key with n runs becomes ceil(n / members_per_job) jobs of near-equal
    size. Every config must be able to ensemble (`can_ensemble`); filter the others out first
    (they run as single runs). A ValueError names an offending run.
    """
    if isinstance(members_per_job, bool) or not isinstance(members_per_job, int) or members_per_job < 1:
        raise ValueError(f"members_per_job must be a positive int, got {members_per_job!r}")
    buckets: dict[tuple, list[RunConfig]] = {}
    for item in configs:
        cfg = item if isinstance(item, RunConfig) else RunConfig.from_dict(item)
        reason = why_not(cfg)
        if reason:
            raise ValueError(f"run {cfg.run_id()} cannot train in an ensemble: {reason}")
        buckets.setdefault(group_key(cfg), []).append(cfg)
    return [chunk for members in buckets.values() for chunk in _split(members, members_per_job)]
