"""Result files: provenance, atomic writes, the layout of one run's folder, and the file formats
a study's figures may take.

A run folder holds `curve.parquet`, `gradflow.parquet` and, written last, `summary.parquet`:
a folder without a readable summary is an unfinished run, never a result.
"""
from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from ._version import __version__

RUN_FILES = ("curve.parquet", "gradflow.parquet", "summary.parquet")  # summary last
FIGURE_FORMATS = ("png", "pdf", "svg")   # what a study's `figure_formats` may list
DEFAULT_FIGURE_FORMATS = ("png", "pdf")  # PNG for the report, PDF for papers


def check_figure_formats(formats, where: str = "figure_formats") -> tuple:
    """`formats` as a tuple, once it is a list of known formats that includes png (the report
    shows the PNGs); ValueError naming the problem otherwise."""
    if isinstance(formats, str) or not isinstance(formats, (list, tuple)) or not formats:
        raise ValueError(f"{where}: expected a list of formats from {list(FIGURE_FORMATS)}, "
                         f"got {formats!r}")
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown:
        raise ValueError(f"{where}: unknown format(s) {unknown}; known: {list(FIGURE_FORMATS)}")
    if "png" not in formats:
        raise ValueError(f"{where}: must include 'png' (the report shows the PNGs), "
                         f"got {list(formats)}")
    return tuple(dict.fromkeys(formats))


def finished(out_dir) -> bool:
    """Whether the run in folder `out_dir` is finished: its summary, written last, exists."""
    return (Path(out_dir) / RUN_FILES[-1]).exists()


def _atomic(path: Path, write) -> Path:
    """Write to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_parquet(df: pd.DataFrame, path) -> Path:
    return _atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_csv(df: pd.DataFrame, path) -> Path:
    return _atomic(path, lambda tmp: df.to_csv(tmp, index=False))


def write_text(text: str, path) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes(data: bytes, path) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_run(out_dir, summary: dict, curve: pd.DataFrame, gradflow: pd.DataFrame) -> Path:
    """Write one run's three files; the summary goes last so that it marks completion."""
    out_dir = Path(out_dir)
    write_parquet(curve, out_dir / "curve.parquet")
    write_parquet(gradflow, out_dir / "gradflow.parquet")
    write_parquet(pd.DataFrame([summary]), out_dir / "summary.parquet")
    return out_dir


def read_run_file(path) -> pd.DataFrame:
    """Read one result file; a truncated or corrupt file raises a ValueError naming it."""
    return _read_table(path).to_pandas()


def read_run_table(path):
    """One result file as a pyarrow Table for `concat_run_tables`, without its pandas metadata
    (it describes that file's columns only, and the first file's would be applied to the
    concatenated table). A truncated or corrupt file raises a ValueError naming it."""
    return _read_table(path).replace_schema_metadata(None)


def _read_table(path):
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        return pq.ParquetFile(path).read()
    except FileNotFoundError:
        raise ValueError(f"result file missing: {path}") from None
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise ValueError(f"corrupt or truncated result file {path}: {exc}") from None


def concat_run_tables(tables) -> pd.DataFrame:
    """One DataFrame of the rows of several runs' tables (`read_run_table`), converted once:
    pandas' per-file reading cost several times the parquet decoding, which made aggregation a
    serial second of a study's end. Columns come in order of appearance, a column missing from
    a run is null there, and a column takes the type the runs have in common: int in one run
    and float in another is float; null or without rows in one run takes the others' type.
    Types with nothing in common (text in one run, numbers in another: runs written by other
    code) give pandas' concatenation, an object column."""
    import pyarrow as pa

    tables = [t for t in tables if t.num_columns]
    if not tables:
        return pd.DataFrame()
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


@functools.lru_cache(maxsize=1)
def _git_state() -> tuple[str, bool]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=root, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit, dirty


def _version(package: str) -> str:
    """The package's version, from the loaded module, else from its installed metadata (a
    Numba run does not import torch to record it). The two agree for wheels (e.g.
    2.13.0+cpu); a source build's metadata may name its version differently."""
    module = sys.modules.get(package)
    if module is not None:
        return module.__version__
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def provenance(device: str = "cpu") -> dict:
    """Versions, git commit, device and host: recorded with every result row."""
    import numpy

    commit, dirty = _git_state()
    device_name = platform.processor() or platform.machine()
    if device.startswith("cuda"):
        import torch
        if torch.cuda.is_available():
            device_name = torch.cuda.get_device_name(torch.device(device))
    return {
        "prov_rnnbench": __version__,
        "prov_torch": _version("torch"),
        "prov_numpy": numpy.__version__,
        "prov_numba": _version("numba"),
        "prov_python": sys.version.split()[0],
        "prov_git_commit": commit,
        "prov_git_dirty": dirty,
        "prov_device": device,
        "prov_device_name": device_name,
        "prov_host": socket.gethostname(),
        "prov_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
