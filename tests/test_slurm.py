"""The pipeline on a real SLURM cluster: one study through the SLURM executor plugin (sbatch, srun,
sacct) gives the same tables as the same study run locally.

A single-node cluster with accounting (munge, MariaDB + slurmdbd, slurmctld, slurmd) is started
by tests/slurm/cluster.sh in a temporary folder and always stopped afterwards. It installs
Debian's SLURM packages when they are missing; the test is skipped only when that is impossible
(not root, no apt-get, apt-get fails: exit code 3). Any other problem is a failure.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = VENV_BIN / "snakemake"

STUDY = "slurmtiny"
# 2 methods x 1 length x 1 seed, a few steps: two sbatch jobs of a few seconds each.
TINY_STUDY = textwrap.dedent(f"""\
    study: {STUDY}
    description: "SLURM test: 2 methods x 1 length x 1 seed"
    results_dir: results
    seeds: 1
    fixed:
      task: adding
      T: 10
      hidden: 8
      optimizer: adam
      lr: 0.01
      batch_size: 8
      steps: 20
      eval_interval: 10
      eval_size: 32
      clip: norm
      clip_threshold: 1.0
      device: cpu
    methods:
      tanh-RNN: {{cell: rnn, activation: tanh}}
      GRU: {{cell: gru}}
    """)

# Columns that record where and when a run ran, not what it computed.
def _is_provenance(column: str) -> bool:
    return column.startswith("prov_") or column == "wall_time_s" or "host" in column


def result_table(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    df = df[[c for c in df.columns if not _is_provenance(c)]]
    keys = [c for c in ("run_id", "step", "phase", "lag") if c in df.columns]
    return df.sort_values(keys).reset_index(drop=True)


def job_env(extra: dict | None = None) -> dict:
    """The submitting environment. sbatch exports it to the jobs (--export=ALL), so the venv's
    `rnnbench` and `snakemake` are found inside the SLURM jobs too."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    env["RNNBENCH_NO_PROGRESS"] = "1"
    env.pop("SNAKEMAKE_PROFILE", None)
    env.update(extra or {})
    return env


def make_workdir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", root / "Snakefile")
    shutil.copytree(REPO / "workflow", root / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
    (root / "tiny.yaml").write_text(TINY_STUDY)
    return root


def run_snakemake(workdir: Path, args: list[str], env: dict, limit: int = 600):
    """snakemake TARGET ARGS in workdir, killed after `limit` s (the slurm plugin can hang)."""
    target = f"results/{STUDY}/runs.parquet"
    cmd = ["timeout", "-k", "10", str(limit), str(SNAKEMAKE), target, *args,
           "--configfile", "tiny.yaml"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    return proc, time.monotonic() - t0


def _tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def _cluster_logs(d: Path) -> str:
    out = []
    for f in sorted((d / "log").glob("*.log")):
        out.append(f"--- {f}\n{_tail(f.read_text(errors='replace'), 15)}")
    return "\n".join(out)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node SLURM cluster with accounting; yields the env for its clients."""
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("snakemake-executor-plugin-slurm is not installed in this environment: "
                    "pip install -e '.[dev]' (or '.[slurm]')")
    if not sys.platform.startswith("linux"):
        pytest.skip("the SLURM test cluster needs Linux (Debian packages)")
    # Not pytest's tmp_path: its parents are private (0700) and munged runs as the munge user.
    base = "/tmp" if os.path.isdir("/tmp") else None
    cluster_dir = Path(tempfile.mkdtemp(prefix="rnnbench-slurm-", dir=base))
    start = subprocess.run(["timeout", "-k", "10", "1200", "bash", str(CLUSTER_SH), "start",
                            str(cluster_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        if start.returncode == 3:
            pytest.skip("this machine cannot host a SLURM test cluster: "
                        + _tail(start.stdout, 3).replace("\n", " | "))
        if start.returncode != 0:
            pytest.fail(f"cluster.sh start failed (exit {start.returncode}):\n{_tail(start.stdout)}"
                        f"\n{_cluster_logs(cluster_dir)}")
        yield {"SLURM_CONF": str(cluster_dir / "etc" / "slurm.conf"), "dir": cluster_dir}
    finally:
        stop = subprocess.run(["timeout", "-k", "10", "120", "bash", str(CLUSTER_SH), "stop",
                               str(cluster_dir)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if stop.returncode != 0:
            print(f"cluster.sh stop failed (exit {stop.returncode}):\n{stop.stdout}",
                  file=sys.stderr)
        if not os.environ.get("RNNBENCH_KEEP_SLURM_DIR"):
            shutil.rmtree(cluster_dir, ignore_errors=True)


@pytest.mark.timeout(1800)
def test_study_on_slurm_equals_local_run(slurm_cluster, tmp_path):
    env = job_env({"SLURM_CONF": slurm_cluster["SLURM_CONF"]})

    # 1. The study through SLURM, with the repository's profile (sbatch per training run).
    on_slurm = make_workdir(tmp_path / "slurm")
    proc, seconds = run_snakemake(on_slurm, ["--profile", str(PROFILE)], env)
    slurm_logs = sorted((on_slurm / "logs" / "slurm").rglob("*.log"))
    details = (f"snakemake output:\n{_tail(proc.stdout, 80)}\n"
               + "\n".join(f"--- {f}\n{_tail(f.read_text(errors='replace'), 20)}"
                           for f in slurm_logs))
    assert proc.returncode != 124, f"snakemake on SLURM timed out after 600 s\n{details}"
    assert proc.returncode == 0, f"snakemake on SLURM failed (exit {proc.returncode})\n{details}"
    print(f"SLURM study: {seconds:.0f} s")

    # The two training runs really were SLURM jobs: one kept log each, and accounting knows them.
    train_logs = [f for f in slurm_logs if "train_chunk" in str(f)]
    assert len(train_logs) == 2, details
    sacct = subprocess.run(["timeout", "30", "sacct", "-n", "-X", "-P", "-o", "JobName,State",
                            "--starttime", "2000-01-01"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    states = [line.split("|")[1] for line in sacct.stdout.splitlines() if "|" in line]
    assert states.count("COMPLETED") >= 2, f"sacct:\n{sacct.stdout}"

    # 2. The same study locally.
    local = make_workdir(tmp_path / "local")
    proc, _ = run_snakemake(local, ["--cores", "2"], job_env())
    assert proc.returncode == 0, f"local snakemake failed:\n{_tail(proc.stdout, 80)}"

    # 3. Seeded CPU runs: identical results, whoever ran them.
    for table in ("runs", "curves", "gradflow"):
        a = result_table(on_slurm / "results" / STUDY / f"{table}.parquet")
        b = result_table(local / "results" / STUDY / f"{table}.parquet")
        if table == "runs":
            assert len(a) == 2 and set(a["method"]) == {"tanh-RNN", "GRU"}
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{table}.parquet")
