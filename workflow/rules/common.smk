# Configuration, the study's runs and path helpers shared by the rules.
import contextlib
import json
import os
import re
import shlex
import sys
import threading
import traceback
from pathlib import Path


from snakemake.utils import validate

from rnnbench.chunks import estimate_seconds, steal_order, time_limit_minutes
from rnnbench.figures import figures_for
from rnnbench import plugins
from rnnbench.process import imports_settled
from rnnbench.records import finished
from rnnbench.study import check_numbers_read_as_text, load_study


# The schema checks the shape and types (and fills defaults); load_study then builds and
# validates every RunConfig, so a bad field stops the workflow before any job starts.
check_numbers_read_as_text(config)  # `lr: 1e-3` is text in YAML: say so before the schema does
validate(config, "../schemas/config.schema.yaml")
# The study file given last (--configfile replaces config/config.yaml): `plugins:` paths are
# relative to it, as for `rnnbench validate FILE`.
STUDY_FILE = Path(workflow.configfiles[-1]) if workflow.configfiles else Path("config/config.yaml")
# load_study loads the study's `plugins:` and the environment's, and methods/ and entry points
# only for names not registered yet (rnnbench.plugins.load_needed): a study of built-in names is
# read without torch. Whatever they import is then kept out of the collector's way
with imports_settled():  # (rnnbench.process)
    STUDY = load_study(config, base_dir=STUDY_FILE.resolve().parent)
if STUDY.plugins:  # every job's process loads them too: jobs inherit this environment
    os.environ[plugins.ENV_VAR] = plugins.env_value(STUDY.plugins)
RUNS = {STUDY.folder(cfg): cfg for cfg in STUDY.runs()}  # folder under runs/ -> RunConfig
# The interpreter running Snakemake has rnnbench installed: jobs use it even when the venv's
# bin/ is not on PATH (e.g. `.venv/bin/snakemake` called directly). With `--sdm conda` a job
# runs in its rule's conda environment (workflow/envs/rnnbench.yaml), whose own `python` it uses.
_CONDA = "conda" in {str(m).lower() for m in workflow.deployment_settings.deployment_method}
PYTHON = "python" if _CONDA else shlex.quote(sys.executable)
RESULTS = config["results_dir"].rstrip("/")
STUDY_DIR = f"{RESULTS}/{STUDY.name}"
# A run is finished once its summary exists (written last, atomically). Only the unfinished runs
# are packed into chunk jobs, so a rerun after a kill retrains just those, balanced anew.
FINISHED = {r for r in RUNS if finished(f"{STUDY_DIR}/runs/{r}")}
# chunk id -> runs one job trains in turn; ensemble group id -> member runs (Study.jobs).
CHUNKS, GROUPS = STUDY.jobs(cores=workflow._cores or 1, finished=FINISHED)
IN_GROUPS = {r for members in GROUPS.values() for r in members}
# A chunk's marker means its runs finished; a marker beside an unfinished member is stale (its
# results were deleted since): drop it so that the chunk trains again.
# (Only the main process: a cluster job re-reads this file while the study is under way.)
if workflow.is_main_process:
    for _chunk in CHUNKS:
        Path(f"{STUDY_DIR}/chunks/{_chunk}.done").unlink(missing_ok=True)
# A run as a chunk spec lists it (each run's config once, however many specs list it).
RUN_ENTRIES = {r: {"config": RUNS[r].to_dict(), "out_dir": f"{STUDY_DIR}/runs/{r}"}
               for members in CHUNKS.values() for r in members}
TABLES = ("success", "longest_T")


wildcard_constraints:
    study=re.escape(STUDY.name),
    # A cluster job re-reads this file later, when other runs have finished and the chunks it
    # would plan differ: match any chunk name (Chunk.chunk_id), not only today's.
    chunk="[^/]+--[0-9a-f]{12}|chunk-[0-9a-f]{12}",
    group_id="[0-9a-f]{12}",


