"""Helpers shared by the test modules that run the workflow or compare results (plain
functions and constants; pytest fixtures live in conftest.py).

The Snakemake tests run the repository's workflow (Snakefile + workflow/) in a temporary copy,
with the virtualenv's executables first on PATH so that jobs find `rnnbench` and `snakemake`.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rnnbench.config import RunConfig
from rnnbench.study import load_study

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = VENV_BIN / "snakemake"
RNNBENCH = VENV_BIN / "rnnbench"
DEFAULT_PROFILE = REPO / "profiles" / "default"

TINY_FIXED = {"task": "adding", "T": 10, "hidden": 8, "optimizer": "adam", "lr": 0.01,
              "batch_size": 8, "steps": 20, "eval_interval": 10, "eval_size": 32,
              "device": "cpu"}
def _is_provenance(column: str) -> bool:
    return column.startswith("prov_") or column == "wall_time_s" or "host" in column


def result_table(df_or_path) -> pd.DataFrame:
    """A result table without provenance/time columns, rows in a canonical order."""
    df = pd.read_parquet(df_or_path) if isinstance(df_or_path, (str, Path)) else df_or_path
    df = df[[c for c in df.columns if not _is_provenance(c)]]
    keys = [c for c in ("run_id", "step", "phase", "lag") if c in df.columns]
    return df.sort_values(keys).reset_index(drop=True) if keys else df.reset_index(drop=True)


def summary_without_provenance(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if not _is_provenance(k)}


def assert_same_summary(a: dict, b: dict):
    a, b = summary_without_provenance(a), summary_without_provenance(b)
    assert a.keys() == b.keys()
    different = {k: (a[k], b[k]) for k in a if not _same_value(a[k], b[k])}
    assert not different, f"summaries differ: {different}"


def _same_value(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float) and x != x and y != y:
        return True  # both NaN
    return x == y


def env(extra: dict | None = None) -> dict:
    """The environment of a workflow test: the venv first on PATH (so jobs, and SLURM jobs
    through sbatch's --export=ALL, find `rnnbench`), no progress bars, no user profile."""
    e = dict(os.environ)
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e.get('PATH', '')}"
    e["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    e["RNNBENCH_NO_PROGRESS"] = "1"
    e.pop("SNAKEMAKE_PROFILE", None)
    e.update(extra or {})
    return e


def make_workdir(root: Path, study: dict | str | None = None, study_file: str = "study.yaml",
                 extra: tuple[str, ...] = ()) -> Path:
    """A copy of the workflow (Snakefile, workflow/, and the repository paths in `extra`, e.g.
    "config") in `root`; `study` (a dict, or YAML text) is written to `study_file`."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", root / "Snakefile")
    for name in ("workflow", *extra):
        shutil.copytree(REPO / name, root / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
    if study is not None:
        text = study if isinstance(study, str) else yaml.safe_dump(study, sort_keys=False)
        (root / study_file).parent.mkdir(parents=True, exist_ok=True)
        (root / study_file).write_text(text)
    return root


def snakemake_cmd(study_name: str | None, *args: str, limit: int = 300) -> list[str]:
    target = [f"results/{study_name}/runs.parquet"] if study_name else []
    return ["timeout", "-k", "10", str(limit), str(SNAKEMAKE), *target, *args,
            "--configfile", "study.yaml"]


def snakemake(workdir: Path, study_name: str | None, *args: str, limit: int = 300):
    return subprocess.run(snakemake_cmd(study_name, *args, limit=limit), cwd=workdir, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def study_dict(name: str, methods: dict, fixed=None, **extra) -> dict:
    return {"study": name, "seeds": 1, "fixed": dict(fixed or TINY_FIXED), "methods": methods,
            **extra}


def run_folders(study: dict) -> dict[str, str]:
    """method -> the run's folder name under results/<study>/runs/ (one run per method here)."""
    loaded = load_study(copy.deepcopy(study))
    folder = getattr(loaded, "folder", lambda cfg: cfg.run_id())
    return {cfg.method: folder(cfg) for cfg in loaded.runs()}


def find_training_process(run_folder: str) -> int | None:
    """PID of the `rnnbench run-chunk .../chunks/<run_folder>.json` process training that run
    alone (a chunk of one run is named after the run's folder), if it runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        # `rnnbench run ...` (console script) or `python -m rnnbench run ...`
        if (any(Path(a).name == "rnnbench" for a in args[:3]) and "run-chunk" in args
                and any(Path(a).name == f"{run_folder}.json" for a in args)):
            return int(entry.name)
    return None


def wait_for(predicate, timeout: float, what: str, alive=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if alive is not None and not alive():
            pytest.fail(f"the process ended before {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file()}


def numba_available() -> bool:
    """numba and rnnbench's Numba backend import (a broken install skips, not fails, the
    Numba cases)."""
    try:
        from rnnbench.backends import numba_backend  # noqa: F401
    except Exception:
        return False
    return True


BACKENDS = ["torch", pytest.param("numba", marks=pytest.mark.skipif(
    not numba_available(), reason="numba backend not importable"))]


def unvalidated_cfg(**changes):
    """RunConfig's defaults with `changes`, as a plain namespace: no validation, so a test of one
    module can pass values RunConfig would refuse, without depending on tasks."""
    values = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
              for f in dataclasses.fields(RunConfig)}
    unknown = set(changes) - set(values)
    assert not unknown, f"not RunConfig fields: {sorted(unknown)}"
    return types.SimpleNamespace(**{**values, **changes})


def fake_task(input_dim=2, output_dim=1, per_step=False):
    """The three attributes of a task that building a model reads."""
    return types.SimpleNamespace(input_dim=input_dim, output_dim=output_dim, per_step=per_step)


# A valid two-method study (demo); tests change one thing with demo_study(...).
DEMO_STUDY = {
    "study": "demo",
    "seeds": 2,
    "fixed": {"task": "adding", "hidden": 8, "steps": 20, "eval_interval": 10},
    "methods": {"tanh-RNN": {"cell": "rnn", "activation": "tanh"}, "LSTM": {"cell": "lstm"}},
    "axes": {"T": [10, 20, 30]},
}


def demo_study(**changes) -> dict:
    """DEMO_STUDY with top-level keys replaced."""
    d = copy.deepcopy(DEMO_STUDY)
    d.update(changes)
    return d
