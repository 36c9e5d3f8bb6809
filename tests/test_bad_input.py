"""Bad input is rejected with a message that names the problem, before any compute starts.

In one place, by layer: a run's fields (RunConfig, `rnnbench.run`), a study file (its
structure, types, impossible values, numbers YAML reads as text, YAML syntax), and the
Snakemake command line, which must refuse a bad study before any job starts. Checks of a single
function's arguments (a loss's shapes, a task's sample size) stay with that function's tests.
"""
from __future__ import annotations

import copy
import re

import pytest
import yaml

import rnnbench
from rnnbench import models
from rnnbench.config import RunConfig
from rnnbench.chunks import CHUNK_DEFAULTS, check_settings
from rnnbench.study import check_numbers_read_as_text, load_study
from support import DEMO_STUDY as BASE, TINY_FIXED, snakemake, tail, unvalidated_cfg
from support import demo_study as study



# --- one run's fields ------------------------------------------------------------------------
TINY = dict(task="adding", T=8, hidden=8, batch_size=8, steps=30, eval_interval=10,
            eval_size=64, dtype="float64")


def test_run_rejects_bad_fields_before_compute():
    with pytest.raises(ValueError, match="celll"):
        rnnbench.run({**TINY, "celll": "lstm"})
    with pytest.raises(ValueError, match="'cell'"):
        rnnbench.run({**TINY, "cell": "transformer"})
    with pytest.raises(ValueError, match="'T'"):
        rnnbench.run({**TINY, "T": 0})
    with pytest.raises(ValueError, match="'hidden'"):
        rnnbench.run({**TINY, "hidden": "32"})
    with pytest.raises(ValueError, match="'backend'"):
        rnnbench.run({**TINY, "layers": 2, "backend": "numba"})


@pytest.mark.parametrize("changes, field", [
    (dict(cell="transformer"), "cell"),
    (dict(activation="swish"), "activation"),
    (dict(cell="lstm", activation="relu"), "activation"),
    (dict(cell="gru", activation="sigmoid"), "activation"),
    (dict(cell="rnn", forget_bias=1.0), "forget_bias"),
    (dict(cell="gru", forget_bias=1.0), "forget_bias"),
    (dict(cell="lstm", forget_bias=float("nan")), "forget_bias"),
])
def test_cell_options_rejected_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        models.check_options(unvalidated_cfg(**changes))


@pytest.mark.parametrize("fields", [dict(backend="ensemble"),
                                    dict(cell="lstm", activation="tanh"), dict(cell="gru"),
                                    dict(layers=2), dict(regularizer=-1.0),
                                    dict(regularizer=float("inf"))])
def test_regularizer_on_unsupported_runs_names_the_field(fields):
    base = dict(task="adding", T=6, hidden=4, regularizer=2.0)
    with pytest.raises(ValueError, match="regularizer"):
        RunConfig(**{**base, **fields})


# --- a study's structure and values --------------------------------------------------------
@pytest.mark.parametrize("data, words", [
    (study(colour="red"), ["colour", "top-level"]),
    (study(axes={"Tee": [10]}), ["Tee", "axes"]),
    (study(axes={"T": []}), ["axis 'T'", "non-empty"]),
    (study(seeds=0), ["seeds"]),
    (study(seeds=-2), ["seeds"]),
    (study(seeds=[0, 0]), ["seeds", "twice"]),
    (study(axes={"T": [10, 10]}), ["same run", "T=10"]),
    (study(fixed={"hiden": 8}), ["hiden", "fixed"]),
    (study(fixed={"seed": 3}), ["seed", "seeds"]),
    (study(methods={"LSTM": {"cell": "lstm", "forgetbias": 1.0}}), ["LSTM", "forgetbias"]),
    (study(methods={}), ["methods"]),
    (study(study="a/b"), ["study"]),
    (study(exclude=[{"T": 10, "seed": 0}, {"T": 10, "seed": 1}, {"T": 20}, {"T": 30}]),
     ["exclude", "every run"]),
])
def test_structural_errors_name_the_problem(data, words):
    with pytest.raises(ValueError) as err:
        load_study(data)
    for w in words:
        assert w in str(err.value)