def _chunk_markers() -> dict:
    """run folder -> the markers of finished chunk jobs that trained it (a marker is a copy of
    its chunk's spec, which lists the runs' folders)."""
    trained = {}
    for marker in sorted(Path(f"{STUDY_DIR}/chunks").glob("*.done")):
        try:
            runs = json.loads(marker.read_text())["runs"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a chunk marker of this layout: ignore it
        for run in runs:
            trained.setdefault(Path(run["out_dir"]).name, []).append(str(marker))
    return trained


TRAINED_BY = _chunk_markers()


def run_files(name):
    """Input function: what stands for every run's `name`.parquet. A run trained by a chunk job
    is stood for by that job's marker (written after its runs' files), one still to train by its
    chunk's marker, an ensemble member by its group's marker, and a finished run that no marker
    lists by the file itself. The list stays the same once everything is trained, so a finished
    study has nothing to redo."""

    def files(wildcards):
        base = f"{RESULTS}/{wildcards.study}"
        inputs = set()
        for run in RUNS:
            if run in IN_GROUPS:
                continue
            if run in TRAINED_BY and run in FINISHED:
                inputs.update(TRAINED_BY[run])
            elif run in FINISHED:
                inputs.add(f"{base}/runs/{run}/{name}.parquet")
        inputs.update(f"{base}/chunks/{c}.done" for c in CHUNKS)
        inputs.update(f"{base}/ensembles/{g}.done" for g in GROUPS)
        return sorted(inputs)

    return files


def chunk_spec_json(wildcards):
    """The chunk's runs for `rnnbench run-chunk`: their RunConfigs and result folders; with
    `chunks.steal`, also the other chunks' runs, which the job takes once its own are done or
    taken (rnnbench.chunk_job)."""
    if wildcards.chunk not in CHUNKS:  # a cluster job's own re-read: the spec is written
        return Path(f"{RESULTS}/{wildcards.study}/chunks/{wildcards.chunk}.json").read_text()
    spec = {"runs": [RUN_ENTRIES[r] for r in CHUNKS[wildcards.chunk]]}
    if STUDY.chunks["enabled"] and STUDY.chunks["steal"] and len(CHUNKS) > 1:
        spec["others"] = [RUN_ENTRIES[r] for r in steal_order(CHUNKS, wildcards.chunk)]
    return json.dumps(spec, sort_keys=True, indent=1)


def chunk_minutes(wildcards):
    """Time limit of a chunk job (SLURM's --time; a job takes other chunks' runs only while they
    fit in it): its estimated cost, with a wide margin."""
    if wildcards.chunk not in CHUNKS:  # a cluster job's own re-read: submitted already
        return 60
    return time_limit_minutes(sum(estimate_seconds(RUNS[r]) for r in CHUNKS[wildcards.chunk]))


def group_spec_json(wildcards):
    """The member RunConfigs of an ensemble group as a JSON list."""
    return json.dumps([RUNS[r].to_dict() for r in GROUPS[wildcards.group_id]], sort_keys=True)


def group_out_dirs(wildcards):
    return " ".join(f"{RESULTS}/{wildcards.study}/runs/{r}" for r in GROUPS[wildcards.group_id])


def final_outputs():
    tables = [f"{STUDY_DIR}/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md")]
    figures = [f"{STUDY_DIR}/figures"] if figures_for(STUDY) else []  # rule figures
    if STUDY.compare:  # study key `compare`: every other method vs the baseline
        tables += [f"{STUDY_DIR}/tables/{t}.{ext}" for t in ("comparison", "leaderboard")
                   for ext in ("csv", "md")]
    return tables + figures


@contextlib.contextmanager
def logged(path):
    """A run-directive's log: any traceback goes to its log file. The profiles run these jobs as
    threads of the Snakemake process (force-use-threads: a job then costs no new process that
    reads the whole workflow again), so stdout is not redirected: it is shared by the threads."""
    with open(path, "w") as f:
        try:
            yield
        except Exception:
            traceback.print_exc(file=f)
            raise


def cancel_pending_timers():
    """Snakemake's job rate limiter arms a one-second threading.Timer at every scheduling pass,
    and the interpreter waits for the last one before it exits: a study would end a second
    after its last job. The timers only wake the scheduler, which has nothing left to do."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
