"""Studies: one YAML file -> the list of runs it asks for (methods x axes x seeds).

Every run is built as a validated `RunConfig` when the study is loaded, so a typo in a field
name or an impossible value stops the study before anything trains, with a message naming the
study, the method and the field.

    study: default                    # name; also the results folder
    description: "..."
    seeds: 3                          # n -> [0, .., n-1], or an explicit list
    fixed: {task: adding, ...}        # run fields shared by every run
    methods: {LSTM: {cell: lstm}}     # name -> run-field overrides (default: one method "default")
    axes: {T: [10, 50]}               # field -> values, crossed with each other
    exclude: [{method: LSTM, T: 10}]  # drop runs matching every key of one entry
    chunks: {per_core: 1}             # several runs per job (rnnbench.chunks)
    compare: {baseline: tanh-RNN}     # optional: compare every other method with this one
                                      # (+ tune: lr, validation_seeds: [...]: rnnbench.compare)
    plugins: [my_cells.py]            # plug-in files/folders (rnnbench.plugins), relative to
                                      # the study file (to the working directory for a dict)

Loading a study loads its `plugins:` (and $RNNBENCH_PLUGINS) first, then methods/ and the
installed entry points if it names a cell, activation, init or task that is still unknown
(rnnbench.plugins.load_needed), so its runs may use what plug-ins register. A run with `match_params`
gets the hidden size that matches that parameter count (models.resolve_hidden) when the runs
are expanded, so its id, folder and recorded `hidden` are the resolved ones.
    paper: pascanu2013                # the paper analysis the workflow adds (rnnbench.papers)
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import yaml

from . import records
from .chunks import CHUNK_DEFAULTS, check_settings, plan
from .config import (EXPONENT_NUMBER, YAML_NUMBER_HINT, RunConfig, coerce_field, field_names,
                     field_types, merge_settings)

TOP_LEVEL_KEYS = ("study", "description", "seeds", "fixed", "methods", "axes", "exclude",
                  "results_dir", "ensemble", "chunks", "compare", "plugins", "paper",
                  "figure_formats")
ENSEMBLE_DEFAULTS = {"enabled": False, "members_per_job": 256}
COMPARE_KEYS = ("baseline", "tune", "validation_seeds")
RESERVED = ("seed", "method")  # set by `seeds` and `methods`, never by fixed/overrides/axes


@dataclass
class Study:
    name: str
    description: str = ""
    seeds: list = field(default_factory=lambda: [0])
    fixed: dict = field(default_factory=dict)
    methods: dict = field(default_factory=lambda: {"default": {}})
    axes: dict = field(default_factory=dict)
    exclude: list = field(default_factory=list)
    results_dir: str = "results"
    ensemble: dict = field(default_factory=lambda: dict(ENSEMBLE_DEFAULTS))
    chunks: dict = field(default_factory=lambda: dict(CHUNK_DEFAULTS))
    compare: dict = field(default_factory=dict)  # {"baseline": method} or {} (no comparison)
    plugins: list = field(default_factory=list)  # absolute paths of the study's plug-ins
    paper: str = ""             # rnnbench.papers analysis of the study ("" = none)
    figure_formats: tuple = records.DEFAULT_FIGURE_FORMATS  # of the study's figures (figures/), png first

    def jobs(self, cores: int = 1, finished=()) -> tuple[dict[str, list[str]],
                                                         dict[str, list[str]]]:
        """How the runs are trained: (chunk id -> folders of the runs one job trains one after
        another, group id -> member folders of an ensemble job); folders as `Study.folder`.

        Runs whose folder is in `finished` are left out of the chunks, which are packed anew
        from the rest (`rnnbench.chunks.plan`, `cores` cores). With `ensemble.enabled`, runs
        that can share a job (rnnbench.ensemble.can_ensemble) are grouped by shape, at most
        `members_per_job` per group."""
        runs = self.runs()
        grouped = []
        if self.ensemble["enabled"]:
            from .ensemble import can_ensemble, group_runs
            grouped = group_runs([cfg for cfg in runs if can_ensemble(cfg)],
                                 self.ensemble["members_per_job"])
            runs = [cfg for cfg in runs if not can_ensemble(cfg)]
        finished = set(finished)
        pending = [cfg for cfg in runs if self.folder(cfg) not in finished]
        chunks = {}
        for chunk in plan(pending, cores, self.chunks):
            chunks[chunk.chunk_id(self.folder)] = [self.folder(cfg) for cfg in chunk.runs]
        groups = {}
        for members in grouped:
            ids = [cfg.run_id() for cfg in members]
            groups[hashlib.sha1(" ".join(ids).encode()).hexdigest()[:12]] = [
                self.folder(cfg) for cfg in members]
        return chunks, groups

    def registry_names(self) -> set[tuple[str, str]]:
        """(field, value) of every cell, activation, init and task the runs name
        (plugins.NAMED_FIELDS), from `fixed`, the methods' overrides and the axes: known before
        any run is built, so that the plug-ins that register them can be loaded first."""
        from .plugins import NAMED_FIELDS, names_of
        pairs = names_of([self.fixed, *self.methods.values()])
        for key in NAMED_FIELDS:
            pairs |= names_of({key: value} for value in self.axes.get(key, ()))
        return pairs

    def runs(self) -> list[RunConfig]:
        """methods x product(axes) x seeds, excluded combinations dropped; each one validated."""
        runs, labels = [], {}
        for method, overrides in self.methods.items():
            for combo in itertools.product(*self.axes.values()):
                axis_values = dict(zip(self.axes, combo))
                for seed in self.seeds:
                    values = {**self.fixed, **overrides, **axis_values, "seed": seed,
                              "method": method}
                    if self._excluded(values):
                        continue
                    label = _label(method, axis_values, seed)
                    cfg = _build(values, f"study '{self.name}', method '{method}' ({label})")
                    cfg = _resolve_hidden(cfg, f"study '{self.name}', method '{method}'")
                    run_id = cfg.run_id()
                    if run_id in labels:
                        raise ValueError(
                            f"study '{self.name}': runs {labels[run_id]} and {label} are the same "
                            f"run (id {run_id}); remove the duplicate axis value, seed or method")
                    labels[run_id] = label
                    runs.append(cfg)
        if not runs:
            raise ValueError(f"study '{self.name}': 'exclude' removes every run")
        return runs

    def table(self) -> pd.DataFrame:
        """One row per run: run_id, label, then every RunConfig field as a result column."""
        rows = [{"run_id": cfg.run_id(), "label": self.label(cfg), **cfg.record()}
                for cfg in self.runs()]
        return pd.DataFrame(rows, columns=["run_id", "label", *field_names()])

    def label(self, cfg: RunConfig) -> str:
        """Readable name of a run: method, swept axis values, seed (`LSTM/T=100/seed=0`)."""
        return _label(cfg.method, {k: getattr(cfg, k) for k in self.axes}, cfg.seed)

    def folder(self, cfg: RunConfig) -> str:
        """The run's folder under `runs/`: its readable label, then its id
        (`LSTM_T=100_seed=0--8cc4b8bdecff`), so paths show the parameters and stay unique."""
        return run_folder(self.label(cfg), cfg.run_id())

    def folders(self) -> dict[str, str]:
        """run id -> folder name, for every run."""
        return {cfg.run_id(): self.folder(cfg) for cfg in self.runs()}

    def swept(self) -> list[str]:
        """Fields that differ between runs by construction: method, the axes, seed."""
        return ["method", *self.axes, "seed"]

    def _excluded(self, values: dict) -> bool:
        defaults = {f.name: f.default for f in fields(RunConfig)}
        return any(all(values.get(k, defaults.get(k)) == v for k, v in entry.items())
                   for entry in self.exclude)


def check_numbers_read_as_text(data) -> None:
    """Raise if a run value in `fixed`, `methods` or `axes` is a number YAML read as text
    (`lr: 1e-3`). The workflow calls this before its JSON schema, whose own message for that
    case ("'1e-3' is not of type 'number'") does not say why."""
    if not isinstance(data, dict):
        return
    places = [("fixed", data.get("fixed"))]
    methods = data.get("methods")
    if isinstance(methods, dict):
        places += [(f"methods.{name}", values) for name, values in methods.items()]
    found = []
    for where, values in places:
        if isinstance(values, dict):
            found += [f"{where}.{key} = {value!r}" for key, value in values.items()
                      if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value)]
    axes = data.get("axes")
    if isinstance(axes, dict):
        found += [f"axes.{key} has {value!r}" for key, values in axes.items()
                  if isinstance(values, list) for value in values
                  if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value)]
    if found:
        raise ValueError(f"study config: {'; '.join(found)}: {YAML_NUMBER_HINT}")


def load_study(source, base_dir=None) -> Study:
    """Read a study from a YAML path or a dict (e.g. Snakemake's `config`), check its shape and
    build every run, so that all validation errors surface here. Relative `plugins:` paths are
    relative to the study file, or to `base_dir` (default: the working directory) for a dict."""
    if isinstance(source, (str, Path)):
        where = f"study file {source}"
        with open(source) as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as exc:  # one line naming the place, not PyYAML's traceback
                raise ValueError(f"{where}: {_yaml_syntax_error(exc)}") from None
        base_dir = Path(source).resolve().parent
    else:
        data, where = source, "study config"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown top-level key(s) {unknown}; "
                         f"allowed: {list(TOP_LEVEL_KEYS)}")
    name = data.get("study")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"{where}: 'study' must be a non-empty name usable as a folder, "
                         f"got {name!r}")
    where = f"study '{name}'"
    from .plugins import load_needed, load_plugins
    try:  # the plug-ins the study (or the environment) asks for: before the runs are built
        plugins = load_plugins(_plugin_paths(data.get("plugins")), base_dir, methods_dir=False,
                               entry_points=False)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    study = Study(
        name=name,
        description=str(data.get("description") or ""),
        seeds=_seeds(data.get("seeds", 1), where),
        fixed=_fields(data.get("fixed") or {}, f"{where}: fixed"),
        methods=_methods(data.get("methods"), where),
        axes=_axes(data.get("axes") or {}, where),
        exclude=_exclude(data.get("exclude") or [], where),
        results_dir=str(data.get("results_dir", "results")),
        ensemble=_ensemble(data.get("ensemble") or {}, where),
        chunks=check_settings(data.get("chunks") or {}, where),
        plugins=plugins,
        paper=_paper(data.get("paper"), where),
        figure_formats=records.check_figure_formats(data.get("figure_formats", records.DEFAULT_FIGURE_FORMATS),
                                     f"{where}: figure_formats"),
    )
    try:  # methods/ and entry points, if the runs name something not registered yet
        load_needed(study.registry_names())
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    _check_plugin_cells(study.runs(), where)  # validate every run now
    if "compare" in data:
        study.compare = _compare(data["compare"], study, where)
    return study


# --- helpers -------------------------------------------------------------------------------
def _yaml_syntax_error(exc: yaml.YAMLError) -> str:
    """`YAML syntax error at line L, column C: <problem>` (1-based, as editors count), plus
    where the unclosed construct began when PyYAML knows it (an unclosed `{` is reported at
    the end of the file, its cause at the brace)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return "YAML syntax error: " + " ".join(str(exc).split())
    msg = f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: " + " ".join(
        problem.split())
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and (start.line, start.column) != (mark.line, mark.column):
        msg += f" ({context} at line {start.line + 1}, column {start.column + 1})"
    return msg