def test_bad_value_names_study_method_and_field():
    data = study(methods={"tanh-RNN": {"cell": "rnn"}, "Weird": {"cell": "foo"}})
    with pytest.raises(ValueError) as err:
        load_study(data)
    msg = str(err.value)
    assert "study 'demo'" in msg and "method 'Weird'" in msg and "'cell'" in msg and "foo" in msg


def test_wrong_type_names_the_field():
    with pytest.raises(ValueError, match=r"method 'LSTM'.*'hidden'"):
        load_study(study(methods={"LSTM": {"cell": "lstm", "hidden": "big"}}))
    with pytest.raises(ValueError, match=r"'T'"):
        load_study(study(axes={"T": [10, "long"]}))


def _set(path: str, value):
    """A change to the valid fuzz study: set `path` (dotted) to `value`."""
    def change(study):
        *parents, last = path.split(".")
        node = study
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return change


def _delete(path: str):
    def change(study):
        *parents, last = path.split(".")
        node = study
        for p in parents:
            node = node[p]
        del node[last]
    return change


FUZZ_BASE = {"study": "fuzz", "seeds": 1, "fixed": dict(TINY_FIXED),
             "methods": {"m": {"cell": "rnn"}}, "axes": {"eval_size": [32, 64]}}

# (id, change, the field the message must name)
BAD_CONFIGS = [
    # unknown keys at every level
    ("top-unknown", _set("studyy", "x"), "studyy"),
    ("fixed-unknown", _set("fixed.hiddn", 8), "hiddn"),
    ("method-unknown", _set("methods.m.lrate", 0.1), "lrate"),
    ("axes-unknown", _set("axes.lenght", [10]), "lenght"),
    ("exclude-unknown", _set("exclude", [{"cel": "rnn"}]), "cel"),
    ("task-option-unknown", _set("fixed.task_options", {"no_such_option": 1}), "no_such_option"),
    # wrong types
    ("hidden-str", _set("fixed.hidden", "eight"), "hidden"),
    ("T-float", _set("fixed.T", 10.5), "T"),
    ("lr-str", _set("fixed.lr", "fast"), "lr"),
    ("steps-bool", _set("fixed.steps", True), "steps"),
    ("bidirectional-str", _set("methods.m.bidirectional", "yes"), "bidirectional"),
    ("early_stop-int", _set("fixed.early_stop", 1), "early_stop"),
    ("task_options-list", _set("fixed.task_options", [1, 2]), "task_options"),
    ("clip_threshold-str", _set("fixed.clip_threshold", "1.0"), "clip_threshold"),
    ("axis-not-list", _set("axes.T", 10), "T"),
    ("axis-value-type", _set("axes.T", [10, "long"]), "T"),
    ("fixed-not-mapping", _set("fixed", [1, 2]), "fixed"),
    # impossible values
    ("T-zero", _set("fixed.T", 0), "T"),
    ("T-negative-axis", _set("axes.T", [10, -5]), "T"),
    ("hidden-zero", _set("fixed.hidden", 0), "hidden"),
    ("batch_size-zero", _set("fixed.batch_size", 0), "batch_size"),
    ("steps-zero", _set("fixed.steps", 0), "steps"),
    ("eval_interval-zero", _set("fixed.eval_interval", 0), "eval_interval"),
    ("lr-zero", _set("fixed.lr", 0), "lr"),
    ("lr-negative", _set("methods.m.lr", -0.1), "lr"),
    ("momentum-one", _set("fixed.momentum", 1.0), "momentum"),
    ("clip_threshold-zero", _set("fixed.clip_threshold", 0), "clip_threshold"),
    ("clip_threshold-negative", _set("methods.m.clip_threshold", -1.0), "clip_threshold"),
    ("init_scale-negative", _set("fixed.init_scale", -1.0), "init_scale"),
    ("divergence_factor-low", _set("fixed.divergence_factor", 0.5), "divergence_factor"),
    ("checkpoint_every-negative", _set("fixed.checkpoint_every", -1), "checkpoint_every"),
    # unknown names
    ("task-unknown", _set("fixed.task", "no_such_task"), "task"),
    ("cell-unknown", _set("methods.m.cell", "transformer"), "cell"),
    ("init-unknown", _set("fixed.init", "no_such_init"), "init"),
    ("activation-unknown", _set("fixed.activation", "swishy"), "activation"),
    ("optimizer-unknown", _set("fixed.optimizer", "adamw2"), "optimizer"),
    ("clip-unknown", _set("fixed.clip", "clamp"), "clip"),
    ("dtype-unknown", _set("fixed.dtype", "float16"), "dtype"),
    ("device-unknown", _set("fixed.device", "tpu"), "device"),
    ("backend-unknown", _set("fixed.backend", "jax"), "backend"),
    ("task-axis-unknown", _set("axes.task", ["adding", "no_such_task"]), "task"),
    # study shape
    ("axes-empty-list", _set("axes.T", []), "T"),
    ("methods-empty", _set("methods", {}), "methods"),
    ("seeds-zero", _set("seeds", 0), "seeds"),
    ("seeds-negative", _set("seeds", -2), "seeds"),
    ("seeds-empty-list", _set("seeds", []), "seeds"),
    ("seeds-duplicate", _set("seeds", [0, 0]), "seeds"),
    ("seeds-str", _set("seeds", "three"), "seeds"),
    ("seed-in-fixed", _set("fixed.seed", 3), "seed"),
    ("figure_formats-unknown", _set("figure_formats", ["png", "jpeg"]), "figure_formats"),
    ("figure_formats-without-png", _set("figure_formats", ["pdf"]), "figure_formats"),
    ("figure_formats-str", _set("figure_formats", "png"), "figure_formats"),
    ("study-missing", _delete("study"), "study"),
    ("study-slash", _set("study", "a/b"), "study"),
]


