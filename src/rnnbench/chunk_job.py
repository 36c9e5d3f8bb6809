"""One chunk job (`rnnbench run-chunk`): train a chunk's runs one after another in this process,
then help the other chunk jobs of the study finish.

Chunks are planned to equal *estimated* cost (rnnbench.chunks), but early stopping makes a run's
real cost unknown in advance, so the jobs would finish at different times. A job that has
finished its own runs therefore takes the other chunks' runs that nobody has started, their last
(cheapest) ones first (`chunks.steal_order`). Each run is claimed before it is trained: an flock
on `<run folder>.claim`, which the kernel releases when its holder exits, killed or not, so a
run is trained by one job at a time and, once finished, by none. A chunk's marker keeps its
meaning: its job ends only when each of its own runs is finished, waiting for those that
another job is training.
"""
from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import time
from pathlib import Path

from . import records, train
from .chunks import TIME_MARGIN, estimate_seconds
from .config import RunConfig

CLAIM_SUFFIX = ".claim"  # beside a run's folder: the lock of the job training the run
FAILED_MARK = b"failed\n"  # written into the claim: other chunks' jobs leave the run to its owner


class Outcome(enum.Enum):
    DONE = "done"          # trained now, or finished before
    TAKEN = "taken"        # another job holds its claim
    FAILED = "failed"      # it raised (the traceback is in the log)
    SKIPPED = "skipped"    # another chunk's run that failed: its owner trains it again


@contextlib.contextmanager
def claimed(out_dir, wait: bool):
    """Hold the claim of the run in `out_dir`. Yields the claim file's descriptor, or None when
    another process holds it (only without `wait`). The file is removed once the run is finished:
    a claimant checks for the summary after taking the lock, so it never trains a finished run
    through a removed file."""
    folder = Path(out_dir)
    path = folder.with_name(folder.name + CLAIM_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
        if records.finished(out_dir):
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def run_chunk(runs, progress: bool | None = None, others=(), time_limit_s: float | None = None,
              ) -> list[str]:
    """Train `runs`, (config, out_dir) pairs, one after another in this process, each exactly as
    `train.run(config, out_dir)` would alone. A run whose folder already holds its summary is
    done and skipped, so a chunk killed half-way keeps the runs it finished and a rerun does the
    rest. A run that raises is reported and the others still train; returns the failed run ids.

    With `others`, the other chunks' runs in the order to take them, the runs are claimed (see
    the module's docstring), and once its own runs are done or taken the job trains the others'
    unclaimed runs while their estimate, TIME_MARGIN times over, fits in `time_limit_s` (the
    job's time limit, if it has one); then it waits for its own runs that other jobs hold, and
    trains any they left unfinished."""
    runs = [(_as_config(c), out_dir) for c, out_dir in runs]
    claim = bool(others)  # without other chunks' runs no one else trains these: no locks
    start = time.perf_counter()
    failed, taken = [], []
    for cfg, out_dir in runs:
        outcome = _train(cfg, out_dir, progress, own=True, claim=claim)
        if outcome is Outcome.TAKEN:
            taken.append((cfg, out_dir))
        elif outcome is Outcome.FAILED:
            failed.append(cfg.run_id())
    for config, out_dir in others:
        cfg = _as_config(config)
        if time_limit_s is not None and (time.perf_counter() - start
                                         + TIME_MARGIN * estimate_seconds(cfg) > time_limit_s):
            continue
        _train(cfg, out_dir, progress, own=False, claim=True)
    for cfg, out_dir in taken:
        if _train(cfg, out_dir, progress, own=True, claim=True, wait=True) is Outcome.FAILED:
            failed.append(cfg.run_id())
    return failed


def _as_config(config) -> RunConfig:
    return config if isinstance(config, RunConfig) else RunConfig.from_dict(config)


def _train(cfg, out_dir, progress, own: bool, claim: bool, wait: bool = False) -> Outcome:
    """Train one run unless it is finished, claimed by another job, or (another chunk's) failed.
    Only the chunk's `own` finished runs are reported: the others' would fill its log."""
    if records.finished(out_dir):
        if own:
            print(f"run {cfg.run_id()}: already done in {out_dir}", flush=True)
        return Outcome.DONE
    if not claim:
        return _train_now(cfg, out_dir, progress)
    with claimed(out_dir, wait) as fd:
        if fd is None:
            return Outcome.TAKEN
        if records.finished(out_dir):  # finished by the job that held it before
            return Outcome.DONE
        if not own and os.fstat(fd).st_size:
            return Outcome.SKIPPED
        outcome = _train_now(cfg, out_dir, progress)
        if outcome is Outcome.FAILED:
            os.write(fd, FAILED_MARK)
        return outcome


def _train_now(cfg, out_dir, progress) -> Outcome:
    import traceback

    try:
        s = train.run(cfg, out_dir=out_dir, progress=progress).summary
    except Exception:  # one broken run must not take the chunk's other runs with it
        traceback.print_exc()
        print(f"run {cfg.run_id()}: FAILED ({out_dir})", flush=True)
        return Outcome.FAILED
    print(f"run {s['run_id']}: solved={s['solved']} steps={s['steps_done']} "
          f"final_eval_loss={s['final_eval_loss']:.4g} diverged={s['diverged']} "
          f"backend={s['backend_used']} wall={s['wall_time_s']:.1f}s", flush=True)
    return Outcome.DONE