def _plugin_paths(paths) -> list:
    if paths is None:
        return []
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise ValueError(f"'plugins' must be a list of plug-in file or folder paths, "
                         f"got {paths!r}")
    return paths


def _resolve_hidden(cfg: RunConfig, where: str) -> RunConfig:
    if not cfg.match_params:
        return cfg
    from .models import resolve_hidden
    try:
        return resolve_hidden(cfg)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _check_plugin_cells(runs: list[RunConfig], where: str) -> None:
    """Build each plug-in cell the runs use once, tiny, with one forward and backward
    (models.check_plugin_cell): a broken cell stops the study here, naming its file."""
    from .models import is_plugin
    seen = set()
    for cfg in runs:
        key = (cfg.cell, cfg.hidden, cfg.dtype, cfg.task, cfg.T, json.dumps(cfg.task_options))
        if not is_plugin(cfg.cell) or key in seen:
            continue
        seen.add(key)
        from .models import check_plugin_cell  # torch: only for studies with plug-in cells
        from .tasks import make
        try:
            check_plugin_cell(cfg, make(cfg.task, cfg.T, **cfg.task_options).input_dim)
        except ValueError as exc:
            raise ValueError(f"{where}, method '{cfg.method}': {exc}") from None


def _build(values: dict, where: str) -> RunConfig:
    try:
        return RunConfig.from_dict(values, where=where)
    except ValueError as exc:  # value checks in config.validate do not know `where`
        msg = str(exc)
        raise ValueError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def _ensemble(values, where) -> dict:
    merged = merge_settings(values, ENSEMBLE_DEFAULTS, "ensemble", where)
    cap = merged["members_per_job"]
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise ValueError(f"{where}: 'ensemble.members_per_job' must be an integer >= 1, got {cap!r}")
    return merged


