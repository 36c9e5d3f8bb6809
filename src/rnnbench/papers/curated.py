"""Curated results: what a study's paper tables and figures need, small enough to commit.

    results/curated/<study>/
        runs.parquet       every run's summary row (the aggregated runs.parquet)
        curves.parquet     every evaluation row, and about CURVE_POINTS training rows per run
        gradflow.parquet   the start and end profiles (intermediate ones dropped)
        meta.json          the study, its analysis (rnnbench.papers.NAMES), the rows' source
        tables/            <table>.csv and .md, written by the analysis from the rows above
        figures/           <figure>.png and .pdf, likewise

`curate(study_dir)` copies and thins a finished, aggregated study (results/<study>/) into that
layout and writes its tables and figures; `regenerate()` rewrites every curated table and figure
from the committed rows, without training. All curated studies together stay under
MAX_TOTAL_BYTES.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import records
from .analyses import NAMES, analyse

CURATED_ROOT = Path("results") / "curated"
MAX_TOTAL_BYTES = 20 * 2 ** 20
CURVE_POINTS = 200
META = "meta.json"
ROWS = ("runs", "curves", "gradflow")
PROFILE_PHASES = ("start", "end")


def thin_curves(curves: pd.DataFrame, points: int = CURVE_POINTS) -> pd.DataFrame:
    """Every evaluation row; of the other rows, every k-th step of each run so that about
    `points` remain per run (the last step always)."""
    if curves.empty:
        return curves
    keep = curves["eval_loss"].notna().to_numpy().copy()
    for _, index in curves.groupby("run_id", sort=False).groups.items():
        steps = curves.loc[index, "step"].to_numpy()
        every = max(1, math.ceil(len(steps) / points))
        chosen = (steps % every == 0) | (steps == steps.max())
        keep[curves.index.get_indexer(index)] |= chosen
    return curves[keep].reset_index(drop=True)


def curate(study_dir, curated_root=CURATED_ROOT, paper: str | None = None) -> Path:
    """Copy `study_dir`'s aggregated rows (runs/curves/gradflow.parquet, as
    rnnbench.aggregate writes them), thinned, into curated_root/<study>/ and write the study's
    tables and figures there. `paper`: the analysis, by default the study folder's name."""
    study_dir = Path(study_dir)
    missing = [f"{name}.parquet" for name in ROWS if not (study_dir / f"{name}.parquet").exists()]
    if missing:
        raise ValueError(f"{study_dir}: no {', '.join(missing)}; run and aggregate the study "
                         "first (snakemake --configfile config/studies/<study>.yaml)")
    name = study_dir.name
    paper = paper or name
    if paper not in NAMES:
        raise ValueError(f"{study_dir}: no paper analysis named {paper!r}; pass one of "
                         f"{list(NAMES)} (rnnbench paper --curate DIR --paper NAME)")
    runs = pd.read_parquet(study_dir / "runs.parquet")
    if runs.empty:
        raise ValueError(f"{study_dir}/runs.parquet has no runs: nothing to curate")
    curves = thin_curves(pd.read_parquet(study_dir / "curves.parquet"))
    gradflow = pd.read_parquet(study_dir / "gradflow.parquet")
    if not gradflow.empty:
        gradflow = gradflow[gradflow["phase"].isin(PROFILE_PHASES)].reset_index(drop=True)
    dest = Path(curated_root) / name
    for rows, frame in zip(ROWS, (runs, curves, gradflow)):
        records.write_parquet(frame, dest / f"{rows}.parquet")
    records.write_text(json.dumps(_meta(name, paper, study_dir, runs), indent=1,
                                  sort_keys=True) + "\n", dest / META)
    regenerate([name], curated_root)
    total = curated_bytes(curated_root)
    if total > MAX_TOTAL_BYTES:
        sizes = {p.name: _bytes(p) for p in _studies(curated_root)}
        raise ValueError(f"curated results take {total / 2**20:.1f} MB, more than "
                         f"{MAX_TOTAL_BYTES / 2**20:.0f} MB: {sizes}; thin them "
                         "(CURVE_POINTS) before committing")
    return dest


def _meta(name, paper, study_dir, runs) -> dict:
    def values(column):
        return sorted(int(v) for v in runs[column].dropna().unique()) if column in runs else []
    commits = sorted(str(c) for c in runs.get("prov_git_commit", pd.Series(dtype=str)).unique())
    return {"study": name, "paper": paper, "source": str(study_dir), "runs": len(runs),
            "seeds": values("seed"), "steps": values("steps"), "rnnbench_commits": commits}


def regenerate(names=None, curated_root=CURATED_ROOT) -> list[Path]:
    """Rewrite the tables and figures of the named curated studies (default: every folder of
    curated_root with a meta.json) from their committed rows. No training."""
    root = Path(curated_root)
    folders = [root / name for name in names] if names else _studies(root)
    paths = []
    for folder in folders:
        if not (folder / META).exists():
            known = [p.name for p in _studies(root)]
            raise ValueError(f"{folder}: not a curated study (no {META}); curated: {known}")
        meta = json.loads((folder / META).read_text())
        frames = [_read(folder / f"{rows}.parquet") for rows in ROWS]
        paths += analyse(meta["paper"], *frames, folder)
    return paths


def _read(path: Path) -> pd.DataFrame:
    return records.read_run_file(path) if path.exists() else pd.DataFrame()


def _studies(root: Path) -> list[Path]:
    root = Path(root)
    return sorted(p for p in root.iterdir() if (p / META).exists()) if root.is_dir() else []


def _bytes(path: Path) -> int:
    return int(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()))


def curated_bytes(curated_root=CURATED_ROOT) -> int:
    """Bytes of every curated study together."""
    return int(np.sum([_bytes(p) for p in _studies(curated_root)], dtype=np.int64))
