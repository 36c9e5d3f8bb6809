"""Command line: `rnnbench run`, `rnnbench validate`, `rnnbench list`, `rnnbench compare`.

    rnnbench run task=adding T=100 cell=lstm steps=2000 --out results/adhoc/lstm
    rnnbench run --json '{"task": "copy", "T": 100}' --out DIR
    rnnbench run-chunk SPEC.json                   # several runs in one process (the pipeline)
    rnnbench validate config/config.yaml          # expand and check a study, run nothing
    rnnbench list                                  # tasks, cells, activations, inits, plug-ins
    rnnbench figures results/default --jobs 2      # a study's figures, from its tables
    rnnbench paper [STUDY ...]                     # curated tables + figures, from the rows
    rnnbench paper --curate STUDY ...              # results/STUDY -> results/curated/STUDY
    rnnbench compare my_rnn --cores 2              # my_rnn on the standing benchmark vs its
                                                   # committed baseline runs (rnnbench.benchmark)

Every command first loads the plug-ins it is given (`--plugin PATH`, $RNNBENCH_PLUGINS); what
builds runs also loads methods/*.py of the working directory and the installed
`rnnbench.plugins` entry points when a run names something not registered yet
(rnnbench.plugins.load_needed); `list` and `paper` load every source.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import yaml

from .config import EXPONENT_NUMBER
from .process import imports_settled


def _parse_overrides(items: list[str]) -> dict:
    """key=value pairs; values are parsed as YAML so numbers, bools and lists keep their type,
    and `lr=1e-3` is a number here (YAML 1.1 alone would read it as text)."""
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}")
        value = yaml.safe_load(text)
        if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)
        values[key] = value
    return values


def _cmd_run(args) -> int:
    from .config import RunConfig
    from .plugins import load_needed, names_of
    from .train import run

    values = {}
    if args.config:
        with open(args.config) as f:
            values.update(yaml.safe_load(f) or {})
    if args.json:
        values.update(json.loads(args.json))
    values.update(_parse_overrides(args.overrides))
    load_needed(names_of([values]))
    cfg = RunConfig.from_dict(values)  # fails here, naming the field, before any compute
    set_threads(args.threads)
    result = run(cfg, out_dir=args.out)
    s = result.summary
    print(f"run {s['run_id']}: solved={s['solved']} steps={s['steps_done']} "
          f"final_eval_loss={s['final_eval_loss']:.4g} (baseline {s['baseline_loss']:.4g}) "
          f"final_eval_error={s['final_eval_error']:.3f} diverged={s['diverged']} "
          f"backend={s['backend_used']} wall={s['wall_time_s']:.1f}s")
    return 0


def _cmd_run_chunk(args) -> int:
    if _chunk_finished(args.spec):  # before the plug-ins: a job with nothing left starts no torch
        print(f"{args.spec}: every run is finished (trained by other chunk jobs)")
        return 0
    with imports_settled():  # the plug-ins, pandas, and the runs' backends (torch if needed)
        _load_plugins(args)
        spec = read_chunk_spec(args.spec)  # every config checked before the first run trains
        from . import backends  # noqa: F401
        from .chunk_job import run_chunk

    set_threads(args.threads)
    limit = None if args.time_limit_minutes is None else 60 * args.time_limit_minutes
    failed = run_chunk(spec.runs, others=spec.others, time_limit_s=limit)
    if failed:
        print(f"rnnbench: {len(failed)} of {len(spec.runs)} runs failed: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


@dataclasses.dataclass
class ChunkSpec:
    runs: list      # (RunConfig, out_dir): the chunk's own runs
    others: list    # (RunConfig, out_dir): the other chunks' runs, in the order to take them


def read_chunk_spec(path) -> ChunkSpec:
    """A chunk spec: JSON {"runs": [{"config": {run fields}, "out_dir": folder}, ...]}, and
    optionally "others" in the same form (rnnbench.chunk_job.run_chunk); the plug-ins its runs
    need loaded (plugins.load_needed), then every config validated (ValueError naming the run)."""
    spec = _spec_json(path)
    entries = spec.get("runs") if isinstance(spec, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"chunk spec {path}: expected {{\"runs\": [...]}} with at least one run")
    unknown = set(spec) - {"runs", "others"}
    if unknown:
        raise ValueError(f"chunk spec {path}: unknown key(s) {sorted(unknown)}")
    others = spec.get("others", [])
    if not isinstance(others, list):
        raise ValueError(f"chunk spec {path}: 'others' must be a list")
    from .plugins import load_needed, names_of
    load_needed(names_of(entry["config"] for entry in [*entries, *others]
                         if isinstance(entry, dict) and isinstance(entry.get("config"), dict)))
    return ChunkSpec(_chunk_runs(path, "run", entries), _chunk_runs(path, "other run", others))


def _spec_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"chunk spec {path}: {exc}") from None


def _chunk_finished(path) -> bool:
    """Whether every run of chunk spec `path` is finished; False also when the spec is not
    readable as one (read_chunk_spec then says why)."""
    from .records import finished
    try:
        runs = _spec_json(path)["runs"]
        return bool(runs) and all(finished(entry["out_dir"]) for entry in runs)
    except (ValueError, KeyError, TypeError):
        return False


def _chunk_runs(path, kind: str, entries: list) -> list:
    from .config import RunConfig

    runs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"config", "out_dir"}:
            raise ValueError(f"chunk spec {path}: {kind} {i} must have exactly 'config' and "
                             "'out_dir'")
        where = f"chunk spec {path}, {kind} {i}"
        try:
            cfg = RunConfig.from_dict(entry["config"], where=where)
        except ValueError as exc:  # value checks do not know `where`
            raise ValueError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
        runs.append((cfg, str(entry["out_dir"])))
    return runs


def set_threads(n: int):
    """Small recurrent models run fastest on one thread; a sweep parallelises across runs."""
    # The kernels' tiny GEMMs crawl with spare BLAS threads. OpenBLAS reads its thread count
    # from the environment when it loads (a chunk job sets it): asking threadpoolctl to inspect
    # every loaded library then costs a chunk's start-up for nothing.
    blas_set = os.environ.get("OPENBLAS_NUM_THREADS", os.environ.get("OMP_NUM_THREADS")) == str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        # A Numba run may never load torch. If something does, torch takes its thread count
        # from these when it loads; MKL's too, since Numba's OpenMP threads may by then have
        # started with another count, which torch would otherwise follow.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    import numba

    from .reference import blas_threads
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if not blas_set:
        blas_threads(n)


def _load_plugins(args) -> None:
    """The plug-ins asked for (`--plugin`, $RNNBENCH_PLUGINS); methods/ and entry points are
    loaded by what builds runs when they name something unknown (plugins.load_needed)."""
    from .plugins import load_plugins
    load_plugins(getattr(args, "plugin", None) or [], methods_dir=False, entry_points=False)


def _cmd_figures(args) -> int:
    from .figures import FIGURES, render_all
    from .records import check_figure_formats
    try:
        settings = json.loads(args.settings)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--settings is not JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"--settings: expected a JSON object (figure -> setting), "
                         f"got {settings!r}")
    if args.jobs < 1:
        raise ValueError(f"--jobs: expected at least 1, got {args.jobs}")
    names = args.names or list(settings) or [n for n, spec in FIGURES.items() if not spec.needs]
    formats = check_figure_formats(args.formats.split(","), "--formats")
    with imports_settled():  # matplotlib and pandas, which the figures draw with
        from . import plots  # noqa: F401
    for path in render_all(args.study_dir, {n: settings.get(n) for n in names}, args.jobs,
                           formats):
        print(path)
    return 0


def _cmd_validate(args) -> int:
    from .study import load_study
    study = load_study(args.study)
    runs = study.runs()
    print(f"study {study.name!r}: {len(runs)} runs "
          f"({len(study.methods)} methods x {len(runs) // max(len(study.methods), 1)} each) - valid")
    if study.plugins:
        print("plug-ins:", ", ".join(study.plugins))
    return 0


def _cmd_list(args) -> int:
    from . import init_schemes, models, registry, tasks
    from .plugins import load_plugins
    load_plugins()  # every source: this lists them all
    print("tasks:      ", ", ".join(tasks.names()))
    print("cells:      ", ", ".join(models.cells()))
    print("activations:", ", ".join(models.activations()))
    print("inits:      ", ", ".join(init_schemes.schemes()))
    sources = registry.registered_by_plugins()
    if not sources:
        print(f"plug-ins:    none (add a file to {registry.METHODS_DIR}/, a study's plugins:, "
              f"${registry.ENV_VAR} or an '{registry.ENTRY_POINT_GROUP}' entry point)")
    else:
        print("plug-ins:")
    for source, names in sources.items():
        print(f"  {source}: " + ", ".join(f"{kind} {name}" for kind, name in names))
    return 0


def _cmd_paper(args) -> int:
    import time

    from . import papers
    from .papers.curated import curated_bytes
    from .plugins import load_plugins

    load_plugins()  # every source: a curated study may name a plug-in's task
    start = time.perf_counter()
    if args.curate:
        if not args.studies:
            raise ValueError("--curate needs the studies to curate (names under --results, "
                             "or study result folders)")
        names = []
        for study in args.studies:
            folder = study if Path(study).is_dir() else Path(args.results) / study
            names.append(papers.curate(folder, args.curated, args.paper).name)
            print(f"curated {folder} -> {Path(args.curated) / names[-1]}")
        paths = [Path(args.curated) / name / rel for name in names
                 for rel in papers.outputs(_paper_of(Path(args.curated) / name))]
    else:
        paths = papers.regenerate(args.studies or None, args.curated)
    studies = sorted({p.parent.parent.name for p in paths})
    print(f"{len(paths)} tables and figures of {len(studies)} curated studies "
          f"({', '.join(studies) or 'none'}) written in {time.perf_counter() - start:.1f} s; "
          f"{args.curated}: {curated_bytes(args.curated) / 2**20:.1f} MB")
    return 0


def _paper_of(curated_study: Path) -> str:
    return json.loads((curated_study / "meta.json").read_text())["paper"]


def _cmd_compare(args) -> int:
    from .benchmark import TrainingFailed, compare_method, summary_lines

    try:
        result = compare_method(args.method, _parse_overrides(args.set),
                                benchmark=args.benchmark, baseline=args.baseline,
                                baseline_runs=args.baseline_runs, results_dir=args.results,
                                cores=args.cores)
    except TrainingFailed as exc:  # not bad input: the Snakemake log says what failed
        print(f"rnnbench: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.method} vs {result.comparison['baseline'].iloc[0]}:"
          if len(result.comparison) else f"{args.method}: no comparison rows")
    print("\n".join(summary_lines(result.comparison, result.leaderboard, args.method)))
    print("written:", ", ".join(str(result.files[k]) for k in
                                ("comparison_md", "leaderboard_md", "tuning_md", "figure")))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="rnnbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    plugin = argparse.ArgumentParser(add_help=False)
    plugin.add_argument("--plugin", action="append", metavar="PATH",
                        help="also load this plug-in file or folder (repeatable)")
    p = sub.add_parser("run", help="train and evaluate one run", parents=[plugin])
    p.add_argument("overrides", nargs="*", help="run fields as key=value")
    p.add_argument("--config", help="YAML file of run fields")
    p.add_argument("--json", help="run fields as a JSON object")
    p.add_argument("--out", help="folder for summary/curve/gradflow parquet files")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("run-chunk", help="train several runs one after another (a chunk spec)")
    p.add_argument("spec", help='JSON file {"runs": [{"config": {...}, "out_dir": DIR}, ...]}')
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--time-limit-minutes", type=float, default=None,
                   help="the job's time limit: other chunks' runs are taken only while they fit")
    p.set_defaults(func=_cmd_run_chunk, loads_plugins=False)  # it loads them itself, if needed
    p = sub.add_parser("figures", help="draw a study's figures from its aggregated tables")
    p.add_argument("study_dir", help="the study's results folder (runs.parquet, ...)")
    p.add_argument("names", nargs="*", help="entries of rnnbench.figures.FIGURES (default: "
                   "those --settings names, else every one that needs no study key)")
    p.add_argument("--settings", default="{}", help="JSON object: figure -> the value of the "
                   'study key it needs, e.g. {"comparison": {"baseline": "tanh-RNN"}}')
    p.add_argument("--jobs", type=int, default=1,
                   help="figures drawn at once, each in a forked process (default 1)")
    p.add_argument("--formats", default="png,pdf",
                   help="comma-separated file formats, png among them (default png,pdf)")
    p.set_defaults(func=_cmd_figures, loads_plugins=False)  # it builds no runs
    p = sub.add_parser("validate", help="expand and validate a study file")
    p.add_argument("study")
    p.set_defaults(func=_cmd_validate)
    p = sub.add_parser("list", help="list tasks, cells, activations, inits and plug-ins",
                       parents=[plugin])
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("paper", help="paper studies: regenerate the curated tables and "
                       "figures from their rows, or curate a finished study first")
    p.add_argument("studies", nargs="*", help="curated studies (default: all); with --curate: "
                   "study names under --results, or study result folders")
    p.add_argument("--curate", action="store_true", help="copy + thin the studies' aggregated "
                   "rows into the curated folder first")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--curated", default="results/curated",
                   help="curated folder (default: results/curated)")
    p.add_argument("--paper", help="the analysis, when a study's name is not one of "
                   "rnnbench.papers.NAMES")
    p.set_defaults(func=_cmd_paper)
    p = sub.add_parser("compare", parents=[plugin],
                       help="train one method on the standing benchmark and compare it with "
                            "the committed baseline runs")
    p.add_argument("method", help="a cell name (cell: METHOD) or a method of the benchmark")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a run field of the method (repeatable), e.g. --set init=orthogonal")
    p.add_argument("--cores", type=int, default=None, help="Snakemake's cores (default: all)")
    p.add_argument("--baseline", help="baseline method (default: the benchmark's compare.baseline)")
    p.add_argument("--benchmark", default="config/benchmark.yaml", help="the benchmark study")
    p.add_argument("--baseline-runs", default="results/curated/benchmark/runs.parquet",
                   help="the committed runs of the benchmark's methods")
    p.add_argument("--results", default="results",
                   help="results folder: writes <results>/compare-METHOD/")
    p.set_defaults(func=_cmd_compare)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "loads_plugins", True):
            _load_plugins(args)  # before any config is read: plug-ins register its names
        return args.func(args)
    except ValueError as exc:
        print(f"rnnbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