def _compare(values, study: Study, where) -> dict:
    """`compare: {baseline: <method>}`: the baseline is one of the methods, another method is
    there, and the baseline has runs in every cell (task, T, other axes) the others have."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: 'compare' must be a mapping {{baseline: <method name>}}, "
                         f"got {values!r}")
    unknown = sorted(set(values) - set(COMPARE_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} in 'compare'; "
                         f"allowed: {list(COMPARE_KEYS)}")
    baseline = values.get("baseline")
    if not isinstance(baseline, str) or baseline not in study.methods:
        raise ValueError(f"{where}: 'compare.baseline' must be one of the methods "
                         f"{list(study.methods)}, got {baseline!r}")
    from .compare import check_baseline_cells
    table = study.table()
    check_baseline_cells(table, baseline, f"{where}: compare")
    settings = {"baseline": baseline}
    if "tune" in values or "validation_seeds" in values:
        settings.update(_tuning(values, study, table, f"{where}: compare"))
    return settings


def _tuning(values, study: Study, table: pd.DataFrame, where) -> dict:
    """`tune: <axis>` with `validation_seeds: [...]` (rnnbench.compare.select_tuned): the axis is
    swept, the validation seeds are some but not all of the study's seeds, and their runs are
    evaluated on other held-out sequences (eval_seed) than the test runs."""
    tune, seeds = values.get("tune"), values.get("validation_seeds")
    if tune is None or seeds is None:
        raise ValueError(f"{where}: 'tune' and 'validation_seeds' go together (choose the value "
                         "of an axis on the validation seeds' runs)")
    if not isinstance(tune, str) or tune not in study.axes or tune in ("task", "T"):
        raise ValueError(f"{where}: 'tune' must name an axis of the study other than task and "
                         f"T, one of {[a for a in study.axes if a not in ('task', 'T')]}; "
                         f"got {tune!r}")
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise ValueError(f"{where}: 'validation_seeds' must be a non-empty list of seeds, "
                         f"got {seeds!r}")
    if not set(seeds) < set(study.seeds):
        raise ValueError(f"{where}: 'validation_seeds' {seeds} must be some of the study's seeds "
                         f"{study.seeds}, leaving at least one test seed")
    is_validation = table["seed"].isin(seeds)
    validation = set(table.loc[is_validation, "eval_seed"])
    test = set(table.loc[~is_validation, "eval_seed"])
    if validation & test:
        raise ValueError(
            f"{where}: the validation runs (seeds {seeds}) would be evaluated on the test runs' "
            f"held-out sequences (eval_seed {sorted(validation & test)}); give them another "
            "eval_seed: an axis eval_seed with exclude entries pairing each value with its "
            "seeds, as config/benchmark.yaml does")
    return {"tune": tune, "validation_seeds": list(seeds)}


def _paper(name, where) -> str:
    if name is None:
        return ""
    from .papers import NAMES  # a light module: the analyses import their plotting lazily
    if name not in NAMES:
        raise ValueError(f"{where}: 'paper' must be one of {list(NAMES)}, got {name!r}")
    return name


def run_folder(label: str, run_id: str) -> str:
    """A file-system- and shell-safe folder name from a label and a run id."""
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "-", label.replace("/", "_")).strip("-.")[:120]
    return f"{slug}--{run_id}" if slug else run_id


def run_id_of(folder: str) -> str:
    """The run id at the end of a run folder's name (a bare id is its own folder)."""
    return str(folder).rsplit("--", 1)[-1]


