"""What a finished study cost beyond its training: the suite's core-seconds (cores x the wall
time of the `snakemake` command that ran it, measured by the caller) against the sum of its runs'
own training time (`wall_time_s` in runs.parquet).

    start=$(date +%s); snakemake --cores 2 --configfile config/studies/le2015.yaml; end=$(date +%s)
    .venv/bin/python benchmarks/study_overhead.py results/le2015 --wall $((end - start)) --cores 2

bench_study.py measures the same ratio (and the plain-script comparison) by running a study
itself from a clean folder; this script reads one already run, for studies too long to run
twice.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from rnnbench.aggregate import to_markdown


def overhead(results: Path, wall: float, cores: int) -> dict:
    runs = pd.read_parquet(results / "runs.parquet")
    training = float(runs["wall_time_s"].sum())
    return {"study": results.name, "runs": len(runs), "steps": int(runs["steps_done"].sum()),
            "suite_wall_s": wall, "suite_core_s": cores * wall, "training_s": training,
            "suite_per_training": cores * wall / training}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results/<study> folders")
    parser.add_argument("--wall", type=float, nargs="+", required=True,
                        help="wall seconds of each study's snakemake command, in order")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    if len(args.wall) != len(args.results):
        parser.error("give one --wall value per results folder")
    rows = [overhead(r, w, args.cores) for r, w in zip(args.results, args.wall)]
    table = pd.DataFrame(rows)
    print(to_markdown(table, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
