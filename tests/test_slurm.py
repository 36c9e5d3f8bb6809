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

from support import REPO, SNAKEMAKE, env, make_workdir, result_table, tail

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"

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
    chunks: {{per_core: 2}}      # two SLURM jobs (Snakemake plans a cluster study for one core)
    """)

def run_snakemake(workdir: Path, args: list[str], job_env: dict, limit: int = 600):
    """snakemake TARGET ARGS in workdir, killed after `limit` s (the slurm plugin can hang)."""
    target = f"results/{STUDY}/runs.parquet"
    cmd = ["timeout", "-k", "10", str(limit), str(SNAKEMAKE), target, *args,
           "--configfile", "tiny.yaml"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, env=job_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    return proc, time.monotonic() - t0


def _cluster_logs(d: Path) -> str:
    out = []
    for f in sorted((d / "log").glob("*.log")):
        out.append(f"--- {f}\n{tail(f.read_text(errors='replace'), 15)}")
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
                        + tail(start.stdout, 3).replace("\n", " | "))
        if start.returncode != 0:
            pytest.fail(f"cluster.sh start failed (exit {start.returncode}):\n{tail(start.stdout)}"
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
    cluster_env = env({"SLURM_CONF": slurm_cluster["SLURM_CONF"]})

    # 1. The study through SLURM, with the repository's profile (sbatch per training run).
    on_slurm = make_workdir(tmp_path / "slurm", TINY_STUDY, "tiny.yaml")
    proc, seconds = run_snakemake(on_slurm, ["--profile", str(PROFILE)], cluster_env)
    slurm_logs = sorted((on_slurm / "logs" / "slurm").rglob("*.log"))
    details = (f"snakemake output:\n{tail(proc.stdout, 80)}\n"
               + "\n".join(f"--- {f}\n{tail(f.read_text(errors='replace'), 20)}"
                           for f in slurm_logs))
    assert proc.returncode != 124, f"snakemake on SLURM timed out after 600 s\n{details}"
    assert proc.returncode == 0, f"snakemake on SLURM failed (exit {proc.returncode})\n{details}"
    print(f"SLURM study: {seconds:.0f} s")

    # The two training runs really were SLURM jobs: one kept log each, and accounting knows them.
    train_logs = [f for f in slurm_logs if "train_chunk" in str(f)]
    assert len(train_logs) == 2, details
    sacct = subprocess.run(["timeout", "30", "sacct", "-n", "-X", "-P", "-o", "JobName,State",
                            "--starttime", "2000-01-01"], env=cluster_env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    states = [line.split("|")[1] for line in sacct.stdout.splitlines() if "|" in line]
    assert states.count("COMPLETED") >= 2, f"sacct:\n{sacct.stdout}"

    # 2. The same study locally.
    local = make_workdir(tmp_path / "local", TINY_STUDY, "tiny.yaml")
    proc, _ = run_snakemake(local, ["--cores", "2"], env())
    assert proc.returncode == 0, f"local snakemake failed:\n{tail(proc.stdout, 80)}"

    # 3. Seeded CPU runs: identical results, whoever ran them.
    for table in ("runs", "curves", "gradflow"):
        a = result_table(on_slurm / "results" / STUDY / f"{table}.parquet")
        b = result_table(local / "results" / STUDY / f"{table}.parquet")
        if table == "runs":
            assert len(a) == 2 and set(a["method"]) == {"tanh-RNN", "GRU"}
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{table}.parquet")