def _label(method: str, axis_values: dict, seed: int) -> str:
    parts = [method, *(f"{k}={_fmt(v)}" for k, v in axis_values.items()), f"seed={seed}"]
    return "/".join(parts)


def _fmt(value) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _seeds(seeds, where) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds <= 0:
            raise ValueError(f"{where}: 'seeds' must be a positive count or a list, got {seeds}")
        return list(range(seeds))
    if isinstance(seeds, list) and seeds and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{where}: 'seeds' lists a seed twice: {seeds}")
        return list(seeds)
    raise ValueError(f"{where}: 'seeds' must be a positive int n (seeds 0..n-1) or a non-empty "
                     f"list of integers >= 0, got {seeds!r}")


def _fields(values, where, allow_reserved=False, check_types=True) -> dict:
    """Check that `values` maps run-field names to values of the fields' types (a value that an
    axis later overrides is still checked here)."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping of run fields, got {values!r}")
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise ValueError(f"{where}: unknown run field(s) {unknown}; allowed: {field_names()}")
    reserved = sorted(set(values) & set(RESERVED)) if not allow_reserved else []
    if reserved:
        raise ValueError(f"{where}: {reserved} cannot be set here; "
                         "seeds come from 'seeds' and method names from 'methods'")
    if not check_types:
        return dict(values)
    hints = field_types()
    return {k: coerce_field(k, v, hints[k], where) for k, v in values.items()}


def _methods(methods, where) -> dict:
    if methods is None:
        return {"default": {}}
    if not isinstance(methods, dict) or not methods:
        raise ValueError(f"{where}: 'methods' must be a non-empty mapping name -> overrides")
    out = {}
    for name, overrides in methods.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"{where}: method name {name!r} must be a non-empty string "
                             "without '/'")
        out[name] = _fields(overrides or {}, f"{where}, method '{name}'")
    return out


def _axes(axes, where) -> dict:
    if not isinstance(axes, dict):
        raise ValueError(f"{where}: 'axes' must be a mapping field -> list of values")
    _fields(axes, f"{where}: axes", check_types=False)  # values: lists, checked per run
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}: axis '{name}' must be a non-empty list, got {values!r}")
    return {k: list(v) for k, v in axes.items()}


def _exclude(entries, where) -> list[dict]:
    if not isinstance(entries, list):
        raise ValueError(f"{where}: 'exclude' must be a list of partial run fields")
    for i, entry in enumerate(entries):
        _fields(entry, f"{where}: exclude[{i}]", allow_reserved=True)
        if not entry:
            raise ValueError(f"{where}: exclude[{i}] is empty and would drop every run")
    return [dict(e) for e in entries]
