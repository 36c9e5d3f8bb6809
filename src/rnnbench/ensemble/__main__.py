"""`python -m rnnbench.ensemble --json-list '[{...}, ...]' --out-dirs D1 D2 ...`: train one group.

The runs must share one `rnnbench.ensemble.group_key` (see grouping.py); each run's
summary/curve/gradflow.parquet are written to its folder, exactly as `rnnbench run --out` does.
Exit status 0 on success, 2 for a bad group or config (the message names the field).
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbench.ensemble",
                                     description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--json-list", help="JSON list of run-field objects (one per member)")
    source.add_argument("--json-file", help="file holding that JSON list")
    parser.add_argument("--out-dirs", nargs="*", default=None,
                        help="one result folder per run, in the order of the list")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: the runs' field)")
    parser.add_argument("--compile", dest="fused", action="store_true", default=None,
                        help="CUDA: fuse the cell's elementwise step with torch.compile")
    parser.add_argument("--cuda-graph", action="store_true", default=None,
                        help="CUDA: capture the training step in a CUDA graph")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args(argv)
    try:
        text = args.json_list if args.json_list is not None else open(args.json_file).read()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--json-list is not valid JSON: {exc}") from None
        if not isinstance(values, list) or not values:
            raise ValueError("--json-list must be a non-empty JSON list of run objects")
        if args.out_dirs is not None and len(args.out_dirs) != len(values):
            raise ValueError(f"{len(args.out_dirs)} --out-dirs for {len(values)} runs")
        from ..config import RunConfig
        from ..plugins import load_needed, load_plugins, names_of
        from ..process import imports_settled
        from .grouping import check_group
        with imports_settled():  # torch, the engine and the plug-ins (rnnbench.process)
            load_plugins(methods_dir=False, entry_points=False)  # $RNNBENCH_PLUGINS
            # plug-in cells too: check_group then says why they cannot join an ensemble
            load_needed(names_of(v for v in values if isinstance(v, dict)))
            import torch
            from .engine import run_group
        cfgs = [RunConfig.from_dict(v, where=f"run {i}") for i, v in enumerate(values)]
        check_group(cfgs)  # fails here, before any compute
        if args.threads:
            torch.set_num_threads(args.threads)
        results = run_group(cfgs, out_dirs=args.out_dirs, device=args.device, fused=args.fused,
                            cuda_graph=args.cuda_graph)
    except ValueError as exc:
        print(f"rnnbench.ensemble: error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        s = r.summary
        print(f"run {s['run_id']}: solved={s['solved']} steps={s['steps_done']} "
              f"final_eval_loss={s['final_eval_loss']:.4g} (baseline {s['baseline_loss']:.4g}) "
              f"final_eval_error={s['final_eval_error']:.3f} diverged={s['diverged']} "
              f"backend={s['backend_used']} ensemble_size={s['ensemble_size']} "
              f"wall={s['wall_time_s']:.1f}s")
    return 0


if __name__ == "__main__":
    from ..process import end_process
    end_process(main())  # without the interpreter's teardown (rnnbench.process)
