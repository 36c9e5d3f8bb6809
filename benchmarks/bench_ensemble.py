"""Training throughput of the ensemble engine against one-run-at-a-time baselines.

    .venv/bin/python benchmarks/bench_ensemble.py                  # GPU table (H=128, B=64, T=200)
    .venv/bin/python benchmarks/bench_ensemble.py --precision tf32
    .venv/bin/python benchmarks/bench_ensemble.py --quick          # CPU smoke run, small sizes
    .venv/bin/python benchmarks/bench_ensemble.py --device cpu --threads 1 --hidden 16 \
        --batch 32 --length 50 --members 1,4,16,64 --skip-loop     # can it win on a CPU?

One "model-step" is one optimisation step of one model: forward over T steps, backward
(BPTT), global-norm clipping and an SGD update, on a fresh batch of B sequences of input size I
with a scalar MSE readout at the last step. Rows:

  nn.<Cell>       the fused library RNN (cuDNN on CUDA), one model at a time
  <Cell>Cell loop a Python loop of nn.<Cell>Cell over time, one model at a time
  numba backend   (CPU only) rnnbench's Numba backend, one model at a time: the path a CPU
                  sweep takes for these cells, so the row the ensemble must beat on a CPU
  ensemble G=..   G models stacked (rnnbench.ensemble.StackedTrainer), one step trains all G;
                  modes: eager, compile (torch.compile of the cell's elementwise step), graph
                  (the whole step captured in a CUDA graph), compile+graph

model-steps/s = G / (seconds per step); "vs nn" is that throughput over the nn.<Cell> row's.
TFLOP/s counts the matmul work only: forward T * 2 B gH (I + H) + 2 B H (gH = gates * H), and
training = 3 x forward (backward = 2 x forward). Peaks: --peak-fp32 / --peak-tf32, by default
taken from the device name (H100/H200 SXM: 67 FP32, 494.7 dense TF32 TFLOP/s); n/a on CPU.
Data generation is not timed (the engine prefetches batches on a CPU thread), the per-step
read-back of the members' loss/norm/clip statistics is.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from types import SimpleNamespace

import torch

from rnnbench.ensemble.engine import StackedTrainer
from rnnbench.backends.numba_backend import NumbaBackend
from rnnbench.cell_table import GATE_COUNT
from rnnbench.config import RunConfig
from rnnbench.ensemble.stacked import StackedModel
from rnnbench.tasks import make as make_task

LIBRARY = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
CELL_LOOP = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
PEAKS = {"H100": (67.0, 494.7), "H200": (67.0, 494.7)}  # SXM, dense, TFLOP/s (FP32, TF32)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, device, min_time, min_reps, max_reps, warmup=2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times, start = [], time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def library_step(cell, H, B, T, I, device):
    rnn = LIBRARY[cell](I, H, batch_first=True).to(device)
    head = torch.nn.Linear(H, 1).to(device)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    x, y = torch.randn(B, T, I, device=device), torch.randn(B, device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(x)
        loss = torch.nn.functional.mse_loss(head(out[:, -1]).squeeze(1), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return step


def loop_step(cell, H, B, T, I, device):
    unit = CELL_LOOP[cell](I, H).to(device)
    head = torch.nn.Linear(H, 1).to(device)
    params = list(unit.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    x, y = torch.randn(T, B, I, device=device), torch.randn(B, device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        h = x.new_zeros(B, H)
        c = x.new_zeros(B, H)
        for t in range(T):
            if cell == "lstm":
                h, c = unit(x[t], (h, c))
            else:
                h = unit(x[t], h)
        loss = torch.nn.functional.mse_loss(head(h).squeeze(1), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return step


def numba_step(cell, H, B, T, I, device):
    """One step of the Numba backend (forward, BPTT, norm clipping, SGD) on the adding problem's
    shapes (input size 2, scalar MSE readout), float32 like the other rows."""
    if device.type != "cpu" or I != 2:
        raise ValueError("the Numba row needs --device cpu and --input-size 2")
    cfg = RunConfig(task="adding", T=T, cell=cell, hidden=H, batch_size=B, optimizer="sgd",
                    lr=0.01, clip="norm", clip_threshold=1.0, dtype="float32", backend="numba",
                    device="cpu")
    task = make_task("adding", T)
    backend = NumbaBackend(cfg, task)
    batch = task.sample(B, 0)

    def step():
        backend.step(batch)
    return step


def ensemble_step(cell, H, B, T, I, G, device, fused, graph):
    gH = GATE_COUNT[cell] * H
    bound = H ** -0.5
    shapes = {"weight_ih": (G, gH, I), "weight_hh": (G, gH, H), "bias_ih": (G, gH),
              "bias_hh": (G, gH), "head_weight": (G, 1, H), "head_bias": (G, 1)}
    params = {k: (torch.rand(s, device=device) * 2 - 1).mul_(bound).requires_grad_(True)
              for k, s in shapes.items()}
    model = StackedModel(cell, params, per_step=False, fused=fused)
    member = SimpleNamespace(optimizer="sgd", lr=0.01, momentum=0.9, clip="norm", clip_threshold=1.0)
    trainer = StackedTrainer(model, [member] * G, "mse", cuda_graph=graph)
    x, y = torch.randn(G, B, T, I, device=device), torch.randn(G, B, device=device)

    def step():
        trainer.step(x, y).cpu()   # the engine reads the members' statistics every step
    return step


def flops_per_model_step(cell, H, B, T, I) -> float:
    gH = GATE_COUNT[cell] * H
    forward = T * 2 * B * gH * (I + H) + 2 * B * H
    return 3.0 * forward


def device_peaks(device, args):
    if device.type != "cuda":
        return None, None
    name = torch.cuda.get_device_name(device)
    fp32, tf32 = next((v for k, v in PEAKS.items() if k in name), (None, None))
    return args.peak_fp32 or fp32, args.peak_tf32 or tf32


def describe(device, args) -> str:
    if device.type == "cuda":
        where = f"GPU: {torch.cuda.get_device_name(device)}"
    else:
        where = f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
    return (f"# {datetime.date.today()} | {where} | torch {torch.__version__} | "
            f"precision {args.precision} | H={args.hidden}, B={args.batch}, T={args.length}, "
            f"I={args.input_size} | forward+backward+clip+SGD per model-step")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repetitions (CPU smoke test)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=("fp32", "tf32"), default="fp32",
                        help="fp32: TF32 off everywhere (cuBLAS and cuDNN); tf32: on")
    parser.add_argument("--cells", default="lstm,gru,rnn")
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--length", type=int, default=None)
    parser.add_argument("--input-size", type=int, default=2)
    parser.add_argument("--members", default=None, help="G values (default 1,16,64,256,1024)")
    parser.add_argument("--modes", default=None,
                        help="ensemble modes: eager,compile,graph,compile+graph (CPU: eager)")
    parser.add_argument("--skip-loop", action="store_true", help="leave out the Python cell loop")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--peak-fp32", type=float, default=None, help="TFLOP/s")
    parser.add_argument("--peak-tf32", type=float, default=None, help="TFLOP/s")
    args = parser.parse_args(argv)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    quick = args.quick
    if args.threads:
        torch.set_num_threads(args.threads)
    args.hidden = args.hidden or (16 if quick else 128)
    args.batch = args.batch or (8 if quick else 64)
    args.length = args.length or (20 if quick else 200)
    members = [int(g) for g in (args.members or ("1,4,16" if quick else "1,16,64,256,1024")).split(",")]
    all_modes = "eager,compile,graph,compile+graph" if device.type == "cuda" else "eager"
    modes = (args.modes or all_modes).split(",")
    min_time, min_reps, max_reps = (0.05, 2, 5) if quick else (1.0, 5, 100)
    if device.type == "cuda":
        allow = args.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow
    peak_fp32, peak_tf32 = device_peaks(device, args)
    H, B, T, I = args.hidden, args.batch, args.length, args.input_size

    print(describe(device, args))
    print("| cell | implementation | G | ms/step | model-steps/s | vs nn | TFLOP/s | % FP32 peak "
          "| % TF32 peak | GPU GiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []

    def report(cell, name, G, seconds, base, mem):
        rate = G / seconds
        tflops = flops_per_model_step(cell, H, B, T, I) * rate / 1e12
        pct = lambda peak: f"{100 * tflops / peak:.1f}" if peak else "n/a"  # noqa: E731
        ratio = f"{rate / base:.2f}" if base else "1.00"
        gib = f"{mem / 2**30:.2f}" if mem is not None else "n/a"
        print(f"| {cell} | {name} | {G} | {1e3 * seconds:.3f} | {rate:.1f} | {ratio} | "
              f"{tflops:.4f} | {pct(peak_fp32)} | {pct(peak_tf32)} | {gib} |", flush=True)
        rows.append({"cell": cell, "impl": name, "G": G, "seconds": seconds, "rate": rate})

    def measure(make):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        seconds = median_time(make(), device, min_time, min_reps, max_reps)
        mem = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        return seconds, mem

    for cell in args.cells.split(","):
        torch.manual_seed(0)
        seconds, mem = measure(lambda: library_step(cell, H, B, T, I, device))
        base = 1 / seconds
        report(cell, f"nn.{cell.upper()}", 1, seconds, None, mem)
        if not args.skip_loop:
            seconds, mem = measure(lambda: loop_step(cell, H, B, T, I, device))
            report(cell, f"{cell.upper()}Cell loop", 1, seconds, base, mem)
        if device.type == "cpu":
            seconds, mem = measure(lambda: numba_step(cell, H, B, T, I, device))
            report(cell, "numba backend", 1, seconds, base, mem)
        for mode in modes:
            fused, graph = "compile" in mode, "graph" in mode
            for G in members:
                try:
                    seconds, mem = measure(lambda: ensemble_step(cell, H, B, T, I, G, device, fused, graph))
                except torch.cuda.OutOfMemoryError:
                    print(f"| {cell} | ensemble {mode} | {G} | OOM | | | | | | |", flush=True)
                    torch.cuda.empty_cache()
                    break
                except Exception as exc:  # noqa: BLE001 - a failing mode is a table entry
                    print(f"| {cell} | ensemble {mode} | {G} | error: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:80]} | | | | | | |", flush=True)
                    break
                report(cell, f"ensemble {mode}", G, seconds, base, mem)
    return rows


if __name__ == "__main__":
    main()
