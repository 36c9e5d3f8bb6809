"""Study expansion (methods x axes x seeds), run ids, validation messages, and the JSON schema
of the study config staying in step with RunConfig."""
import dataclasses
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml

from rnnbench import config as cfgmod
from rnnbench.config import RunConfig, field_names
from rnnbench.study import Study, load_study
from support import DEMO_STUDY as BASE, demo_study as study

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"



# --- expansion -------------------------------------------------------------------------------
def test_expansion_counts_order_and_labels():
    s = load_study(study())
    runs = s.runs()
    assert len(runs) == 2 * 3 * 2
    assert [(r.method, r.T, r.seed) for r in runs[:4]] == [
        ("tanh-RNN", 10, 0), ("tanh-RNN", 10, 1), ("tanh-RNN", 20, 0), ("tanh-RNN", 20, 1)]
    assert all(r.cell == "lstm" and r.hidden == 8 for r in runs if r.method == "LSTM")
    assert s.label(runs[0]) == "tanh-RNN/T=10/seed=0"
    assert s.swept() == ["method", "T", "seed"]


def test_two_axes_are_crossed_and_labelled_in_order():
    s = load_study(study(axes={"T": [10, 20], "clip": ["norm", "none"]}, seeds=1))
    table = s.table()
    assert len(table) == 2 * 2 * 2
    assert table["label"].iloc[1] == "tanh-RNN/T=10/clip=none/seed=0"


def test_run_ids_unique_stable_and_equal_to_runconfig_ids():
    a, b = load_study(study()).table(), load_study(study()).table()
    assert a["run_id"].is_unique
    assert list(a["run_id"]) == list(b["run_id"])
    direct = RunConfig.from_dict({**BASE["fixed"], "cell": "lstm", "T": 20, "seed": 1,
                                  "method": "LSTM"})
    assert direct.run_id() in set(a["run_id"])


def test_to_dict_is_asdict_with_its_own_task_options():
    cfg = RunConfig.from_dict({"task": "adding", "T": 10, "task_options": {"solve_threshold": 0.02}})
    values = cfg.to_dict()
    assert values == dataclasses.asdict(cfg) and list(values) == field_names()
    values["task_options"]["solve_threshold"] = 0.5   # a copy: the frozen config keeps its own
    assert cfg.task_options == {"solve_threshold": 0.02}
    assert cfgmod.field_types() == typing.get_type_hints(RunConfig)


def test_table_has_run_id_label_and_every_field():
    table = load_study(study()).table()
    assert list(table.columns) == ["run_id", "label", *field_names()]
    assert table["task_options"].iloc[0] == "{}"  # record(): JSON text


def test_seeds_int_or_list_and_default_method():
    s = load_study({"study": "x", "seeds": [3, 7], "fixed": {"T": 10}})
    assert s.methods == {"default": {}}
    assert [r.seed for r in s.runs()] == [3, 7]
    assert [r.method for r in s.runs()] == ["default", "default"]
    assert load_study({"study": "x"}).seeds == [0]


def test_exclude_drops_matching_runs():
    s = load_study(study(exclude=[{"method": "LSTM", "T": 30}, {"T": 10, "seed": 1}]))
    labels = set(s.table()["label"])
    assert "LSTM/T=30/seed=0" not in labels and "tanh-RNN/T=30/seed=0" in labels
    assert "tanh-RNN/T=10/seed=1" not in labels and "tanh-RNN/T=10/seed=0" in labels
    assert len(labels) == 12 - 2 - 2


def test_load_from_yaml_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study()))
    assert isinstance(load_study(path), Study)
    assert len(load_study(path).runs()) == 12


def test_default_study_all_or_none_is_decisive():
    """The default study runs enough seeds per (method, T) that an all-or-none outcome is a
    verdict by docs/REPRODUCTION.md's rule: the Wilson 95% interval of n/n lies above 50% and
    that of 0/n below it. With three seeds it could not (3/3: [0.44, 1])."""
    from rnnbench.aggregate import wilson_interval

    n = len(load_study(ROOT / "config" / "config.yaml").seeds)
    assert wilson_interval(n, n)[0] > 0.5 and wilson_interval(0, n)[1] < 0.5, n
    assert wilson_interval(3, 3)[0] < 0.5  # the rule bites: three seeds are too few


def test_shipped_studies_load():
    assert len(load_study(ROOT / "config" / "config.yaml").runs()) == 3 * 3 * 5  # methods x T x seeds
    scaled = load_study(ROOT / "config" / "studies" / "pascanu2013.yaml")
    assert len(scaled.runs()) == (2 * 2 + 1) * 2 * 3 * 3  # (inits x clip + Omega) x tasks x T x seeds
    big = load_study(ROOT / "config" / "studies" / "paper-budget" / "pascanu2013.yaml")
    assert len(big.runs()) == (2 * 2 + 1) * 2 * 4 * 5


# --- the JSON schema of the config -----------------------------------------------------------
@pytest.fixture(scope="module")
def schema():
    return yaml.safe_load(SCHEMA.read_text())


def _json_type(hint):
    args = typing.get_args(hint) or (hint,)
    names = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object",
             type(None): "null"}
    out = sorted(names[a] for a in args)
    return out[0] if len(out) == 1 else out


def test_schema_run_fields_equal_runconfig_fields(schema):
    assert list(schema["$defs"]["run_fields"]["properties"]) == field_names()
    axes = list(schema["properties"]["axes"]["properties"])
    assert axes == [f for f in field_names() if f not in ("seed", "method")]


def test_schema_types_and_choices_match_runconfig(schema):
    props = schema["$defs"]["run_fields"]["properties"]
    hints = typing.get_type_hints(RunConfig)
    for name in field_names():
        t = props[name]["type"]
        assert (sorted(t) if isinstance(t, list) else t) == _json_type(hints[name]), name
    for name, allowed in [("optimizer", cfgmod.OPTIMIZERS), ("clip", cfgmod.CLIPS),
                          ("backend", cfgmod.BACKENDS), ("device", cfgmod.DEVICES),
                          ("dtype", cfgmod.DTYPES), ("precision", cfgmod.PRECISIONS)]:
        assert props[name]["enum"] == list(allowed), name


def test_schema_top_level_keys_match_loader(schema):
    from rnnbench.study import TOP_LEVEL_KEYS
    assert set(schema["properties"]) == set(TOP_LEVEL_KEYS)


def _validator(schema):
    return jsonschema.Draft202012Validator(schema)


def test_schema_accepts_shipped_studies(schema):
    for path in [ROOT / "config" / "config.yaml", *sorted((ROOT / "config" / "studies").rglob("*.yaml"))]:
        _validator(schema).validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("data, word", [
    (study(colour="red"), "colour"),
    (study(fixed={"hiden": 8}), "hiden"),
    (study(axes={"Tee": [1]}), "Tee"),
    (study(axes={"T": []}), "[]"),
    (study(fixed={"seed": 1}), "seed"),
    (study(fixed={"optimizer": "adamw"}), "adamw"),
    (study(fixed={"hidden": 1.5}), "1.5"),
])
def test_schema_rejects_with_the_key_named(schema, data, word):
    with pytest.raises(jsonschema.ValidationError) as err:
        _validator(schema).validate(data)
    assert word in err.value.message


