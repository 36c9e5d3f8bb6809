"""What a study costs end to end, against its own training time and against a plain script.

    .venv/bin/python benchmarks/bench_study.py                  # the default study, 2 cores
    .venv/bin/python benchmarks/bench_study.py --variants chunks=1 chunks=1,no-steal one-per-job
    .venv/bin/python benchmarks/bench_study.py --variants chunks=1 chunks=1,seeds=4 chunks=1,formats=png
    .venv/bin/python benchmarks/bench_study.py --repeat 3           # medians over 3 rounds
    .venv/bin/python benchmarks/bench_study.py --study config/studies/x.yaml --cores 2
    .venv/bin/python benchmarks/bench_study.py --results results/le2015 --wall 840   # already run

For each variant, the study runs from a clean results folder in a temporary copy of the
workflow (`snakemake --cores N`, the default profile). Reported, side by side in one run:

- suite core-seconds: cores x wall time, from Snakemake's start to its last figure;
- training: the sum of the runs' own `wall_time_s` (training, evaluations, intermediate
  profiles);
- plain script: core-seconds of one process (one thread) that trains the same runs one after
  another with nn.RNN/LSTM/GRU, a linear head, the same optimiser, clipping, batch size, task
  data and number of steps as each run took in the suite, and nothing else (no evaluation, no
  diagnostics, no files) -- the script a user would write instead of using the suite.

With `--results DIR --wall SECONDS` the study is not run again: DIR is a finished study (its
runs.parquet) and SECONDS the wall time its `snakemake` command took (measured by the caller,
e.g. `date +%s` before and after). For a paper study, which is too long to train twice, the
plain script then trains a sample: one run per combination of the study's swept fields other
than the seed (the lowest seed), each for the steps it took in the suite; every other run is
priced at its combination's measured seconds per step. A study's plain-script cost is the sum.

Goals (issue "Sweep throughput on a CPU"): suite <= 1.3 x training; suite >= 2 x faster than the
plain script, both in core-seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# nn.RNN covers tanh/relu; other activations have no fused torch module, so the plain script
# cannot train them and the benchmark refuses such studies.
TORCH_MODULES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def plain_script(runs_json: str) -> None:
    """Train every run of the list (dicts: task, T, task_options, cell, activation, hidden,
    optimizer, lr, momentum, clip, clip_threshold, batch_size, seed, steps) in this process;
    write each run's training seconds to the list's file + ".seconds" (JSON)."""
    import torch

    from rnnbench.tasks import losses, make

    torch.set_num_threads(1)
    seconds = []
    for run in json.loads(Path(runs_json).read_text()):
        start = time.perf_counter()
        task = make(run["task"], run["T"], **json.loads(run["task_options"]))
        torch.manual_seed(run["seed"])
        kwargs = {"nonlinearity": run["activation"]} if run["cell"] == "rnn" else {}
        rnn = getattr(torch.nn, TORCH_MODULES[run["cell"]])(
            task.input_dim, run["hidden"], batch_first=True, **kwargs)
        head = torch.nn.Linear(run["hidden"], task.output_dim)
        params = list(rnn.parameters()) + list(head.parameters())
        opt = {"adam": lambda: torch.optim.Adam(params, lr=run["lr"], betas=(run["momentum"], 0.999)),
               "rmsprop": lambda: torch.optim.RMSprop(params, lr=run["lr"], alpha=run["momentum"]),
               "sgd": lambda: torch.optim.SGD(params, lr=run["lr"]),
               "momentum": lambda: torch.optim.SGD(params, lr=run["lr"], momentum=run["momentum"]),
               }[run["optimizer"]]()
        y_dtype = torch.float32 if task.loss_kind == "mse" else torch.long
        for step in range(run["steps"]):
            batch = task.sample(run["batch_size"], step + 1000 * run["seed"])
            out, _ = rnn(torch.from_numpy(batch.x))
            out = head(out if task.per_step else out[:, -1])
            loss = losses.torch_loss(task.loss_kind, out, torch.as_tensor(batch.y, dtype=y_dtype))
            opt.zero_grad()
            loss.backward()
            if run["clip"] == "norm":
                torch.nn.utils.clip_grad_norm_(params, run["clip_threshold"])
            elif run["clip"] == "value":
                torch.nn.utils.clip_grad_value_(params, run["clip_threshold"])
            opt.step()
        seconds.append(time.perf_counter() - start)
    Path(runs_json + ".seconds").write_text(json.dumps(seconds))


def variant_study(study: dict, variant: str) -> dict:
    """The study as the variant runs it. A variant is comma-separated items: `chunks=K` (K
    chunk jobs per core), `no-steal` (jobs do not take each other's runs), `one-per-job` (no
    chunks), `seeds=N`, `formats=png+svg` (the study's figure_formats)."""
    study = dict(study, results_dir="results")
    chunks = {}
    for item in variant.split(","):
        key, _, value = item.partition("=")
        if key == "chunks":
            chunks["per_core"] = int(value)
        elif key == "no-steal":
            chunks["steal"] = False
        elif key == "one-per-job":
            chunks["enabled"] = False
        elif key == "seeds":
            study["seeds"] = int(value)
        elif key == "formats":
            study["figure_formats"] = value.split("+")
        else:
            sys.exit(f"variant {variant!r}: unknown item {item!r} (chunks=K, no-steal, "
                     "one-per-job, seeds=N, formats=png+pdf)")
    study["chunks"] = {**study.get("chunks", {}), **chunks}
    return study


def workdir(root: Path, study: dict, variant: str) -> Path:
    """A copy of the workflow whose config/config.yaml is the study as the variant runs it."""
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    for d in ("workflow", "config", "profiles/default", "methods"):
        if (REPO / d).exists():
            shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "config" / "config.yaml").write_text(
        yaml.safe_dump(variant_study(study, variant), sort_keys=False))
    return root


