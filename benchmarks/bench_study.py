"""What a study costs end to end, against its own training time and against a plain script.

    .venv/bin/python benchmarks/bench_study.py                  # the default study, 2 cores
    .venv/bin/python benchmarks/bench_study.py --variants chunks=2 chunks=1 one-per-job
    .venv/bin/python benchmarks/bench_study.py --study config/studies/x.yaml --cores 2

For each variant, the study runs from a clean results folder in a temporary copy of the
workflow (`snakemake --cores N`, the default profile). Reported, side by side in one run:

- suite core-seconds: cores x wall time, from Snakemake's start to its last figure;
- training: the sum of the runs' own `wall_time_s` (training, evaluations, intermediate
  profiles);
- plain script: core-seconds of one process (one thread) that trains the same runs one after
  another with nn.RNN/LSTM/GRU, a linear head, the same optimiser, clipping, batch size, task
  data and number of steps as each run took in the suite, and nothing else (no evaluation, no
  diagnostics, no files) -- the script a user would write instead of using the suite.

Goals (issue "Sweep throughput on a CPU"): suite <= 1.3 x training; suite >= 2 x faster than the
plain script, both in core-seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
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
    optimizer, lr, momentum, clip, clip_threshold, batch_size, seed, steps) in this process."""
    import torch

    from rnnbench.tasks import losses, make

    torch.set_num_threads(1)
    for run in json.loads(Path(runs_json).read_text()):
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


def workdir(root: Path, study: dict, variant: str) -> Path:
    """A copy of the workflow whose config/config.yaml is the study with the variant's chunks."""
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    for d in ("workflow", "config", "profiles/default", "methods"):
        if (REPO / d).exists():
            shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    study = dict(study, results_dir="results")
    if variant == "one-per-job":
        study["chunks"] = {"enabled": False}
    else:
        study["chunks"] = {"per_core": int(variant.split("=")[1])}
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
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


def run_plain(runs) -> float:
    columns = ["task", "T", "task_options", "cell", "activation", "hidden", "optimizer", "lr",
               "momentum", "clip", "clip_threshold", "batch_size", "seed", "steps_done"]
    unsupported = sorted(set(runs["cell"]) - set(TORCH_MODULES)) + sorted(
        set(runs.loc[runs["cell"] == "rnn", "activation"]) - {"tanh", "relu"})
    if unsupported or (runs["layers"] != 1).any() or runs["bidirectional"].any():
        sys.exit(f"the plain script trains single-layer nn.RNN/LSTM/GRU only, not {unsupported}")
    records = runs[columns].rename(columns={"steps_done": "steps"}).to_dict("records")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                   for r in records], f)
    try:
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--plain", f.name], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        return time.perf_counter() - start  # one thread: wall = core-seconds
    finally:
        os.unlink(f.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["chunks=2"],
                        help="chunks=K (K chunk jobs per core) or one-per-job")
    parser.add_argument("--plain", help=argparse.SUPPRESS)  # internal: the plain script itself
    args = parser.parse_args()
    if args.plain:
        plain_script(args.plain)
        return 0
    study = yaml.safe_load(Path(args.study).read_text())
    rows = []
    plain = None
    for variant in args.variants:
        wall, runs = run_suite(study, variant, args.cores)
        if plain is None:  # the same runs and steps for every variant (seeded, deterministic)
            plain = run_plain(runs)
        suite = args.cores * wall
        training = float(runs["wall_time_s"].sum())
        rows.append((variant, len(runs), wall, suite, training, plain))
    print(f"\nstudy {study['study']!r}, {args.cores} cores "
          f"(suite core-seconds = cores x wall; plain script: one process, one thread)\n")
    print("| variant | runs | suite wall s | suite core-s | runs' training s | plain script core-s "
          "| suite / training (goal <= 1.3) | plain / suite (goal >= 2) |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, n, wall, suite, training, plain in rows:
        print(f"| {variant} | {n} | {wall:.1f} | {suite:.1f} | {training:.1f} | {plain:.1f} "
              f"| {suite / training:.2f} | {plain / suite:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
