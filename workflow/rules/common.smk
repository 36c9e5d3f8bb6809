# Configuration, the study's runs and path helpers shared by the rules.
import contextlib
import json
import os
import re
import shlex
import sys
import traceback
from pathlib import Path

import pandas as pd

from snakemake.utils import validate

from rnnbench import plugins
from rnnbench.study import check_numbers_read_as_text, load_study


# The schema checks the shape and types (and fills defaults); load_study then builds and
# validates every RunConfig, so a bad field stops the workflow before any job starts.
check_numbers_read_as_text(config)  # `lr: 1e-3` is text in YAML: say so before the schema does
validate(config, "../schemas/config.schema.yaml")
STUDY = load_study(config)  # loads the plug-ins first (methods/, `plugins:`, env, entry points)
if STUDY.plugins:  # every job's process loads them too: jobs inherit this environment
    os.environ[plugins.ENV_VAR] = plugins.env_value(STUDY.plugins)
RUNS = {STUDY.folder(cfg): cfg for cfg in STUDY.runs()}  # folder under runs/ -> RunConfig
# Runs trained one per job, and ensemble groups (group id -> member run ids); see Study.jobs.
SOLO, GROUPS = STUDY.jobs()
# The interpreter running Snakemake has rnnbench installed: jobs use it even when the venv's
# bin/ is not on PATH (e.g. `.venv/bin/snakemake` called directly).
PYTHON = shlex.quote(sys.executable)
RESULTS = config["results_dir"].rstrip("/")
STUDY_DIR = f"{RESULTS}/{STUDY.name}"
FIGURES = ("success_vs_T", "learning_curves", "grad_norms", "gradflow_vs_lag")
TABLES = ("success", "longest_T")


wildcard_constraints:
    study=re.escape(STUDY.name),
    # Runs of ensemble groups are written by their group's job, never by train_run.
    run="|".join(map(re.escape, SOLO)) if GROUPS else "[^/]+--[0-9a-f]{12}|[0-9a-f]{12}",
    group_id="[0-9a-f]{12}",


def run_files(name):
    """Input function: `name`.parquet of every run trained alone, and the completion marker
    of every ensemble group (its job writes its members' files, summary last, then the marker)."""

    def files(wildcards):
        solo = [f"{RESULTS}/{wildcards.study}/runs/{r}/{name}.parquet" for r in SOLO]
        return solo + [f"{RESULTS}/{wildcards.study}/ensembles/{g}.done" for g in GROUPS]

    return files


def group_spec_json(wildcards):
    """The member RunConfigs of an ensemble group as a JSON list."""
    return json.dumps([RUNS[r].to_dict() for r in GROUPS[wildcards.group_id]], sort_keys=True)


def group_out_dirs(wildcards):
    return " ".join(f"{RESULTS}/{wildcards.study}/runs/{r}" for r in GROUPS[wildcards.group_id])


def run_config_json(wildcards):
    """The run's RunConfig as JSON, quoted for the shell."""
    if wildcards.run not in RUNS:
        raise ValueError(f"run {wildcards.run} is not part of study '{STUDY.name}'")
    return shlex.quote(json.dumps(RUNS[wildcards.run].to_dict(), sort_keys=True))


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