def run_suite(study: dict, variant: str, cores: int) -> tuple[float, "pd.DataFrame"]:
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        wd = workdir(Path(tmp), study, variant)
        env = {**os.environ, "RNNBENCH_NO_PROGRESS": "1"}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores)],
                              cwd=wd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"variant {variant}: snakemake failed\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        runs = pd.read_parquet(wd / "results" / study["study"] / "runs.parquet")
    return wall, runs


def plain_unsupported(runs) -> list[str]:
    """What in `runs` the plain script cannot train: cells without an nn module, rnn
    activations other than tanh and relu, stacks, bidirectional runs, the regulariser."""
    unsupported = sorted(set(runs["cell"]) - set(TORCH_MODULES)) + sorted(
        set(runs.loc[runs["cell"] == "rnn", "activation"]) - {"tanh", "relu"})
    if (runs["layers"] != 1).any():
        unsupported.append("layers > 1")
    if runs["bidirectional"].any():
        unsupported.append("bidirectional")
    if (runs["regularizer"] > 0).any():  # it would time the runs without their extra work
        unsupported.append("the Omega regulariser (regularizer > 0)")
    return unsupported


def run_plain(runs, per_run: bool = False):
    """Core-seconds of the plain script on `runs` (one process, one thread); with `per_run`
    also each run's training seconds."""
    columns = ["task", "T", "task_options", "cell", "activation", "hidden", "optimizer", "lr",
               "momentum", "clip", "clip_threshold", "batch_size", "seed", "steps_done"]
    unsupported = plain_unsupported(runs)
    if unsupported:
        sys.exit(f"the plain script trains single-layer nn.RNN/LSTM/GRU without a regulariser "
                 f"only, not {unsupported}")
    records = runs[columns].rename(columns={"steps_done": "steps"}).to_dict("records")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                   for r in records], f)
    try:
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--plain", f.name], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        total = time.perf_counter() - start  # one thread: wall = core-seconds
        seconds = json.loads(Path(f.name + ".seconds").read_text())
        return (total, seconds) if per_run else total
    finally:
        os.unlink(f.name)
        Path(f.name + ".seconds").unlink(missing_ok=True)


