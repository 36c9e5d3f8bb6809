# Configuration, the study's runs and path helpers shared by the rules.
import contextlib
import json
import re
import shlex
import sys
import traceback
from pathlib import Path

import pandas as pd

from snakemake.utils import validate

from rnnbench.chunks import estimate_seconds
from rnnbench.study import check_numbers_read_as_text, load_study


# The schema checks the shape and types (and fills defaults); load_study then builds and
# validates every RunConfig, so a bad field stops the workflow before any job starts.
check_numbers_read_as_text(config)  # `lr: 1e-3` is text in YAML: say so before the schema does
validate(config, "../schemas/config.schema.yaml")
STUDY = load_study(config)
RUNS = {STUDY.folder(cfg): cfg for cfg in STUDY.runs()}  # folder under runs/ -> RunConfig
# The interpreter running Snakemake has rnnbench installed: jobs use it even when the venv's
# bin/ is not on PATH (e.g. `.venv/bin/snakemake` called directly).
PYTHON = shlex.quote(sys.executable)
RESULTS = config["results_dir"].rstrip("/")
STUDY_DIR = f"{RESULTS}/{STUDY.name}"
# A run is finished once its summary exists (written last, atomically). Only the unfinished runs
# are packed into chunk jobs, so a rerun after a kill retrains just those, balanced anew.
FINISHED = {r for r in RUNS if Path(f"{STUDY_DIR}/runs/{r}/summary.parquet").exists()}
# chunk id -> runs one job trains in turn; ensemble group id -> member runs (Study.jobs).
CHUNKS, GROUPS = STUDY.jobs(cores=workflow._cores or 1, finished=FINISHED)
IN_GROUPS = {r for members in GROUPS.values() for r in members}
# A chunk's marker means its runs finished; a marker beside an unfinished member is stale (its
# results were deleted since): drop it so that the chunk trains again.
# (Only the main process: a cluster job re-reads this file while the study is under way.)
if workflow.is_main_process:
    for _chunk in CHUNKS:
        Path(f"{STUDY_DIR}/chunks/{_chunk}.done").unlink(missing_ok=True)
FIGURES = ("success_vs_T", "learning_curves", "grad_norms", "gradflow_vs_lag")
TABLES = ("success", "longest_T")


wildcard_constraints:
    study=re.escape(STUDY.name),
    # A cluster job re-reads this file later, when other runs have finished and the chunks it
    # would plan differ: match any chunk name (Chunk.chunk_id), not only today's.
    chunk="[^/]+--[0-9a-f]{12}|chunk-[0-9a-f]{12}",
    group_id="[0-9a-f]{12}",


def run_files(name):
    """Input function: `name`.parquet of every finished run, and the completion marker of every
    chunk and ensemble group still to train (its job writes its runs' files, then the marker)."""

    def files(wildcards):
        base = f"{RESULTS}/{wildcards.study}"
        done = [f"{base}/runs/{r}/{name}.parquet" for r in sorted(FINISHED - IN_GROUPS)]
        return (done + [f"{base}/chunks/{c}.done" for c in CHUNKS]
                + [f"{base}/ensembles/{g}.done" for g in GROUPS])

    return files


def chunk_spec_json(wildcards):
    """The chunk's runs for `rnnbench run-chunk`: their RunConfigs and result folders."""
    if wildcards.chunk not in CHUNKS:  # a cluster job's own re-read: the spec is written
        return Path(f"{RESULTS}/{wildcards.study}/chunks/{wildcards.chunk}.json").read_text()
    runs = [{"config": RUNS[r].to_dict(), "out_dir": f"{RESULTS}/{wildcards.study}/runs/{r}"}
            for r in CHUNKS[wildcards.chunk]]
    return json.dumps({"runs": runs}, sort_keys=True, indent=1)


def chunk_minutes(wildcards):
    """Time limit of a chunk job (SLURM's --time): its estimated cost, with a wide margin."""
    if wildcards.chunk not in CHUNKS:  # a cluster job's own re-read: submitted already
        return 60
    seconds = sum(estimate_seconds(RUNS[r]) for r in CHUNKS[wildcards.chunk])
    return 10 + int(3 * seconds / 60)


def group_spec_json(wildcards):
    """The member RunConfigs of an ensemble group as a JSON list."""
    return json.dumps([RUNS[r].to_dict() for r in GROUPS[wildcards.group_id]], sort_keys=True)


def group_out_dirs(wildcards):
    return " ".join(f"{RESULTS}/{wildcards.study}/runs/{r}" for r in GROUPS[wildcards.group_id])


def final_outputs():
    tables = [f"{STUDY_DIR}/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md")]
    figures = [f"{STUDY_DIR}/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    return tables + figures


@contextlib.contextmanager
def logged(path):
    """Send a run-directive's output and any traceback to its log file."""
    with open(path, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            yield
        except Exception:
            traceback.print_exc()
            raise


def plot_job(plot, input, output, log):
    """Body of a figure rule: plot(*input tables, stem) writes output.png and output.pdf."""
    with logged(log[0]):
        plot(*(pd.read_parquet(f) for f in input), str(Path(output.png).with_suffix("")))