def _bad_study(change) -> dict:
    study = copy.deepcopy(FUZZ_BASE)
    change(study)
    return study


def _names_field(message: str, name: str) -> bool:
    """The message names the field: quoted ('T' or "T"), or as the prefix `T: ...`."""
    return (f"'{name}'" in message or f'"{name}"' in message
            or re.search(rf"(^|\s){re.escape(name)}: ", message) is not None)


def test_fuzz_base_study_is_valid():
    assert len(load_study(copy.deepcopy(FUZZ_BASE)).runs()) == 2


@pytest.mark.parametrize("change,name", [(c, n) for _, c, n in BAD_CONFIGS],
                         ids=[i for i, _, _ in BAD_CONFIGS])
def test_bad_config_rejected_naming_the_field(change, name):
    with pytest.raises(ValueError) as excinfo:
        load_study(_bad_study(change)).runs()
    assert _names_field(str(excinfo.value), name), (
        f"message does not name '{name}': {excinfo.value}")


@pytest.mark.parametrize("value, words", [
    ({"per_cores": 2}, ["per_cores"]),
    ({"per_core": -1}, ["per_core"]),
    ({"per_core": 1.5}, ["per_core"]),
    ({"max_minutes": 0}, ["max_minutes"]),
    ({"enabled": "yes"}, ["enabled"]),
    ({"steal": 1}, ["steal"]),
    ("many", ["chunks", "mapping"]),
])
def test_bad_chunk_settings_are_named(value, words):
    with pytest.raises(ValueError) as excinfo:
        load_study({"study": "s", "fixed": dict(TINY_FIXED), "chunks": value})
    for word in words:
        assert word in str(excinfo.value)
    assert check_settings({}, "x") == CHUNK_DEFAULTS