def sampled_plain(runs) -> tuple[float, int]:
    """The plain script's estimated core-seconds for `runs`, from training one run per
    combination of swept fields (all but the seed; the lowest seed), and the sample's size.
    Each combination's runs are priced at its sample's seconds per step; the one process start
    is counted once."""
    from rnnbench.config import field_names

    varying = [c for c in field_names() if c in runs and c != "seed"
               and runs[c].astype(str).nunique() > 1]
    keys = ["method", *[c for c in varying if c != "method"]] if "method" in runs else varying
    groups = runs.assign(_key=runs[keys].astype(str).agg("|".join, axis=1)).groupby("_key")
    sample = groups.apply(lambda g: g.sort_values("seed").iloc[0], include_groups=False)
    total, seconds = run_plain(sample, per_run=True)
    start_cost = total - sum(seconds)
    steps = groups["steps_done"].sum()
    estimate = start_cost + sum(sec / max(int(row.steps_done), 1) * steps[key]
                                for (key, row), sec in zip(sample.iterrows(), seconds))
    return estimate, len(sample)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["chunks=1"],
                        help="comma-separated items: chunks=K (K chunk jobs per core), "
                             "no-steal (jobs do not take each other's runs), one-per-job, "
                             "seeds=N, formats=png+pdf (e.g. chunks=1,no-steal or "
                             "chunks=1,seeds=4,formats=png)")
    parser.add_argument("--results", type=Path,
                        help="a finished study's folder: measure it instead of running a study")
    parser.add_argument("--wall", type=float, help="with --results: its snakemake wall seconds")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every variant and the plain script (default 1)")
    parser.add_argument("--plain", help=argparse.SUPPRESS)  # internal: the plain script itself
    args = parser.parse_args()
    if args.plain:
        plain_script(args.plain)
        return 0
    if args.results:
        return measured_study(args.results, args.wall, args.cores, parser)
    study = yaml.safe_load(Path(args.study).read_text())
    # Rounds interleave the variants and the plain script, so that a change in the host's speed
    # during the benchmark (a shared machine) reaches every variant alike; each ratio is taken
    # within one round, and the table gives the median over the rounds with its range.
    for variant in args.variants:  # a bad variant stops the benchmark before any run
        variant_study(study, variant)
    rows = {variant: [] for variant in args.variants}
    for _ in range(args.repeat):
        plain = {}  # per set of runs: variants of the same runs take the same steps (seeded)
        for variant in args.variants:
            wall, runs = run_suite(study, variant, args.cores)
            key = tuple(sorted(runs["run_id"]))
            if key not in plain:
                plain[key] = run_plain(runs)
            rows[variant].append((len(runs), wall, float(runs["wall_time_s"].sum()),
                                  plain[key]))
    print(f"\nstudy {study['study']!r}, {args.cores} cores, {args.repeat} round(s) "
          f"(suite core-seconds = cores x wall; plain script: one process, one thread; "
          f"medians over the rounds, ratios with their range)\n")
    print("| variant | runs | suite wall s | suite core-s | runs' training s | plain script core-s "
          "| suite / training (goal <= 1.3) | plain / suite (goal >= 2) |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, measured in rows.items():
        n, wall, training, plain = (statistics.median(column) for column in zip(*measured))
        over = [args.cores * w / t for _, w, t, _ in measured]
        ahead = [p / (args.cores * w) for _, w, _, p in measured]
        print(f"| {variant} | {n:.0f} | {wall:.1f} | {args.cores * wall:.1f} | {training:.1f} | "
              f"{plain:.1f} | {_spread(over)} | {_spread(ahead)} |")
    return 0


def _spread(values) -> str:
    """The median, with the range when there are several values."""
    median = f"{statistics.median(values):.2f}"
    return median if len(values) == 1 else f"{median} ({min(values):.2f}-{max(values):.2f})"


def measured_study(results: Path, wall: float | None, cores: int, parser) -> int:
    import pandas as pd

    if wall is None:
        parser.error("--results needs --wall (the wall seconds of the study's snakemake command)")
    runs = pd.read_parquet(results / "runs.parquet")
    suite, training = cores * wall, float(runs["wall_time_s"].sum())
    unsupported = plain_unsupported(runs)
    if unsupported:  # suite / training still holds; the plain script cannot train every run
        plain, ratio = "not measurable", "-"
        how = f"the plain script cannot train {unsupported}"
    else:
        estimate, sampled = sampled_plain(runs)
        plain, ratio = f"{estimate:.0f}", f"{estimate / suite:.2f}"
        how = f"plain script estimated from {sampled} sampled runs"
    print(f"\nstudy {results.name!r} as run: {len(runs)} runs, {cores} cores, {how}\n")
    print("| study | runs | suite wall s | suite core-s | runs' training s | plain script core-s "
          "(estimated) | suite / training (goal <= 1.3) | plain / suite (goal >= 2) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {results.name} | {len(runs)} | {wall:.0f} | {suite:.0f} | {training:.0f} | "
          f"{plain} | {suite / training:.2f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
