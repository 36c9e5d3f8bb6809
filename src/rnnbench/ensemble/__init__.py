"""Many runs at once on one device: stacked weights, batched matmuls, per-member everything.

    from rnnbench.ensemble import run_group, group_runs, can_ensemble
    jobs = group_runs([cfg for cfg in runs if can_ensemble(cfg)], members_per_job=256)
    results = run_group(jobs[0], out_dirs=[...])     # one RunResult per run, as train.run gives

Command line (what the pipeline calls for one group):

    python -m rnnbench.ensemble --json-list '[{...}, {...}]' --out-dirs DIR1 DIR2

See engine.py for the semantics and grouping.py for which runs can share a job.
"""
from .engine import StackedTrainer, member_losses, run_group
from .grouping import VARYING, can_ensemble, check_group, group_key, group_runs, why_not
from .stacked import StackedModel, stacked_sequence

__all__ = ["VARYING", "StackedModel", "StackedTrainer", "can_ensemble", "check_group", "group_key",
           "group_runs", "member_losses", "run_group", "stacked_sequence", "why_not"]
