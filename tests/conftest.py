"""Fixtures shared by the test modules. Plain helpers (workflow copies, Snakemake commands,
result-table comparison, unvalidated configs) live in tests/support.py, imported by name."""
from __future__ import annotations

import importlib

import pytest
import torch

from rnnbench import init_schemes, models, plugins, registry, tasks
from support import make_workdir

# the module itself: `models.activations` is the function that lists them
activations = importlib.import_module("rnnbench.models.activations")
construct = importlib.import_module("rnnbench.models.construct")


@pytest.fixture
def one_thread():
    """torch on one thread for the test: tiny models only pay for synchronisation with more,
    and CI has two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workflow_copy(tmp_path):
    """A function writing a copy of the workflow (Snakefile, workflow/) with a study file into a
    fresh folder under tmp_path: workflow_copy(study_dict, name="study.yaml", extra=()) -> Path."""
    count = 0

    def make(study=None, name: str = "study.yaml", extra: tuple[str, ...] = ()):
        nonlocal count
        count += 1
        return make_workdir(tmp_path / f"workflow-{count}", study, name, extra)
    return make


@pytest.fixture
def isolated_registries(monkeypatch):
    """Every registry (cells, activations, init schemes, tasks) and the plug-in bookkeeping as
    found before the test, whatever the test registers or loads."""
    monkeypatch.setattr(models.registry, "_CELLS", dict(models.registry._CELLS))
    monkeypatch.setattr(activations, "_ACTIVATIONS", dict(activations._ACTIVATIONS))
    monkeypatch.setattr(init_schemes, "_REGISTRY", dict(init_schemes._REGISTRY))
    monkeypatch.setattr(tasks.registry, "REGISTRY", dict(tasks.registry.REGISTRY))
    monkeypatch.setattr(plugins, "_LOADED", dict(plugins._LOADED))
    monkeypatch.setattr(registry, "_ORIGINS", dict(registry._ORIGINS))
    monkeypatch.setattr(construct, "_MATCHED", {})