# --- numbers YAML reads as text, and files that are not YAML --------------------------------
def test_exponent_number_read_as_text_by_yaml_gets_a_hint(tmp_path):
    """PyYAML (and Snakemake) read `lr: 1e-3` as the string '1e-3': the error says how to write it."""
    path = tmp_path / "study.yaml"
    data = study()
    data["fixed"]["lr"] = "PLACEHOLDER"
    path.write_text(yaml.safe_dump(data).replace("PLACEHOLDER", "1e-3"))
    assert yaml.safe_load(path.read_text())["fixed"]["lr"] == "1e-3"
    with pytest.raises(ValueError, match=r"field 'lr' must be float, got str '1e-3' \(YAML .*0\.001"):
        load_study(path)
    with pytest.raises(ValueError, match=r"fixed\.lr = '1e-3': YAML .* 1\.0e-3"):
        check_numbers_read_as_text(yaml.safe_load(path.read_text()))
    data["fixed"]["lr"] = 0.001
    data["methods"]["LSTM"]["clip_threshold"] = "2E+1"
    data["axes"]["T"] = [10, "5e1"]
    with pytest.raises(ValueError, match=r"methods\.LSTM\.clip_threshold = '2E\+1'; axes\.T has '5e1'"):
        check_numbers_read_as_text(data)
    data["methods"]["LSTM"]["clip_threshold"], data["axes"]["T"] = 20.0, [10, 50]
    check_numbers_read_as_text(data)  # numbers and ordinary text pass
    check_numbers_read_as_text(study(description="1e3 steps"))
    with pytest.raises(ValueError, match=r"field 'lr' must be float, got str 'fast'$"):
        RunConfig.from_dict({**BASE["fixed"], "cell": "rnn", "T": 10, "lr": "fast"})


@pytest.mark.parametrize("text, line, column, problem", [
    # an unclosed flow mapping: PyYAML notices at the end of the file, the cause is the brace
    ("study: demo\nfixed: {task: adding, hidden: 8\nseeds: 2\n", 3, 6,
     r"expected ',' or '\}', but got ':' \(while parsing a flow mapping at line 2, column 8\)"),
    ("study: demo\nseeds: 2\naxes:\n  T: [10, 20]\n  cell: rnn: lstm\n", 5, 12,
     "mapping values are not allowed here"),
])
def test_yaml_syntax_error_is_one_line_naming_file_line_and_column(tmp_path, capsys, text, line,
                                                                    column, problem):
    from rnnbench.cli import main
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)  # the file really is malformed YAML
    expected = (rf"study file {re.escape(str(path))}: YAML syntax error at line {line}, "
                rf"column {column}: {problem}")
    with pytest.raises(ValueError, match="^" + expected + "$"):
        load_study(path)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.fullmatch(r"rnnbench: error: " + expected + "\n", err)


# --- through Snakemake: refused before any job starts -------------------------------------
# A sample of the cases above, plus one per check the workflow itself adds (the JSON schema,
# numbers read as text): (id, the study, names the output must name as fields, plain words).
SNAKEMAKE_BAD = [
    *[(case, _bad_study(change), [name], []) for case, change, name in BAD_CONFIGS
      if case in ("fixed-unknown", "clip_threshold-zero", "seeds-zero", "cell-unknown")],
    ("top-unknown", _bad_study(_set("colour", "red")), ["colour"], []),
    ("method-bad-value", _bad_study(_set("methods.X", {"cell": "foo"})), ["cell"], ["foo", "X"]),
    ("T-zero-in-axis", _bad_study(_set("axes", {"T": [5, 0]})), ["T"], []),
    ("figure_formats-unknown", _bad_study(_set("figure_formats", ["png", "jpeg"])),
     ["figure_formats"], ["jpeg"]),
    ("lr-as-text", _bad_study(_set("fixed.lr", "1e-3")), [], ["fixed.lr", "1e-3", "0.001"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("study_data, fields, words", [c[1:] for c in SNAKEMAKE_BAD],
                         ids=[c[0] for c in SNAKEMAKE_BAD])
def test_bad_study_refused_by_snakemake_before_any_job(study_data, fields, words, workflow_copy):
    workdir = workflow_copy(study_data)
    # A real run for the first case (nothing may start, not even a results folder); the others
    # as dry runs, which validate the same way.
    dry = [] if study_data is SNAKEMAKE_BAD[0][1] else ["-n"]
    proc = snakemake(workdir, None, *dry, "--cores", "1", limit=120)
    assert proc.returncode != 0, f"snakemake accepted a bad config:\n{tail(proc.stdout)}"
    for name in fields:
        assert _names_field(proc.stdout, name), (
            f"snakemake's output does not name '{name}':\n{tail(proc.stdout, 40)}")
    for word in words:
        assert word in proc.stdout, tail(proc.stdout, 40)
    assert "train_chunk" not in proc.stdout
    assert not (workdir / "results").exists()
